//! Turns a parsed file into a [`Snapshot`], checking every value and cross-reference.
//!
//! The first problem found is returned as a [`ConfigError`] naming the file, line and field;
//! nothing is half-applied. Validation does no I/O besides reading the file and the certificate
//! files it names, so `tollgate -t` and a reload give the same verdict. Each section of the file
//! has its own module, checked in the order the sections are written: [`listen`] (`listen` with
//! its TLS certificates, `admin_listen`, the admin token and the accept-time
//! `connection_rate`), [`redis`], [`upstreams`], [`routes`] (with [`route_match`]), [`tiers`],
//! [`policies`] (compiled into per-route plans), [`identity`] and [`keys`]; [`context`] turns
//! serde's errors into positioned ones.

mod breaker;
mod context;
mod identity;
mod keys;
mod keys_file;
mod listen;
mod policies;
mod redis;
mod route_match;
mod routes;
mod tiers;
mod upstreams;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::error::ConfigError;
use super::positions::Positions;
use super::schema::{RawConfig, RawUnknownKey};
use super::snapshot::{AccessLogSettings, Snapshot, Tier};
use context::Cx;

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

/// `current` with its key table rebuilt from its `keys:` entries and a fresh read of its keys
/// file, everything else kept: the reload of a changed keys file. `None` without a keys file.
pub fn reload_keys(current: &Snapshot) -> Result<Option<Snapshot>, ConfigError> {
    let Some(file) = &current.keys_file else {
        return Ok(None);
    };
    let tiers = current.keys.tiers().to_vec();
    let (table, file) = match keys::build_table(tiers, &current.yaml_keys, Some(&file.path)) {
        Ok(built) => built,
        Err(keys::TableError::Config(e)) => return Err(e),
        Err(keys::TableError::Unreadable(e)) => {
            return Err(ConfigError {
                file: file.path.clone(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read: {e}"),
            })
        }
    };
    let mut next = current.clone();
    next.keys = Arc::new(table);
    next.keys_file = file;
    Ok(Some(next))
}

/// Validates every section in turn and assembles the snapshot.
fn build(cx: &Cx<'_>, raw: RawConfig, content_hash: [u8; 32]) -> Result<Snapshot, ConfigError> {
    let listen = listen::check(cx, &raw)?;
    let redis = raw
        .redis
        .as_ref()
        .map(|r| redis::settings(cx, r))
        .transpose()?;
    let upstreams = upstreams::upstreams(cx, &raw)?;
    let routes = routes::routes(cx, &raw, &upstreams)?;
    let tiers = tiers::tiers(cx, &raw)?;
    let plans = policies::plans(cx, &raw, &routes, &tiers)?;
    let identity = identity::identity(cx, &raw.identity, &tiers)?;
    if raw.memory_max_identities == 0 || raw.memory_max_identities > 1_000_000_000 {
        return Err(cx.at("memory_max_identities", "must be between 1 and 1000000000"));
    }
    let keys = keys::keys(cx, &raw, &tiers)?;
    let keys_redis = keys::keys_redis(cx, &raw)?;
    let access_log = access_log(cx, &raw)?;
    let admin_token_sha256 = listen::admin_token(cx, &raw)?;
    let connection_rate = listen::connection_rate(cx, &raw)?;
    Ok(Snapshot {
        source: cx.path.to_path_buf(),
        content_hash,
        listen,
        admin_listen: raw.admin_listen.clone(),
        redis,
        upstreams,
        routes,
        key_header: identity.key_header,
        unknown_key_anonymous: raw.identity.unknown_key == RawUnknownKey::Anonymous,
        anonymous: identity.anonymous,
        trusted_proxies: identity.trusted_proxies,
        tiers,
        keys: Arc::new(keys.table),
        yaml_keys: keys.yaml.into(),
        keys_file: keys.file,
        keys_redis,
        access_log,
        admin_token_sha256,
        plans,
        ipv6_prefix: identity.ipv6_prefix,
        memory_max_identities: raw.memory_max_identities as usize,
        connection_rate,
    })
}

fn access_log(cx: &Cx<'_>, raw: &RawConfig) -> Result<AccessLogSettings, ConfigError> {
    let log = &raw.access_log;
    if !(0.0..=1.0).contains(&log.sample) || log.sample.is_nan() {
        return Err(cx.at("access_log.sample", "must be between 0.0 and 1.0"));
    }
    Ok(AccessLogSettings {
        enabled: log.enabled,
        path: log.path.clone(),
        sample: log.sample,
    })
}

fn unknown_tier(name: &str, tiers: &HashMap<String, Arc<Tier>>) -> String {
    let mut known: Vec<&str> = tiers.keys().map(String::as_str).collect();
    known.sort_unstable();
    format!("unknown tier '{name}' (defined: {})", known.join(", "))
}

/// 64 hex characters as the 32 bytes of a SHA-256 digest.
fn sha256_hex(hexed: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hexed.trim()).ok()?;
    bytes.try_into().ok()
}

/// Safe in a metric label, a header value, a Redis key and a structured-field string.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::context::redact;
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
        assert!(s.caller(Some(b"free-demo-key"), None).is_ok());
        assert!(s.caller(Some(b"other"), None).is_err());
        assert_eq!(
            s.routes[s.route_for("/x", &http::Method::GET).unwrap()].upstream,
            "echo"
        );
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
        // Field names are never secret, wherever the unknown field sits.
        let m = redact(
            "keys[0].expires",
            "unknown field `expires`, expected one of `id`, `key`",
        );
        assert_eq!(m, "unknown field `expires`, expected one of `id`, `key`");
        let m = redact(
            "keys[0]",
            "invalid type: string \"sk-\\\"live\", expected x",
        );
        assert_eq!(m, "invalid type: string \"(value hidden)\", expected x");
        assert_eq!(
            redact("keys[0].tier", "invalid type: sequence `x`"),
            "invalid type: sequence `x`"
        );
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
