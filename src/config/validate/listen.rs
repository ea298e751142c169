//! The listeners, `listen` (the proxy) and `admin_listen` (metrics, health and the admin API),
//! the admin API's token digest and the per-client-IP new-connection rate checked at accept.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::RawConfig;
use super::super::snapshot::ConnectionRateSettings;
use super::context::Cx;
use super::sha256_hex;
use crate::identity::KeyDigest;

/// Every address parses as IP:port, and the admin listener shares none with the proxy.
pub(super) fn check(cx: &Cx<'_>, raw: &RawConfig) -> Result<(), ConfigError> {
    if raw.listen.is_empty() {
        return Err(cx.at("listen", "needs at least one address"));
    }
    for (i, l) in raw.listen.iter().enumerate() {
        l.parse::<SocketAddr>().map_err(|_| {
            cx.at(
                &format!("listen[{i}]"),
                format!("'{l}' is not an IP:port address"),
            )
        })?;
    }
    raw.admin_listen.parse::<SocketAddr>().map_err(|_| {
        cx.at(
            "admin_listen",
            format!("'{}' is not an IP:port address", raw.admin_listen),
        )
    })?;
    if raw.listen.contains(&raw.admin_listen) {
        return Err(cx.at("admin_listen", "must differ from every `listen` address"));
    }
    Ok(())
}

/// `admin_token_sha256`: the digest of the admin API's bearer token, when set.
pub(super) fn admin_token(cx: &Cx<'_>, raw: &RawConfig) -> Result<Option<KeyDigest>, ConfigError> {
    raw.admin_token_sha256
        .as_deref()
        .map(|h| {
            sha256_hex(h).ok_or_else(|| cx.at("admin_token_sha256", "must be 64 hex characters"))
        })
        .transpose()
}

/// `connection_rate`: new connections per client IP and window, counted at accept time.
pub(super) fn connection_rate(
    cx: &Cx<'_>,
    raw: &RawConfig,
) -> Result<Option<ConnectionRateSettings>, ConfigError> {
    let Some(c) = raw.connection_rate.as_ref() else {
        return Ok(None);
    };
    // The accept-time table counts up to 65535 per address and window.
    if !(1..=65_535).contains(&c.per_ip) {
        return Err(cx.at("connection_rate.per_ip", "must be between 1 and 65535"));
    }
    let window = c.window.0;
    if window < Duration::from_millis(100) || window > Duration::from_secs(3600) {
        return Err(cx.at("connection_rate.window", "must be between 100ms and 1h"));
    }
    Ok(Some(ConnectionRateSettings {
        per_ip: c.per_ip,
        window,
    }))
}
