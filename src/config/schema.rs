//! The YAML schema exactly as operators write it. Parsing is strict: an unknown or misspelled
//! field is an error, never silently ignored. Semantic checks live in `validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration::parse_duration;
use crate::limiter::BreakerSettings;

/// A duration written with a unit (`60s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    pub listen: Vec<RawListen>,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    pub redis: Option<RawRedis>,
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub identity: RawIdentity,
    pub tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// A TSV of keys (`id`, `tier`, `sha256`, optional `expires`), relative to this file.
    pub keys_file: Option<String>,
    /// Keys found in neither `keys` nor `keys_file` are looked up in this Redis hash.
    pub keys_redis: Option<RawKeysRedis>,
    #[serde(default)]
    pub access_log: RawAccessLog,
    /// SHA-256 (hex) of the admin API's bearer token.
    pub admin_token_sha256: Option<String>,
    /// New connections per client address, decided at accept time.
    pub connection_rate: Option<RawConnectionRate>,
    /// Limits per route, method and attribute, checked together with the tier's own.
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    /// The most identities the in-process store holds (then: a shared overflow bucket per tier).
    #[serde(default = "default_memory_max_identities")]
    pub memory_max_identities: u64,
}

fn default_memory_max_identities() -> u64 {
    crate::limiter::store::memory::DEFAULT_MAX_IDENTITIES as u64
}

/// `{ name, match: { routes, methods }, by, limits | tiers }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(default)]
    pub r#match: RawMatch,
    /// `identity` (default), `ip`, `global` or `header:<name>`.
    pub by: Option<String>,
    pub limits: Option<Vec<RawLimit>>,
    pub tiers: Option<BTreeMap<String, Vec<RawLimit>>>,
}

/// Omitted fields match anything.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub routes: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConnectionRate {
    pub per_ip: u32,
    #[serde(default = "default_connection_window")]
    pub window: Dur,
}

fn default_connection_window() -> Dur {
    Dur(Duration::from_secs(1))
}

fn default_listen() -> Vec<RawListen> {
    vec![RawListen {
        addr: "0.0.0.0:8080".to_string(),
        tls: None,
        http2: None,
    }]
}

/// A `listen` entry: `"0.0.0.0:8080"`, or `{ addr, tls, http2 }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawListen {
    pub addr: String,
    pub tls: Option<RawListenTls>,
    /// Default: true with `tls` (ALPN h2), false without (h2c by prior knowledge when true).
    pub http2: Option<bool>,
}

impl<'de> Deserialize<'de> for RawListen {
    /// The string form, or the map form (parsed strictly, so a typo is named).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawListen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an \"IP:port\" string or a map with `addr`, `tls`, `http2`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawListen, E> {
                Ok(RawListen {
                    addr: v.to_string(),
                    tls: None,
                    http2: None,
                })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, m: M) -> Result<RawListen, M::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    addr: String,
                    tls: Option<RawListenTls>,
                    http2: Option<bool>,
                }
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(RawListen {
                    addr: f.addr,
                    tls: f.tls,
                    http2: f.http2,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenTls {
    pub certs: Vec<RawCertPair>,
    /// `"1.2"` (default) or `"1.3"`; an unquoted `1.3` is accepted too.
    pub min_version: Option<TlsVersion>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

/// A TLS version as written: `"1.2"`, `1.2`, `"1.3"` or `1.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        let text = match &v {
            serde_yaml::Value::String(s) => s.trim().to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match text.as_str() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            _ => Err(serde::de::Error::custom("must be \"1.2\" or \"1.3\"")),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9091".to_string()
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<String>,
    pub cluster: Option<Vec<String>>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub on_error: RawOnError,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Deprecated (the breaker judges a failure rate now): stands in for `breaker_min_calls`
    /// when that is not set.
    pub breaker_failures: Option<u32>,
    /// How far back the breaker judges the failure rate.
    #[serde(default = "default_breaker_window")]
    pub breaker_window: Dur,
    /// Calls needed in the stretch judged before the breaker may open.
    pub breaker_min_calls: Option<u32>,
    /// Share of those calls that must have failed.
    #[serde(default = "default_breaker_failure_ratio")]
    pub breaker_failure_ratio: f64,
    /// How far apart the failures must lie: a shorter burst is a blip.
    #[serde(default = "default_breaker_failure_spread")]
    pub breaker_failure_spread: Dur,
    /// Open time before the first probes.
    #[serde(default = "default_breaker_half_open_after")]
    pub breaker_half_open_after: Dur,
    /// Probe calls at once while half-open.
    #[serde(default = "default_breaker_probes")]
    pub breaker_probes: u32,
    /// The longest open period (failed probes double it up to this).
    #[serde(default = "default_breaker_open")]
    pub breaker_open: Dur,
    /// Reject a key locally until Redis said its slot frees, without asking Redis again.
    #[serde(default = "default_true")]
    pub over_limit_cache: bool,
    /// How long a concurrency slot outlives a replica that died holding it.
    #[serde(default = "default_concurrency_lease")]
    pub concurrency_lease: Dur,
}

fn default_timeout_ms() -> u64 {
    50
}
fn default_concurrency_lease() -> Dur {
    Dur(crate::limiter::DEFAULT_CONCURRENCY_LEASE)
}
fn default_key_prefix() -> String {
    "tollgate".to_string()
}
fn default_breaker_open() -> Dur {
    Dur(BreakerSettings::default().open_max)
}
fn default_breaker_window() -> Dur {
    Dur(BreakerSettings::default().window)
}
fn default_breaker_failure_ratio() -> f64 {
    BreakerSettings::default().failure_ratio
}
fn default_breaker_failure_spread() -> Dur {
    Dur(BreakerSettings::default().failure_spread)
}
fn default_breaker_half_open_after() -> Dur {
    Dur(BreakerSettings::default().half_open_after)
}
fn default_breaker_probes() -> u32 {
    BreakerSettings::default().probes
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawOnError {
    #[default]
    FailOpen,
    FailClosed,
    Local,
}

impl From<RawOnError> for crate::limiter::OnError {
    fn from(r: RawOnError) -> Self {
        match r {
            RawOnError::FailOpen => Self::FailOpen,
            RawOnError::FailClosed => Self::FailClosed,
            RawOnError::Local => Self::Local,
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub peers: Vec<String>,
    #[serde(default)]
    pub tls: bool,
    /// Speak HTTP/2 to the peers: ALPN h2 with `tls`, h2c by prior knowledge without.
    #[serde(default)]
    pub http2: bool,
    pub sni: Option<String>,
    pub host: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Dur,
    #[serde(default = "default_read_timeout")]
    pub write_timeout: Dur,
    /// Extra peers to try after a connect failure (never after the request was sent).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_connect_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_read_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_retries() -> u32 {
    2
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// HTTP GET this path and expect a 2xx; without it, a TCP connect is the check.
    pub path: Option<String>,
    #[serde(default = "default_hc_interval")]
    pub interval: Dur,
}

fn default_hc_interval() -> Dur {
    Dur(Duration::from_secs(5))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Used by policies and as the `route` metric label; default: the prefix.
    pub name: Option<String>,
    pub prefix: String,
    /// Only these methods match the route (default: any).
    pub methods: Option<Vec<String>>,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "default_cost")]
    pub cost: u64,
    #[serde(default)]
    pub preserve_host: bool,
}

fn default_cost() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default = "default_key_header")]
    pub header: String,
    #[serde(default)]
    pub unknown_key: RawUnknownKey,
    #[serde(default)]
    pub anonymous: RawAnonymous,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are bucketed by this prefix length (128: the whole address).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            header: default_key_header(),
            unknown_key: RawUnknownKey::default(),
            anonymous: RawAnonymous::default(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: default_ipv6_prefix(),
        }
    }
}

fn default_ipv6_prefix() -> u8 {
    64
}

fn default_key_header() -> String {
    "x-api-key".to_string()
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawUnknownKey {
    /// 401: a typo in a key should be loud, not silently anonymous.
    #[default]
    Reject,
    /// Treat the caller as anonymous (limited per IP).
    Anonymous,
}

/// `anonymous: reject` or `anonymous: { tier: anonymous }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawAnonymous {
    Keyword(String),
    Tier(RawAnonymousTier),
}

impl Default for RawAnonymous {
    fn default() -> Self {
        RawAnonymous::Keyword("reject".to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnonymousTier {
    pub tier: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub limits: Vec<RawLimit>,
    #[serde(default)]
    pub shadow: bool,
    /// At most this many requests of one identity in flight at once, across replicas.
    pub concurrency: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    pub name: Option<String>,
    pub requests: u64,
    pub window: Dur,
    pub algorithm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    pub key: Option<String>,
    pub key_sha256: Option<String>,
    pub tier: String,
    /// RFC 3339: from this instant the key is refused.
    pub expires: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeysRedis {
    #[serde(default = "default_keys_hash")]
    pub hash: String,
    /// Digests cached per replica, found and not found alike.
    #[serde(default = "default_keys_cache")]
    pub cache: u64,
    /// How long a cached answer stands: the revocation delay.
    #[serde(default = "default_keys_ttl")]
    pub ttl: Dur,
}

fn default_keys_hash() -> String {
    "tollgate:keys".to_string()
}
fn default_keys_cache() -> u64 {
    100_000
}
fn default_keys_ttl() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A file to append JSON lines to; stdout when absent.
    pub path: Option<String>,
    /// Fraction of requests logged (0.0 to 1.0). Errors and 429s are always logged.
    #[serde(default = "default_sample")]
    pub sample: f64,
}

impl Default for RawAccessLog {
    fn default() -> Self {
        RawAccessLog {
            enabled: true,
            path: None,
            sample: 1.0,
        }
    }
}

fn default_sample() -> f64 {
    1.0
}
