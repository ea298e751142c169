//! `redis.breaker_*`: the circuit breaker's settings, checked and turned into the limiter's
//! [`BreakerSettings`]. The old `breaker_failures` (consecutive failures) still loads: it stands
//! in for `breaker_min_calls` when that is not set, with a deprecation warning.

use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::RawRedis;
use super::context::Cx;
use crate::limiter::BreakerSettings;

/// A warning, not an error: the file still loads (so it has no row in the error table).
const BREAKER_FAILURES_DEPRECATED: &str = "is deprecated and no longer counts consecutive \
     failures; it now sets redis.breaker_min_calls when that is absent (see the README)";

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);

fn within(
    cx: &Cx<'_>,
    field: &str,
    d: Duration,
    lo: Duration,
    hi: Duration,
) -> Result<Duration, ConfigError> {
    if d < lo || d > hi {
        return Err(cx.at(
            field,
            format!("must be between {lo:?} and {hi:?} (got {d:?})"),
        ));
    }
    Ok(d)
}

pub(super) fn breaker_settings(cx: &Cx<'_>, r: &RawRedis) -> Result<BreakerSettings, ConfigError> {
    let window = within(
        cx,
        "redis.breaker_window",
        r.breaker_window.0,
        10 * MS,
        MINUTE,
    )?;
    let spread = within(
        cx,
        "redis.breaker_failure_spread",
        r.breaker_failure_spread.0,
        Duration::ZERO,
        MINUTE,
    )?;
    if spread >= window {
        return Err(cx.at(
            "redis.breaker_failure_spread",
            format!("must be shorter than redis.breaker_window ({window:?}), or the breaker can never open"),
        ));
    }
    let open_max = within(cx, "redis.breaker_open", r.breaker_open.0, MS, 10 * MINUTE)?;
    let half_open_after = within(
        cx,
        "redis.breaker_half_open_after",
        r.breaker_half_open_after.0,
        MS,
        open_max,
    )
    .map_err(|e| ConfigError {
        message: format!("{} and at most redis.breaker_open", e.message),
        ..e
    })?;
    let ratio = r.breaker_failure_ratio;
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(cx.at(
            "redis.breaker_failure_ratio",
            "must be above 0 and at most 1 (0.5 = half the calls)",
        ));
    }
    if !(1..=1000).contains(&r.breaker_probes) {
        return Err(cx.at("redis.breaker_probes", "must be between 1 and 1000"));
    }
    if r.breaker_failures == Some(0) {
        return Err(cx.at("redis.breaker_failures", "must be at least 1"));
    }
    if r.breaker_failures.is_some() {
        log::warn!(
            "{}",
            cx.at("redis.breaker_failures", BREAKER_FAILURES_DEPRECATED)
        );
    }
    let min_calls = match (r.breaker_min_calls, r.breaker_failures) {
        (Some(0), _) => return Err(cx.at("redis.breaker_min_calls", "must be at least 1")),
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => BreakerSettings::default().min_calls,
    };
    Ok(BreakerSettings {
        window,
        min_calls,
        failure_ratio: ratio,
        failure_spread: spread,
        half_open_after,
        probes: r.breaker_probes,
        open_max,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{load_str, ConfigError, Snapshot};
    use crate::limiter::BreakerSettings;

    fn with_redis(redis: &str) -> Result<Snapshot, ConfigError> {
        let src = format!(
            "listen: [\"127.0.0.1:8080\"]\nredis:\n  url: \"redis://127.0.0.1:6379/0\"\n{redis}\
             upstreams:\n  echo:\n    peers: [\"127.0.0.1:9000\"]\nroutes:\n  - prefix: \"/\"\n    \
             upstream: echo\ntiers:\n  anonymous:\n    limits: [{{ requests: 10, window: 60s }}]\n"
        );
        load_str(&PathBuf::from("t.yaml"), &src)
    }

    fn breaker(s: &Snapshot) -> BreakerSettings {
        s.redis.as_ref().expect("redis section").breaker
    }

    #[test]
    fn defaults_and_explicit_fields() {
        assert_eq!(
            breaker(&with_redis("").unwrap()),
            BreakerSettings::default()
        );
        let s = with_redis(
            "  breaker_window: 1s\n  breaker_min_calls: 50\n  breaker_failure_ratio: 0.8\n  \
             breaker_failure_spread: 300ms\n  breaker_half_open_after: 50ms\n  breaker_probes: 1\n  \
             breaker_open: 5s\n",
        )
        .unwrap();
        let b = breaker(&s);
        assert_eq!(b.window.as_millis(), 1000);
        assert_eq!((b.min_calls, b.failure_ratio, b.probes), (50, 0.8, 1));
        assert_eq!(b.failure_spread.as_millis(), 300);
        assert_eq!(b.half_open_after.as_millis(), 50);
        assert_eq!(b.open_max.as_secs(), 5);
    }

    #[test]
    fn the_old_breaker_failures_still_loads() {
        let b = breaker(&with_redis("  breaker_failures: 3\n  breaker_open: \"1s\"\n").unwrap());
        assert_eq!(b.min_calls, 3);
        let b = breaker(&with_redis("  breaker_failures: 3\n  breaker_min_calls: 40\n").unwrap());
        assert_eq!(b.min_calls, 40, "the new field wins");
        let e = with_redis("  breaker_failures: 0\n").unwrap_err();
        assert_eq!(e.field, "redis.breaker_failures");
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let cases = [
            (
                "  breaker_failure_ratio: 1.5\n",
                "redis.breaker_failure_ratio",
            ),
            (
                "  breaker_failure_ratio: 0\n",
                "redis.breaker_failure_ratio",
            ),
            ("  breaker_min_calls: 0\n", "redis.breaker_min_calls"),
            ("  breaker_window: 1ms\n", "redis.breaker_window"),
            (
                "  breaker_failure_spread: 600ms\n",
                "redis.breaker_failure_spread",
            ),
            (
                "  breaker_half_open_after: 2s\n",
                "redis.breaker_half_open_after",
            ),
            ("  breaker_probes: 0\n", "redis.breaker_probes"),
            ("  breaker_open: 0ms\n", "redis.breaker_open"),
        ];
        for (yaml, field) in cases {
            let e = with_redis(yaml).unwrap_err();
            assert_eq!(e.field, field, "{yaml}: {e}");
            assert_eq!(e.line, 4, "{yaml}: {e}");
        }
    }
}
