//! The immutable, validated form of a configuration, with lookup tables for the hot path.
//!
//! A request loads one `Arc<Snapshot>` and keeps it to the end, so a reload never changes the
//! rules under a request in flight. Nothing in here is parsed per request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::key_table::{KeyRef, KeySpec, KeyTable};
use crate::identity::{KeyDigest, StoreIdentity};
use crate::tls::CertSet;

use super::plan::{Plan, RoutePlans};
use crate::limiter::Limit;
pub use crate::limiter::{OnError, RedisSettings};

/// Cloned only to replace the key table (a reload of the keys file alone): everything else in
/// it is small.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where it was loaded from (for reload and error messages).
    pub source: PathBuf,
    /// A hash of the file's bytes: a reload of an identical file is a no-op.
    pub content_hash: [u8; 32],
    pub listen: Vec<ListenerSettings>,
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
    /// Every key of `keys:` and of the keys file, by digest.
    pub keys: Arc<KeyTable>,
    /// The `keys:` entries, to rebuild the table when only the keys file changed.
    pub yaml_keys: Arc<[KeySpec]>,
    /// The keys file in force, if any.
    pub keys_file: Option<KeysFile>,
    /// Where keys found in neither table are looked up, if anywhere.
    pub keys_redis: Option<KeysRedisSettings>,
    pub access_log: AccessLogSettings,
    /// Per route (same order as `routes`): the budgets of each method class and tier.
    pub plans: Vec<RoutePlans>,
    /// IPv6 clients are bucketed by this prefix (anonymous callers and `by: ip`).
    pub ipv6_prefix: u8,
    /// The most identities the in-process store holds.
    pub memory_max_identities: usize,
    /// The admin API's bearer token, as a digest (`TOLLGATE_ADMIN_TOKEN` overrides it).
    pub admin_token_sha256: Option<KeyDigest>,
    pub connection_rate: Option<ConnectionRateSettings>,
}

/// `connection_rate`: at most `per_ip` new connections per `window` from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRateSettings {
    pub per_ip: u32,
    pub window: Duration,
}

/// One proxy listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub addr: String,
    /// HTTP/2 beside HTTP/1.1: ALPN h2 with TLS, h2c by prior knowledge without.
    pub http2: bool,
    pub tls: Option<TlsListenerSettings>,
}

impl ListenerSettings {
    /// Whether both describe the same socket and protocols, which a reload cannot change.
    /// Certificates may differ: a reload swaps them in.
    pub fn same_socket(&self, other: &ListenerSettings) -> bool {
        self.addr == other.addr
            && self.http2 == other.http2
            && self.tls.as_ref().map(|t| t.tls13_only) == other.tls.as_ref().map(|t| t.tls13_only)
    }
}

#[derive(Debug, Clone)]
pub struct TlsListenerSettings {
    /// `min_version: "1.3"`.
    pub tls13_only: bool,
    pub certs: Vec<CertPairSettings>,
    /// The pairs as read and checked when the file was validated, in the same order.
    pub loaded: Arc<CertSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPairSettings {
    /// Absolute, or relative to the working directory when the config path was.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `listen[1].tls.certs[0]`: where the pair is configured, for error messages.
    pub field: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    pub peers: Vec<String>,
    pub tls: bool,
    /// HTTP/2 to the peers (gRPC needs it): ALPN h2 with TLS, h2c by prior knowledge without.
    pub http2: bool,
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
    /// The route's label in metrics and logs, and what policies match: its `name`, by default
    /// its prefix as configured.
    pub name: Arc<str>,
    pub prefix: String,
    /// The methods this route matches; `None`: any.
    pub methods: Option<Vec<http::Method>>,
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
    /// Position among the snapshot's tiers (0..tiers.len()): indexes per-tier tables (the
    /// per-route plans, the metric handles), so the request path does no lookup by name.
    pub index: usize,
    pub limits: Vec<Limit>,
    pub shadow: bool,
    /// Header values of each limit (same order as `limits`), computed once per load.
    pub limit_headers: Vec<LimitHeaders>,
    /// At most this many requests of one identity in flight at once (`concurrency`).
    pub concurrency: Option<u64>,
}

/// The parts of the rate-limit headers that depend only on the configuration.
#[derive(Debug, Clone)]
pub struct LimitHeaders {
    /// `"per_minute";q=600;w=60`
    pub policy: http::HeaderValue,
    /// `600`
    pub limit: http::HeaderValue,
}

/// `keys_redis`: the hash that holds further keys, and the per-replica cache of its answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysRedisSettings {
    pub hash: String,
    /// Digests cached, found and not found alike.
    pub cache: usize,
    /// How long a cached answer stands (the revocation delay).
    pub ttl: Duration,
}

/// The keys file a snapshot was built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFile {
    /// Resolved against the config file's folder.
    pub path: PathBuf,
    /// Of the file's bytes: a rewrite with the same bytes is no change.
    pub sha256: [u8; 32],
}

/// A caller's configured key, as a request carries it: built at lookup from the compact table
/// (a few small allocations), never stored per key.
#[derive(Debug)]
pub struct KeyEntry {
    /// The id's position in the key table (0..id_count()): indexes per-id tables (the metric
    /// handles).
    pub index: usize,
    pub id: Arc<str>,
    pub tier: Arc<Tier>,
    /// `id:<id>`: the identity the store sees, the same for every key of the id.
    pub store_identity: StoreIdentity,
    /// `id` as the `X-Tollgate-Key-Id` value.
    pub id_header: http::HeaderValue,
}

impl KeyEntry {
    /// The index of a key found outside the key table (`keys_redis`): no per-id handle.
    pub const NOT_IN_TABLE: usize = usize::MAX;

    pub fn new(index: usize, id: &str, tier: &Arc<Tier>) -> Self {
        KeyEntry {
            index,
            id: id.into(),
            tier: tier.clone(),
            store_identity: StoreIdentity::for_id(id),
            // Ids are validated labels, always header-safe.
            id_header: http::HeaderValue::from_str(id)
                .unwrap_or_else(|_| http::HeaderValue::from_static("invalid")),
        }
    }
}

impl From<KeyRef<'_>> for KeyEntry {
    fn from(k: KeyRef<'_>) -> Self {
        KeyEntry::new(k.index, k.id, k.tier)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    pub enabled: bool,
    pub path: Option<String>,
    pub sample: f64,
}

impl Snapshot {
    /// The index in `routes` of the longest configured prefix that matches `path` among the
    /// routes that take `method` (a route with `methods` skips the others).
    pub fn route_for(&self, path: &str, method: &http::Method) -> Option<usize> {
        self.routes.iter().position(|r| {
            path.starts_with(&r.prefix) && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
        })
    }

    /// The budgets of a request on route `route` with `method` by a caller of `tier`.
    pub fn plan(&self, route: usize, method: &http::Method, tier: &Tier) -> Option<&Arc<Plan>> {
        self.plans.get(route)?.plan(method, tier.index)
    }

    /// The key entry of configured id `id` (any of its keys): a scan, for the admin API only.
    pub fn key_by_id(&self, id: &str) -> Option<KeyEntry> {
        self.keys.by_id(id).map(KeyEntry::from)
    }
}
