//! The immutable, validated form of a configuration, with lookup tables for the hot path.
//!
//! A request loads one `Arc<Snapshot>` and keeps it to the end, so a reload never changes the
//! rules under a request in flight. Nothing in here is parsed per request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use subtle::ConstantTimeEq;

use crate::identity::{self, KeyDigest, StoreIdentity};

use crate::limiter::Limit;
pub use crate::limiter::{OnError, RedisSettings};

#[derive(Debug)]
pub struct Snapshot {
    /// Where it was loaded from (for reload and error messages).
    pub source: PathBuf,
    /// A hash of the file's bytes: a reload of an identical file is a no-op.
    pub content_hash: [u8; 32],
    pub listen: Vec<String>,
    pub admin_listen: String,
    pub redis: Option<RedisSettings>,
    pub upstreams: HashMap<String, UpstreamSettings>,
    /// Sorted longest prefix first, so the first match is the longest.
    pub routes: Vec<Route>,
    pub key_header: http::HeaderName,
    pub unknown_key_anonymous: bool,
    pub anonymous: AnonymousPolicy,
    pub trusted_proxies: Vec<IpNet>,
    pub tiers: HashMap<String, Arc<Tier>>,
    /// SHA-256 of the API key → key entry.
    pub keys: HashMap<KeyDigest, Arc<KeyEntry>, ahash::RandomState>,
    pub access_log: AccessLogSettings,
    /// The admin API's bearer token, as a digest (`TOLLGATE_ADMIN_TOKEN` overrides it).
    pub admin_token_sha256: Option<KeyDigest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    pub peers: Vec<String>,
    pub tls: bool,
    pub sni: String,
    /// The Host header the upstream gets (unless a route preserves the client's).
    pub host: String,
    pub health_check: HealthCheckSettings,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSettings {
    /// None: TCP connect check.
    pub path: Option<String>,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// The route's label in metrics and logs: its prefix as configured.
    pub name: Arc<str>,
    pub prefix: String,
    pub upstream: String,
    pub strip_prefix: bool,
    pub cost: u64,
    pub preserve_host: bool,
}

#[derive(Debug, Clone)]
pub enum AnonymousPolicy {
    Reject,
    Tier(Arc<Tier>),
}

#[derive(Debug)]
pub struct Tier {
    pub name: Arc<str>,
    pub limits: Vec<Limit>,
    pub shadow: bool,
    /// Header values of each limit (same order as `limits`), computed once per load.
    pub limit_headers: Vec<LimitHeaders>,
}

/// The parts of the rate-limit headers that depend only on the configuration.
#[derive(Debug, Clone)]
pub struct LimitHeaders {
    /// `"per_minute";q=600;w=60`
    pub policy: http::HeaderValue,
    /// `600`
    pub limit: http::HeaderValue,
}

#[derive(Debug)]
pub struct KeyEntry {
    pub id: Arc<str>,
    pub tier: Arc<Tier>,
    /// `k:<hex>`: the identity the store sees (a digest of the key, never the key).
    pub store_identity: StoreIdentity,
    pub digest: KeyDigest,
    /// `id` as a header value, computed once.
    pub id_header: http::HeaderValue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    pub enabled: bool,
    pub path: Option<String>,
    pub sample: f64,
}

impl Snapshot {
    /// The index in `routes` of the longest configured prefix that matches `path`.
    pub fn route_for(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| path.starts_with(&r.prefix))
    }

    /// The key entry with configured id `id` (any of its keys): a scan, for the admin API only.
    pub fn key_by_id(&self, id: &str) -> Option<&Arc<KeyEntry>> {
        self.keys.values().find(|k| &*k.id == id)
    }

    /// Looks a presented API key up by its digest, comparing digests in constant time.
    pub fn key_for(&self, presented: &[u8]) -> Option<&Arc<KeyEntry>> {
        let digest = identity::digest(presented);
        let entry = self.keys.get(&digest)?;
        bool::from(entry.digest.ct_eq(&digest)).then_some(entry)
    }
}
