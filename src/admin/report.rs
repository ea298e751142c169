//! `GET /v1/top` (who is being limited) and `GET /v1/config` (what is running).

use std::time::Duration;

use http::Response;
use serde_json::json;

use super::answer;
use crate::config::parse_duration;
use crate::state::Generation;
use crate::top_limited::MAX_WINDOW;

const DEFAULT_N: usize = 10;
const MAX_N: usize = 100;
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

pub fn top(generation: &Generation, query: Option<&str>) -> Response<Vec<u8>> {
    let (n, window) = match top_params(query) {
        Ok(p) => p,
        Err(detail) => return answer::problem(400, "Bad Request", &detail),
    };
    let top: Vec<_> = generation
        .top
        .top(n, window)
        .into_iter()
        .map(|(identity, limited)| json!({ "identity": identity, "limited": limited }))
        .collect();
    answer::json(200, &json!({ "window_s": window.as_secs(), "top": top }))
}

/// `n` (1 to 100) and `window` (a duration of 1 s to 300 s) from the query string.
fn top_params(query: Option<&str>) -> Result<(usize, Duration), String> {
    let (mut n, mut window) = (DEFAULT_N, DEFAULT_WINDOW);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "n" => {
                n = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_N).contains(n))
                    .ok_or_else(|| format!("n must be a whole number from 1 to {MAX_N}"))?
            }
            "window" => {
                window = parse_duration(v)
                    .ok()
                    .filter(|w| *w >= Duration::from_secs(1) && *w <= MAX_WINDOW)
                    .ok_or_else(|| {
                        format!(
                            "window must be a duration from 1s to {}s, like 60s or 5m",
                            MAX_WINDOW.as_secs()
                        )
                    })?
            }
            _ => return Err("known parameters are n and window".to_string()),
        }
    }
    Ok((n, window))
}

pub fn config(generation: &Generation) -> Response<Vec<u8>> {
    let s = &generation.snapshot;
    let loaded_at = chrono::DateTime::<chrono::Utc>::from(generation.loaded_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    answer::json(
        200,
        &json!({
            "generation": generation.number,
            "loaded_at": loaded_at,
            "file": s.source.display().to_string(),
            "sha256": hex::encode(s.content_hash),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_parameters_have_defaults_and_bounds() {
        assert_eq!(top_params(None), Ok((10, DEFAULT_WINDOW)));
        assert_eq!(
            top_params(Some("n=3&window=5m")),
            Ok((3, Duration::from_secs(300)))
        );
        assert!(top_params(Some("n=101")).is_err());
        assert!(top_params(Some("n=0")).is_err());
        assert!(top_params(Some("window=1h")).is_err());
        assert!(top_params(Some("x=1")).is_err());
    }
}
