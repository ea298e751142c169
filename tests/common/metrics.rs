//! Reading Prometheus text exposition: one sample, or the sum over matching labels.

/// The value of one sample line (`name{labels}` exactly as exposed), or 0.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .unwrap_or(0.0)
}

/// Sums every sample of metric `name` whose labels include all of `labels` (order-insensitive).
/// `name` is matched exactly (so `x_count` does not match `x_count_total`).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if ok {
                value.trim().parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}
