//! Turns a parsed file into a [`Snapshot`], checking every value and cross-reference.
//!
//! The first problem found is returned as a [`ConfigError`] naming the file, line and field;
//! nothing is half-applied. Validation does no I/O besides reading the file and the certificate
//! files it names, so `tollgate -t` and a reload give the same verdict.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::error::ConfigError;
use super::positions::Positions;
use super::schema::{RawAnonymous, RawConfig, RawLimit, RawUnknownKey};
use super::snapshot::*;
use crate::identity::{self, StoreIdentity};
use crate::limiter::{Algorithm, Limit, RedisTarget};

/// Reads, parses and validates `path`.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    load_str(path, &source)
}

/// Parses and validates `source`, reporting errors against `path`.
pub fn load_str(path: &Path, source: &str) -> Result<Snapshot, ConfigError> {
    let cx = Cx {
        path,
        positions: Positions::index(source),
    };
    if source.trim().is_empty() {
        return Err(cx.at("", "the file is empty"));
    }
    if let Some((line, column)) = cx.positions.too_deep {
        return Err(ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            field: String::new(),
            message: format!(
                "nested more than {} levels deep",
                super::positions::MAX_DEPTH
            ),
        });
    }
    let raw: RawConfig =
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(source))
            .map_err(|e| cx.serde_error(&e))?;
    let content_hash: [u8; 32] = Sha256::digest(source.as_bytes()).into();
    build(&cx, raw, content_hash)
}

pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    positions: Positions,
}

impl Cx<'_> {
    pub(super) fn at(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.positions.locate(field);
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// serde_yaml's message reads `tiers.free.limits[0].window: invalid ... at line 9 column 17`;
    /// split it into field and message, and keep the position serde found.
    fn serde_error(&self, e: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigError {
        let tracked = e.path().to_string();
        let e = e.inner();
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // serde_yaml repeats the position inside its message; we print it once, up front.
        let msg = strip_position(&e.to_string());
        let (field, message) = match msg.split_once(": ") {
            Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
            _ => (String::new(), msg),
        };
        // An unknown field names itself in the message; point the field at it. Otherwise
        // narrow the container serde named down to the key at the error's position.
        let field = match (field.is_empty(), unknown_field_name(&message)) {
            (true, Some(name)) => name,
            (false, Some(name)) => format!("{field}.{name}"),
            _ if tracked.len() > field.len() && tracked != "." => tracked,
            _ => field,
        };
        let message = redact(&field, &message);
        // The tracked path pins the key itself; serde's position is that of its container.
        let (line, column) = match self.positions.locate(&field) {
            (0, _) => (line, column),
            pos if pos.0 >= line => pos,
            _ => (line, column),
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            column,
            field,
            message,
        }
    }
}

/// serde quotes the offending value in backticks. Under `keys` and `redis` that value may be a
/// secret (an API key, a password in a URL), so it is masked there; everywhere it is bounded,
/// so a megabyte of garbage does not come back as a megabyte of error.
fn redact(field: &str, message: &str) -> String {
    const MAX: usize = 300;
    let sensitive =
        field.starts_with("keys") || field.starts_with("redis") || field.starts_with("admin_token");
    let mut out = String::with_capacity(message.len().min(MAX));
    let mut inside = false;
    for part in message.split('`') {
        if inside {
            out.push('`');
            if sensitive {
                out.push_str("(value hidden)");
            } else if part.len() > 64 {
                let mut end = 64;
                while !part.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&part[..end]);
                out.push_str("...");
            } else {
                out.push_str(part);
            }
            out.push('`');
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    if out.len() > MAX {
        let mut end = MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

/// Removes every " at line N column M" from a serde_yaml message.
fn strip_position(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let skip = tail
            .find(|c: char| !(c.is_ascii_digit() || c == ' ' || "column".contains(c)))
            .unwrap_or(tail.len());
        rest = &tail[skip..];
    }
    out.push_str(rest);
    out
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn build(cx: &Cx<'_>, raw: RawConfig, content_hash: [u8; 32]) -> Result<Snapshot, ConfigError> {
    let listen = super::listen::listeners(cx, &raw.listen)?;
    raw.admin_listen.parse::<SocketAddr>().map_err(|_| {
        cx.at(
            "admin_listen",
            format!("'{}' is not an IP:port address", raw.admin_listen),
        )
    })?;
    if listen.iter().any(|l| l.addr == raw.admin_listen) {
        return Err(cx.at("admin_listen", "must differ from every `listen` address"));
    }

    let redis = raw
        .redis
        .as_ref()
        .map(|r| redis_settings(cx, r))
        .transpose()?;
    let upstreams = upstreams(cx, &raw)?;
    let routes = routes(cx, &raw, &upstreams)?;
    let tiers = tiers(cx, &raw)?;

    let id = &raw.identity;
    let key_header = http::HeaderName::from_bytes(id.header.trim().as_bytes()).map_err(|_| {
        cx.at(
            "identity.header",
            format!("'{}' is not a header name", id.header),
        )
    })?;
    let anonymous = match &id.anonymous {
        RawAnonymous::Keyword(k) if k == "reject" => AnonymousPolicy::Reject,
        RawAnonymous::Keyword(k) => {
            return Err(cx.at(
                "identity.anonymous",
                format!("'{k}' is not valid (use `reject` or `{{ tier: <name> }}`)"),
            ))
        }
        RawAnonymous::Tier(t) => AnonymousPolicy::Tier(
            tiers
                .get(&t.tier)
                .cloned()
                .ok_or_else(|| cx.at("identity.anonymous.tier", unknown_tier(&t.tier, &tiers)))?,
        ),
    };
    let mut trusted_proxies = Vec::new();
    for (i, p) in id.trusted_proxies.iter().enumerate() {
        let net = p
            .parse::<IpNet>()
            .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                cx.at(
                    &format!("identity.trusted_proxies[{i}]"),
                    format!("'{p}' is not a CIDR or IP address"),
                )
            })?;
        trusted_proxies.push(net);
    }

    let keys = keys(cx, &raw, &tiers)?;

    let log = &raw.access_log;
    if !(0.0..=1.0).contains(&log.sample) || log.sample.is_nan() {
        return Err(cx.at("access_log.sample", "must be between 0.0 and 1.0"));
    }
    let admin_token_sha256 = match &raw.admin_token_sha256 {
        Some(h) => Some(
            sha256_hex(h)
                .ok_or_else(|| cx.at("admin_token_sha256", "must be 64 hex characters"))?,
        ),
        None => None,
    };

    Ok(Snapshot {
        source: cx.path.to_path_buf(),
        content_hash,
        listen,
        admin_listen: raw.admin_listen.clone(),
        redis,
        upstreams,
        routes,
        key_header,
        unknown_key_anonymous: id.unknown_key == RawUnknownKey::Anonymous,
        anonymous,
        trusted_proxies,
        tiers,
        keys,
        access_log: AccessLogSettings {
            enabled: log.enabled,
            path: log.path.clone(),
            sample: log.sample,
        },
        admin_token_sha256,
    })
}

/// 64 hex characters as the 32 bytes of a SHA-256 digest.
fn sha256_hex(hexed: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hexed.trim()).ok()?;
    bytes.try_into().ok()
}

fn unknown_tier(name: &str, tiers: &HashMap<String, Arc<Tier>>) -> String {
    let mut known: Vec<&str> = tiers.keys().map(String::as_str).collect();
    known.sort_unstable();
    format!("unknown tier '{name}' (defined: {})", known.join(", "))
}

fn redis_settings(cx: &Cx<'_>, r: &super::schema::RawRedis) -> Result<RedisSettings, ConfigError> {
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
            // Never echo the URL: it may carry a password.
            return Err(cx.at(&field, "must start with redis:// or rediss://"));
        }
        redis::Client::open(u.as_str()).map_err(|_| cx.at(&field, "is not a valid Redis URL"))?;
    }
    if r.timeout_ms == 0 || r.timeout_ms > 60_000 {
        return Err(cx.at("redis.timeout_ms", "must be between 1 and 60000"));
    }
    if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}', ' ']) {
        return Err(cx.at(
            "redis.key_prefix",
            "must be non-empty without braces or spaces (braces would break the cluster hash tag)",
        ));
    }
    if r.breaker_failures == 0 {
        return Err(cx.at("redis.breaker_failures", "must be at least 1"));
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
        breaker_failures: r.breaker_failures,
        breaker_open: r.breaker_open.0,
        over_limit_cache: r.over_limit_cache,
    })
}

/// Splits `host:port` (or `[v6]:port`) without resolving it.
fn split_host_port(peer: &str) -> Option<(&str, u16)> {
    if let Ok(sa) = peer.parse::<SocketAddr>() {
        let _ = sa;
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

fn upstreams(
    cx: &Cx<'_>,
    raw: &RawConfig,
) -> Result<HashMap<String, UpstreamSettings>, ConfigError> {
    if raw.upstreams.is_empty() {
        return Err(cx.at("upstreams", "needs at least one upstream"));
    }
    let mut out = HashMap::new();
    for (name, u) in &raw.upstreams {
        let f = format!("upstreams.{name}");
        if !is_label(name) {
            return Err(cx.at(
                &f,
                "upstream names may use letters, digits, '_', '-' and '.'",
            ));
        }
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
        let health_check = match &u.health_check {
            Some(h) => {
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
                HealthCheckSettings {
                    path: h.path.clone(),
                    interval: h.interval.0,
                }
            }
            None => HealthCheckSettings {
                path: None,
                interval: Duration::from_secs(5),
            },
        };
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
        out.insert(
            name.clone(),
            UpstreamSettings {
                name: name.clone(),
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
            },
        );
    }
    Ok(out)
}

fn routes(
    cx: &Cx<'_>,
    raw: &RawConfig,
    upstreams: &HashMap<String, UpstreamSettings>,
) -> Result<Vec<Route>, ConfigError> {
    if raw.routes.is_empty() {
        return Err(cx.at("routes", "needs at least one route"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let f = format!("routes[{i}]");
        if !r.prefix.starts_with('/') {
            return Err(cx.at(&format!("{f}.prefix"), "must start with '/'"));
        }
        if !seen.insert(r.prefix.clone()) {
            return Err(cx.at(
                &format!("{f}.prefix"),
                format!("duplicate prefix '{}'", r.prefix),
            ));
        }
        if !upstreams.contains_key(&r.upstream) {
            let mut known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(cx.at(
                &format!("{f}.upstream"),
                format!(
                    "unknown upstream '{}' (defined: {})",
                    r.upstream,
                    known.join(", ")
                ),
            ));
        }
        if r.cost == 0 {
            return Err(cx.at(&format!("{f}.cost"), "must be at least 1"));
        }
        out.push(Route {
            name: Arc::from(r.prefix.as_str()),
            prefix: r.prefix.clone(),
            upstream: r.upstream.clone(),
            strip_prefix: r.strip_prefix,
            cost: r.cost,
            preserve_host: r.preserve_host,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(out)
}

/// Safe in a metric label, a header value, a Redis key and a structured-field string.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
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

fn limit(cx: &Cx<'_>, f: &str, l: &RawLimit) -> Result<Limit, ConfigError> {
    if l.requests == 0 {
        return Err(cx.at(
            &format!("{f}.requests"),
            "must be at least 1 (use `limits: []` for an unlimited tier)",
        ));
    }
    if l.requests > 1_000_000_000 {
        return Err(cx.at(&format!("{f}.requests"), "must be at most 1000000000"));
    }
    let window_ms = l.window.0.as_millis() as u64;
    if window_ms == 0 {
        return Err(cx.at(&format!("{f}.window"), "must be positive"));
    }
    if window_ms > 366 * 86_400_000 {
        return Err(cx.at(&format!("{f}.window"), "must be at most 366d"));
    }
    let algorithm = match &l.algorithm {
        None => Algorithm::default(),
        Some(a) => a
            .parse()
            .map_err(|m: String| cx.at(&format!("{f}.algorithm"), m))?,
    };
    if algorithm == Algorithm::SlidingLog && l.requests > 100_000 {
        return Err(cx.at(
            &format!("{f}.requests"),
            "sliding_log keeps one entry per request; above 100000 use sliding_window or token_bucket",
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

fn tiers(cx: &Cx<'_>, raw: &RawConfig) -> Result<HashMap<String, Arc<Tier>>, ConfigError> {
    if raw.tiers.is_empty() {
        return Err(cx.at("tiers", "needs at least one tier"));
    }
    let mut out = HashMap::new();
    for (name, t) in &raw.tiers {
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
        let limit_headers = limits.iter().map(limit_headers).collect();
        out.insert(
            name.clone(),
            Arc::new(Tier {
                name: name.as_str().into(),
                limits,
                shadow: t.shadow,
                limit_headers,
            }),
        );
    }
    Ok(out)
}

/// `w` is whole seconds in the header draft; a sub-second window rounds up to 1.
fn limit_headers(l: &Limit) -> LimitHeaders {
    let w = l.window_ms.div_ceil(1000).max(1);
    let policy = format!("\"{}\";q={};w={}", l.name, l.requests, w);
    LimitHeaders {
        // Names are validated as [A-Za-z0-9_.-], so these are always valid header values.
        policy: http::HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| http::HeaderValue::from_static("\"limit\"")),
        limit: http::HeaderValue::from(l.requests),
    }
}

fn keys(
    cx: &Cx<'_>,
    raw: &RawConfig,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<HashMap<[u8; 32], Arc<KeyEntry>, ahash::RandomState>, ConfigError> {
    let mut out = HashMap::with_hasher(ahash::RandomState::new());
    let mut ids = HashSet::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let f = format!("keys[{i}]");
        if !is_label(&k.id) {
            return Err(cx.at(
                &format!("{f}.id"),
                "ids may use letters, digits, '_', '-' and '.' (at most 64)",
            ));
        }
        if !ids.insert(k.id.clone()) {
            return Err(cx.at(&format!("{f}.id"), format!("duplicate id '{}'", k.id)));
        }
        let digest: [u8; 32] = match (&k.key, &k.key_sha256) {
            (Some(key), None) => {
                if key.is_empty() || http::HeaderValue::from_str(key).is_err() {
                    // Never echo the key itself.
                    return Err(cx.at(
                        &format!("{f}.key"),
                        "must be a non-empty header-safe string",
                    ));
                }
                identity::digest(key.as_bytes())
            }
            (None, Some(hexed)) => sha256_hex(hexed)
                .ok_or_else(|| cx.at(&format!("{f}.key_sha256"), "must be 64 hex characters"))?,
            (Some(_), Some(_)) => {
                return Err(cx.at(&f, "set either `key` or `key_sha256`, not both"))
            }
            (None, None) => return Err(cx.at(&f, "needs `key` or `key_sha256`")),
        };
        let tier = tiers
            .get(&k.tier)
            .cloned()
            .ok_or_else(|| cx.at(&format!("{f}.tier"), unknown_tier(&k.tier, tiers)))?;
        let entry = KeyEntry {
            id: k.id.as_str().into(),
            tier,
            store_identity: StoreIdentity::for_key(&digest),
            digest,
            id_header: http::HeaderValue::from_str(&k.id)
                .map_err(|_| cx.at(&format!("{f}.id"), "is not header-safe"))?,
        };
        if out.insert(digest, Arc::new(entry)).is_some() {
            return Err(cx.at(
                &f,
                "this key is already assigned to another id (keys must be unique)",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const GOOD: &str = r#"
listen: ["127.0.0.1:8080"]
admin_listen: "127.0.0.1:9091"
upstreams:
  echo:
    peers: ["127.0.0.1:9000"]
routes:
  - prefix: "/"
    upstream: echo
identity:
  anonymous: { tier: anonymous }
tiers:
  anonymous:
    limits: [{ requests: 10, window: 60s }]
  free:
    limits: [{ requests: 60, window: 60s }]
keys:
  - { id: alice, key: "free-demo-key", tier: free }
"#;

    fn load(src: &str) -> Result<Snapshot, ConfigError> {
        load_str(&PathBuf::from("t.yaml"), src)
    }

    #[test]
    fn loads_a_good_file() {
        let s = load(GOOD).unwrap();
        assert_eq!(s.tiers["free"].limits[0].name.as_ref(), "per_minute");
        assert!(s.key_for(b"free-demo-key").is_some());
        assert!(s.key_for(b"other").is_none());
        assert_eq!(s.routes[s.route_for("/x").unwrap()].upstream, "echo");
    }

    #[test]
    fn unknown_tier_names_line_and_field() {
        let e = load(&GOOD.replace("tier: free }", "tier: gold }")).unwrap_err();
        assert_eq!(e.field, "keys[0].tier");
        assert_eq!(e.line, 18);
        assert!(e.message.contains("unknown tier 'gold'"), "{e}");
    }

    #[test]
    fn bad_window_names_line_and_field() {
        let e = load(&GOOD.replace("requests: 60, window: 60s", "requests: 60, window: 60"))
            .unwrap_err();
        assert_eq!(e.field, "tiers.free.limits[0].window");
        assert_eq!(e.line, 16);
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = load(&GOOD.replace("    upstream: echo", "    upstream: echo\n    upstrem: x"))
            .unwrap_err();
        assert_eq!(e.field, "routes[0].upstrem");
        assert_eq!(e.line, 10);
    }

    #[test]
    fn invalid_yaml_names_the_line() {
        let e = load("listen: [\n  oops: : :\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
    }

    #[test]
    fn values_under_keys_and_redis_are_masked() {
        let m = redact(
            "keys[0].key",
            "invalid value: `sk-live-123`, expected a string",
        );
        assert!(!m.contains("sk-live-123"), "{m}");
        let m = redact(
            "redis.url",
            "invalid type: string `redis://u:pw@h`, expected x",
        );
        assert!(!m.contains("pw@"), "{m}");
        let m = redact(
            "tiers.a.limits[0].window",
            &format!("bad `{}`", "9".repeat(10_000)),
        );
        assert!(m.len() < 400, "bounded");
        assert_eq!(redact("routes[0].cost", "invalid `x`"), "invalid `x`");
    }

    #[test]
    fn secrets_never_echoed() {
        let e = load(&GOOD.replace(
            "  - { id: alice, key: \"free-demo-key\", tier: free }",
            "  - { id: alice, key: \"free-demo-key\", tier: free }\n  - { id: bob, key: \"free-demo-key\", tier: free }",
        ))
        .unwrap_err();
        assert!(!e.to_string().contains("free-demo-key"), "{e}");
    }
}
