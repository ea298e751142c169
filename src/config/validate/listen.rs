//! The listeners, `listen` (the proxy: addresses, HTTP/2, and TLS with its certificate files,
//! read and checked here so that `tollgate -t` and a reload refuse a bad certificate by name)
//! and `admin_listen` (metrics, health and the admin API), the admin API's token digest and the
//! per-client-IP new-connection rate checked at accept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::{RawConfig, RawListenTls, TlsVersion};
use super::super::snapshot::{
    CertPairSettings, ConnectionRateSettings, ListenerSettings, TlsListenerSettings,
};
use super::context::Cx;
use super::sha256_hex;
use crate::identity::KeyDigest;
use crate::tls::{self, CertSet};

/// Every address parses as IP:port and is listed once, every TLS listener's certificates load,
/// and the admin listener shares no address with the proxy.
pub(super) fn check(cx: &Cx<'_>, raw: &RawConfig) -> Result<Vec<ListenerSettings>, ConfigError> {
    if raw.listen.is_empty() {
        return Err(cx.at("listen", "needs at least one address"));
    }
    let mut out: Vec<ListenerSettings> = Vec::with_capacity(raw.listen.len());
    for (i, l) in raw.listen.iter().enumerate() {
        let f = format!("listen[{i}]");
        let addr: SocketAddr = l.addr.parse().map_err(|_| {
            let field = if l.tls.is_some() || l.http2.is_some() {
                format!("{f}.addr")
            } else {
                f.clone()
            };
            cx.at(&field, format!("'{}' is not an IP:port address", l.addr))
        })?;
        if out.iter().any(|o| o.addr.parse::<SocketAddr>() == Ok(addr)) {
            return Err(cx.at(&f, format!("{addr} is listed twice")));
        }
        let tls = match &l.tls {
            Some(t) => Some(tls_settings(cx, &f, t)?),
            None => None,
        };
        out.push(ListenerSettings {
            addr: l.addr.clone(),
            http2: l.http2.unwrap_or(tls.is_some()),
            tls,
        });
    }
    raw.admin_listen.parse::<SocketAddr>().map_err(|_| {
        cx.at(
            "admin_listen",
            format!("'{}' is not an IP:port address", raw.admin_listen),
        )
    })?;
    if out.iter().any(|l| l.addr == raw.admin_listen) {
        return Err(cx.at("admin_listen", "must differ from every `listen` address"));
    }
    Ok(out)
}

/// `listen[i].tls`: at least one pair, each read and checked now (file, PEM, key matching).
fn tls_settings(
    cx: &Cx<'_>,
    f: &str,
    t: &RawListenTls,
) -> Result<TlsListenerSettings, ConfigError> {
    if t.certs.is_empty() {
        return Err(cx.at(
            &format!("{f}.tls.certs"),
            "needs at least one { cert, key } pair",
        ));
    }
    let base = cx.path.parent().unwrap_or(Path::new("."));
    let mut pairs = Vec::with_capacity(t.certs.len());
    let mut loaded = Vec::with_capacity(t.certs.len());
    for (j, c) in t.certs.iter().enumerate() {
        let field = format!("{f}.tls.certs[{j}]");
        let pair = CertPairSettings {
            cert: resolve(base, &c.cert),
            key: resolve(base, &c.key),
            field: field.clone(),
        };
        let cert = tls::load_pair(&pair.cert, &pair.key)
            .map_err(|e| cx.at(&format!("{field}.{}", e.part.field()), e.to_string()))?;
        loaded.push(cert);
        pairs.push(pair);
    }
    Ok(TlsListenerSettings {
        tls13_only: t.min_version == Some(TlsVersion::Tls13),
        certs: pairs,
        loaded: Arc::new(CertSet { certs: loaded }),
    })
}

/// Relative certificate paths are relative to the config file's folder, not to the working
/// directory, so that a config and its certificates move together.
fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
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
