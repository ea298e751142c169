//! The YAML schema exactly as operators write it. Parsing is strict: an unknown or misspelled
//! field is an error, never silently ignored. Semantic checks live in `validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration::parse_duration;

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
    pub listen: Vec<String>,
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
    #[serde(default)]
    pub access_log: RawAccessLog,
    /// SHA-256 (hex) of the admin API's bearer token.
    pub admin_token_sha256: Option<String>,
}

fn default_listen() -> Vec<String> {
    vec!["0.0.0.0:8080".to_string()]
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
    /// Consecutive failures that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe is let through.
    #[serde(default = "default_breaker_open")]
    pub breaker_open: Dur,
    /// Reject a key locally until Redis said its slot frees, without asking Redis again.
    #[serde(default = "default_true")]
    pub over_limit_cache: bool,
}

fn default_timeout_ms() -> u64 {
    50
}
fn default_key_prefix() -> String {
    "tollgate".to_string()
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open() -> Dur {
    Dur(Duration::from_secs(1))
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
    pub prefix: String,
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
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            header: default_key_header(),
            unknown_key: RawUnknownKey::default(),
            anonymous: RawAnonymous::default(),
            trusted_proxies: Vec::new(),
        }
    }
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
