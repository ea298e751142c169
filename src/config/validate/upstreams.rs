//! The `upstreams` section: peers, TLS names, the Host header, health checks and timeouts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::{RawConfig, RawHealthCheck, RawUpstream};
use super::super::snapshot::{HealthCheckSettings, UpstreamSettings};
use super::context::Cx;
use super::is_label;

pub(super) fn upstreams(
    cx: &Cx<'_>,
    raw: &RawConfig,
) -> Result<HashMap<String, UpstreamSettings>, ConfigError> {
    if raw.upstreams.is_empty() {
        return Err(cx.at("upstreams", "needs at least one upstream"));
    }
    let mut out = HashMap::new();
    for (name, u) in &raw.upstreams {
        out.insert(name.clone(), upstream(cx, name, u)?);
    }
    Ok(out)
}

fn upstream(cx: &Cx<'_>, name: &str, u: &RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    let f = format!("upstreams.{name}");
    if !is_label(name) {
        return Err(cx.at(
            &f,
            "upstream names may use letters, digits, '_', '-' and '.'",
        ));
    }
    let (sni, host) = names(cx, &f, u)?;
    let health_check = health_check(cx, &f, u.health_check.as_ref())?;
    for (field, d) in [
        ("connect_timeout", u.connect_timeout.0),
        ("read_timeout", u.read_timeout.0),
        ("write_timeout", u.write_timeout.0),
    ] {
        if d.is_zero() {
            return Err(cx.at(&format!("{f}.{field}"), "must be positive"));
        }
    }
    if u.retries > 16 {
        return Err(cx.at(&format!("{f}.retries"), "must be at most 16"));
    }
    Ok(UpstreamSettings {
        name: name.to_string(),
        peers: u.peers.clone(),
        tls: u.tls,
        http2: u.http2,
        sni,
        host,
        health_check,
        connect_timeout: u.connect_timeout.0,
        read_timeout: u.read_timeout.0,
        write_timeout: u.write_timeout.0,
        retries: u.retries,
    })
}

/// Checks the peers and derives the TLS server name and the Host header sent upstream.
fn names(cx: &Cx<'_>, f: &str, u: &RawUpstream) -> Result<(String, String), ConfigError> {
    if u.peers.is_empty() {
        return Err(cx.at(&format!("{f}.peers"), "needs at least one peer"));
    }
    let mut first_host = None;
    for (i, p) in u.peers.iter().enumerate() {
        let (host, _) = split_host_port(p).ok_or_else(|| {
            cx.at(
                &format!("{f}.peers[{i}]"),
                format!("'{p}' is not a host:port address"),
            )
        })?;
        first_host.get_or_insert(host.to_string());
    }
    let first_host = first_host.unwrap_or_default();
    let sni = u.sni.clone().or_else(|| u.host.clone()).unwrap_or_else(|| {
        if u.tls {
            first_host.clone()
        } else {
            String::new()
        }
    });
    if u.tls && sni.parse::<IpAddr>().is_ok() {
        return Err(cx.at(
            &format!("{f}.sni"),
            "tls: true needs an `sni` (or `host`) name when peers are IP addresses",
        ));
    }
    let host = u.host.clone().unwrap_or_else(|| {
        if u.sni.is_some() {
            sni.clone()
        } else {
            u.peers[0].clone()
        }
    });
    http::HeaderValue::from_str(&host)
        .map_err(|_| cx.at(&format!("{f}.host"), "is not a valid Host header value"))?;
    Ok((sni, host))
}

fn health_check(
    cx: &Cx<'_>,
    f: &str,
    h: Option<&RawHealthCheck>,
) -> Result<HealthCheckSettings, ConfigError> {
    let Some(h) = h else {
        return Ok(HealthCheckSettings {
            path: None,
            interval: Duration::from_secs(5),
        });
    };
    if let Some(p) = &h.path {
        if !p.starts_with('/') {
            return Err(cx.at(&format!("{f}.health_check.path"), "must start with '/'"));
        }
    }
    if h.interval.0 < Duration::from_millis(50) {
        return Err(cx.at(
            &format!("{f}.health_check.interval"),
            "must be at least 50ms",
        ));
    }
    Ok(HealthCheckSettings {
        path: h.path.clone(),
        interval: h.interval.0,
    })
}

/// Splits `host:port` (or `[v6]:port`) without resolving it.
fn split_host_port(peer: &str) -> Option<(&str, u16)> {
    if peer.parse::<SocketAddr>().is_ok() {
        let i = peer.rfind(':')?;
        return Some((
            peer[..i].trim_matches(['[', ']']),
            peer[i + 1..].parse().ok()?,
        ));
    }
    let (host, port) = peer.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    (valid && port > 0).then_some((host, port))
}
