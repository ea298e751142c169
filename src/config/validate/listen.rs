//! The listeners, `listen` (the proxy) and `admin_listen` (metrics, health and the admin API),
//! and the admin API's token digest.

use std::net::SocketAddr;

use super::super::error::ConfigError;
use super::super::schema::RawConfig;
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
