//! The `tiers` section: each tier's limits (requests per window, algorithm, name) and the
//! rate-limit header values they produce.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::super::error::ConfigError;
use super::super::schema::{RawConfig, RawLimit, RawTier};
use super::super::snapshot::{LimitHeaders, Tier};
use super::context::Cx;
use super::is_label;
use crate::limiter::{Algorithm, Limit};

pub(super) fn tiers(
    cx: &Cx<'_>,
    raw: &RawConfig,
) -> Result<HashMap<String, Arc<Tier>>, ConfigError> {
    if raw.tiers.is_empty() {
        return Err(cx.at("tiers", "needs at least one tier"));
    }
    let mut out = HashMap::new();
    for (index, (name, t)) in raw.tiers.iter().enumerate() {
        out.insert(name.clone(), Arc::new(tier(cx, name, index, t)?));
    }
    Ok(out)
}

fn tier(cx: &Cx<'_>, name: &str, index: usize, t: &RawTier) -> Result<Tier, ConfigError> {
    let f = format!("tiers.{name}");
    if !is_label(name) {
        return Err(cx.at(&f, "tier names may use letters, digits, '_', '-' and '.'"));
    }
    let mut limits = Vec::new();
    let mut names = HashSet::new();
    for (i, l) in t.limits.iter().enumerate() {
        let lf = format!("{f}.limits[{i}]");
        let lim = limit(cx, &lf, l)?;
        if !names.insert(lim.name.clone()) {
            return Err(cx.at(
                &format!("{lf}.name"),
                format!(
                    "duplicate limit name '{}' in this tier (name the limits)",
                    lim.name
                ),
            ));
        }
        limits.push(lim);
    }
    if limits.len() > 16 {
        return Err(cx.at(&format!("{f}.limits"), "at most 16 limits per tier"));
    }
    if t.concurrency.is_some_and(|n| n == 0 || n > 1_000_000) {
        return Err(cx.at(
            &format!("{f}.concurrency"),
            "must be between 1 and 1000000 (leave it out for no limit)",
        ));
    }
    let limit_headers = limits.iter().map(limit_headers).collect();
    Ok(Tier {
        index,
        name: name.into(),
        limits,
        shadow: t.shadow,
        limit_headers,
        concurrency: t.concurrency,
    })
}

/// The largest sliding_log limit: its ring then takes about 8.4 MB of Redis per identity.
const SLIDING_LOG_MAX_REQUESTS: u64 = 1_000_000;

pub(super) fn limit(cx: &Cx<'_>, f: &str, l: &RawLimit) -> Result<Limit, ConfigError> {
    if l.requests == 0 {
        return Err(cx.at(
            &format!("{f}.requests"),
            "must be at least 1 (use `limits: []` for an unlimited tier)",
        ));
    }
    if l.requests > 1_000_000_000 {
        return Err(cx.at(&format!("{f}.requests"), "must be at most 1000000000"));
    }
    let window_ms = window_ms(cx, f, l)?;
    let algorithm = match &l.algorithm {
        None => Algorithm::default(),
        Some(a) => a
            .parse()
            .map_err(|m: String| cx.at(&format!("{f}.algorithm"), m))?,
    };
    // The ring of the last `requests` admissions: about 8.4 MB of Redis per identity at this
    // bound (8-byte slots above 100,000; measured by scripts/redis/memory_usage.sh).
    if algorithm == Algorithm::SlidingLog && l.requests > SLIDING_LOG_MAX_REQUESTS {
        return Err(cx.at(
            &format!("{f}.requests"),
            "sliding_log keeps the last `requests` admissions (8 bytes each, about 8.4 MB per identity at 1000000); at most 1000000, use sliding_window or token_bucket above",
        ));
    }
    let name = l
        .name
        .clone()
        .unwrap_or_else(|| default_limit_name(window_ms));
    if !is_label(&name) {
        return Err(cx.at(
            &format!("{f}.name"),
            "limit names may use letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(Limit {
        name: name.into(),
        requests: l.requests,
        window_ms,
        algorithm,
    })
}

fn window_ms(cx: &Cx<'_>, f: &str, l: &RawLimit) -> Result<u64, ConfigError> {
    let window_ms = l.window.0.as_millis() as u64;
    if window_ms == 0 {
        return Err(cx.at(&format!("{f}.window"), "must be positive"));
    }
    if window_ms > 366 * 86_400_000 {
        return Err(cx.at(&format!("{f}.window"), "must be at most 366d"));
    }
    Ok(window_ms)
}

/// Names an unnamed limit after its window, so that tiers with limits of the same window share
/// the identity's counter when a key moves between them.
fn default_limit_name(window_ms: u64) -> String {
    match window_ms {
        1_000 => "per_second".into(),
        60_000 => "per_minute".into(),
        3_600_000 => "per_hour".into(),
        86_400_000 => "per_day".into(),
        ms if ms % 1000 == 0 => format!("per_{}s", ms / 1000),
        ms => format!("per_{ms}ms"),
    }
}

/// `w` is whole seconds in the header draft; a sub-second window rounds up to 1.
pub(super) fn limit_headers(l: &Limit) -> LimitHeaders {
    let w = l.window_ms.div_ceil(1000).max(1);
    let policy = format!("\"{}\";q={};w={}", l.name, l.requests, w);
    LimitHeaders {
        // Names are validated as [A-Za-z0-9_.-], so these are always valid header values.
        policy: http::HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| http::HeaderValue::from_static("\"limit\"")),
        limit: http::HeaderValue::from(l.requests),
    }
}
