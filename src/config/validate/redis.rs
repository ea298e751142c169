//! The `redis` section: a single node or a cluster, the decision budget and the breaker.

use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::RawRedis;
use super::super::snapshot::RedisSettings;
use super::context::Cx;
use crate::limiter::RedisTarget;

pub(super) fn settings(cx: &Cx<'_>, r: &RawRedis) -> Result<RedisSettings, ConfigError> {
    let (urls, cluster) = urls(cx, r)?;
    if r.timeout_ms == 0 || r.timeout_ms > 60_000 {
        return Err(cx.at("redis.timeout_ms", "must be between 1 and 60000"));
    }
    if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}', ' ']) {
        return Err(cx.at(
            "redis.key_prefix",
            "must be non-empty without braces or spaces (braces would break the cluster hash tag)",
        ));
    }
    let breaker = super::breaker::breaker_settings(cx, r)?;
    let lease = r.concurrency_lease.0;
    if lease < Duration::from_millis(100) || lease > Duration::from_secs(86_400) {
        return Err(cx.at(
            "redis.concurrency_lease",
            "must be between 100ms and 1d (longer than the slowest request it guards)",
        ));
    }
    let target = match cluster {
        true => RedisTarget::Cluster(urls),
        false => RedisTarget::Single(urls.into_iter().next().unwrap_or_default()),
    };
    Ok(RedisSettings {
        target,
        timeout: Duration::from_millis(r.timeout_ms),
        on_error: r.on_error.into(),
        key_prefix: r.key_prefix.clone(),
        breaker,
        over_limit_cache: r.over_limit_cache,
        concurrency_lease: lease,
    })
}

/// The node URLs, and whether they form a cluster. A URL is never echoed: it may carry a
/// password.
fn urls(cx: &Cx<'_>, r: &RawRedis) -> Result<(Vec<String>, bool), ConfigError> {
    let (urls, cluster) = match (&r.url, &r.cluster) {
        (Some(u), None) => (vec![u.clone()], false),
        (None, Some(c)) if !c.is_empty() => (c.clone(), true),
        (None, Some(_)) => return Err(cx.at("redis.cluster", "needs at least one node URL")),
        (Some(_), Some(_)) => {
            return Err(cx.at("redis.cluster", "set either `url` or `cluster`, not both"))
        }
        (None, None) => return Err(cx.at("redis", "needs `url` or `cluster`")),
    };
    for (i, u) in urls.iter().enumerate() {
        let field = if cluster {
            format!("redis.cluster[{i}]")
        } else {
            "redis.url".to_string()
        };
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            return Err(cx.at(&field, "must start with redis:// or rediss://"));
        }
        redis::Client::open(u.as_str()).map_err(|_| cx.at(&field, "is not a valid Redis URL"))?;
    }
    Ok((urls, cluster))
}
