//! A typed builder for gateway configs, so that tests say what differs instead of pasting YAML
//! and patching it with string replaces:
//!
//! ```ignore
//! ConfigBuilder::new()
//!     .redis(Redis::url(&redis.url()))
//!     .upstream(Upstream::new("echo", &[&echo.addr()]))
//!     .route(Route::new("/api/", "echo"))
//!     .tier("free", &[limit(60, "60s")])
//!     .key("alice", "free-demo-key", "free")
//!     .to_yaml()
//! ```
//!
//! `listen` and `admin_listen` default to the `{LISTEN}`/`{ADMIN}` placeholders that
//! [`super::Tollgate`] fills in. Values are written as given, so a test can also build a
//! deliberately invalid file (`limit(7, "sixty")`).

use std::fmt::Write;

use super::policies::Policy;

/// One limit of a tier.
#[derive(Clone, Debug)]
pub struct Limit {
    name: Option<String>,
    requests: u64,
    window: String,
    algorithm: Option<String>,
}

/// `{ requests: N, window: W }`.
pub fn limit(requests: u64, window: &str) -> Limit {
    Limit {
        name: None,
        requests,
        window: window.to_string(),
        algorithm: None,
    }
}

impl Limit {
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn algorithm(mut self, algorithm: &str) -> Self {
        self.algorithm = Some(algorithm.to_string());
        self
    }

    pub fn yaml(&self) -> String {
        let mut s = String::from("{ ");
        if let Some(n) = &self.name {
            let _ = write!(s, "name: {n}, ");
        }
        let _ = write!(s, "requests: {}, window: {}", self.requests, self.window);
        if let Some(a) = &self.algorithm {
            let _ = write!(s, ", algorithm: {a}");
        }
        s.push_str(" }");
        s
    }
}

/// The `redis` section.
#[derive(Clone, Debug)]
pub struct Redis {
    fields: Vec<(&'static str, String)>,
}

impl Redis {
    /// A single node (`timeout_ms: 200`, as every test uses unless it says otherwise).
    pub fn url(url: &str) -> Self {
        Redis {
            fields: vec![("url", quoted(url)), ("timeout_ms", "200".into())],
        }
    }

    /// A Redis Cluster given by its node URLs.
    pub fn cluster(urls: &[String]) -> Self {
        Redis {
            fields: vec![("cluster", list(urls)), ("timeout_ms", "200".into())],
        }
    }

    fn set(mut self, field: &'static str, value: String) -> Self {
        match self.fields.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((field, value)),
        }
        self
    }

    pub fn timeout_ms(self, ms: u64) -> Self {
        self.set("timeout_ms", ms.to_string())
    }

    pub fn on_error(self, policy: &str) -> Self {
        self.set("on_error", policy.to_string())
    }

    pub fn breaker(self, failures: u32, open: &str) -> Self {
        self.set("breaker_failures", failures.to_string())
            .set("breaker_open", quoted(open))
    }

    /// `concurrency_lease`: how long a slot outlives a replica that died holding it.
    pub fn concurrency_lease(self, lease: &str) -> Self {
        self.set("concurrency_lease", lease.to_string())
    }

    pub fn over_limit_cache(self, on: bool) -> Self {
        self.set("over_limit_cache", on.to_string())
    }
}

/// One entry of `upstreams`.
#[derive(Clone, Debug)]
pub struct Upstream {
    name: String,
    peers: Vec<String>,
    fields: Vec<(&'static str, String)>,
}

impl Upstream {
    pub fn new(name: &str, peers: &[&str]) -> Self {
        Upstream {
            name: name.to_string(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            fields: Vec::new(),
        }
    }

    fn with(mut self, field: &'static str, value: String) -> Self {
        self.fields.retain(|(f, _)| *f != field);
        self.fields.push((field, value));
        self
    }

    pub fn health_interval(self, interval: &str) -> Self {
        self.with("health_check", format!("{{ interval: {interval} }}"))
    }

    pub fn read_timeout(self, timeout: &str) -> Self {
        self.with("read_timeout", timeout.to_string())
    }

    pub fn host(self, host: &str) -> Self {
        self.with("host", quoted(host))
    }

    /// `http2: true`: HTTP/2 to the peers (h2c without `tls`), as gRPC needs.
    pub fn http2(self) -> Self {
        self.with("http2", "true".into())
    }
}

/// One `listen` entry: an address, optionally with TLS certificates, `min_version` and `http2`.
#[derive(Clone, Debug)]
pub struct Listener {
    addr: String,
    certs: Vec<(String, String)>,
    min_version: Option<String>,
    http2: Option<bool>,
}

impl Listener {
    /// A plain listener (`{LISTEN}` is the one [`super::Tollgate`] waits for).
    pub fn new(addr: &str) -> Self {
        Listener {
            addr: addr.to_string(),
            certs: Vec::new(),
            min_version: None,
            http2: None,
        }
    }

    /// Adds a `{ cert, key }` pair to `tls.certs` (the first one added is the default).
    pub fn cert(mut self, cert: &std::path::Path, key: &std::path::Path) -> Self {
        self.certs
            .push((cert.display().to_string(), key.display().to_string()));
        self
    }

    /// `tls.min_version`, written as given (`"\"1.3\""`, `1.2`, or something invalid).
    pub fn min_version(mut self, version: &str) -> Self {
        self.min_version = Some(version.to_string());
        self
    }

    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = Some(on);
        self
    }

    fn is_plain(&self) -> bool {
        self.certs.is_empty() && self.min_version.is_none() && self.http2.is_none()
    }

    fn yaml(&self) -> String {
        let mut s = format!("  - addr: {}\n", quoted(&self.addr));
        if !self.certs.is_empty() || self.min_version.is_some() {
            s.push_str("    tls:\n      certs:\n");
            for (cert, key) in &self.certs {
                let _ = writeln!(
                    s,
                    "        - {{ cert: {}, key: {} }}",
                    quoted(cert),
                    quoted(key)
                );
            }
            if let Some(v) = &self.min_version {
                let _ = writeln!(s, "      min_version: {v}");
            }
        }
        if let Some(on) = self.http2 {
            let _ = writeln!(s, "    http2: {on}");
        }
        s
    }
}

/// One entry of `routes`.
#[derive(Clone, Debug)]
pub struct Route {
    prefix: String,
    upstream: String,
    fields: Vec<(&'static str, String)>,
}

impl Route {
    pub fn new(prefix: &str, upstream: &str) -> Self {
        Route {
            prefix: prefix.to_string(),
            upstream: upstream.to_string(),
            fields: Vec::new(),
        }
    }

    pub fn strip_prefix(mut self) -> Self {
        self.fields.push(("strip_prefix", "true".into()));
        self
    }

    pub fn preserve_host(mut self) -> Self {
        self.fields.push(("preserve_host", "true".into()));
        self
    }

    pub fn cost(mut self, cost: u64) -> Self {
        self.fields.push(("cost", cost.to_string()));
        self
    }

    /// The route's `name` (policies match it; the `route` label shows it).
    pub fn name(mut self, name: &str) -> Self {
        self.fields.push(("name", name.to_string()));
        self
    }

    /// `methods: [...]`: the route matches only these.
    pub fn methods(mut self, methods: &[&str]) -> Self {
        self.fields
            .push(("methods", format!("[{}]", methods.join(", "))));
        self
    }
}

/// One entry of `keys`: `{ id, key | key_sha256, tier, expires?, disabled? }`.
#[derive(Clone, Debug)]
pub struct Key {
    id: String,
    key: Option<String>,
    key_sha256: Option<String>,
    tier: String,
    expires: Option<String>,
    disabled: bool,
}

impl Key {
    pub fn new(id: &str, key: &str, tier: &str) -> Self {
        Key {
            id: id.to_string(),
            key: Some(key.to_string()),
            key_sha256: None,
            tier: tier.to_string(),
            expires: None,
            disabled: false,
        }
    }

    /// `expires: <RFC 3339>`.
    pub fn expires(mut self, at: &str) -> Self {
        self.expires = Some(at.to_string());
        self
    }

    /// `disabled: true`.
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// Adds a `key_sha256` (with `key` kept, the file is invalid: a test of that error).
    pub fn sha256(mut self, hex: &str) -> Self {
        self.key_sha256 = Some(hex.to_string());
        self
    }

    fn yaml(&self) -> String {
        let mut s = format!("{{ id: {}", self.id);
        if let Some(k) = &self.key {
            let _ = write!(s, ", key: {}", quoted(k));
        }
        if let Some(h) = &self.key_sha256 {
            let _ = write!(s, ", key_sha256: {}", quoted(h));
        }
        let _ = write!(s, ", tier: {}", self.tier);
        if let Some(at) = &self.expires {
            let _ = write!(s, ", expires: {}", quoted(at));
        }
        if self.disabled {
            s.push_str(", disabled: true");
        }
        s.push_str(" }");
        s
    }
}

struct TierSpec {
    name: String,
    limits: Vec<Limit>,
    shadow: bool,
    concurrency: Option<u64>,
}

/// A whole gateway config. Setting an upstream, tier or key that exists replaces it in place
/// (its position, and so its line and index in errors, stays).
pub struct ConfigBuilder {
    listen: Vec<Listener>,
    admin: String,
    redis: Option<Redis>,
    upstreams: Vec<Upstream>,
    routes: Vec<Route>,
    identity: Vec<(&'static str, String)>,
    tiers: Vec<TierSpec>,
    keys: Vec<Key>,
    policies: Vec<Policy>,
    memory_max_identities: Option<u64>,
    access_log: Option<String>,
    admin_token_sha256: Option<String>,
    keys_file: Option<String>,
    keys_redis: Option<String>,
    connection_rate: Option<(u32, Option<String>)>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    pub fn new() -> Self {
        ConfigBuilder {
            listen: vec![Listener::new("{LISTEN}")],
            admin: "{ADMIN}".into(),
            redis: None,
            upstreams: Vec::new(),
            routes: Vec::new(),
            identity: vec![("header", quoted("x-api-key"))],
            tiers: Vec::new(),
            keys: Vec::new(),
            policies: Vec::new(),
            memory_max_identities: None,
            access_log: None,
            admin_token_sha256: None,
            keys_file: None,
            keys_redis: None,
            connection_rate: None,
        }
    }

    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = vec![Listener::new(addr)];
        self
    }

    /// Replaces `listen` with these entries (TLS, h2c, several addresses).
    pub fn listeners(mut self, listeners: &[Listener]) -> Self {
        self.listen = listeners.to_vec();
        self
    }

    pub fn admin_listen(mut self, addr: &str) -> Self {
        self.admin = addr.to_string();
        self
    }

    pub fn redis(mut self, redis: Redis) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Edits the `redis` section in place (it must be set).
    pub fn with_redis(mut self, edit: impl FnOnce(Redis) -> Redis) -> Self {
        self.redis = Some(edit(self.redis.take().expect("a redis section to edit")));
        self
    }

    pub fn upstream(mut self, upstream: Upstream) -> Self {
        match self.upstreams.iter_mut().find(|u| u.name == upstream.name) {
            Some(slot) => *slot = upstream,
            None => self.upstreams.push(upstream),
        }
        self
    }

    /// Appends a route (routes match by longest prefix, so order does not matter to tollgate).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    fn identity_field(mut self, field: &'static str, value: String) -> Self {
        self.identity.retain(|(f, _)| *f != field);
        self.identity.push((field, value));
        self
    }

    /// `header`: the request header that carries the API key (`x-api-key` unless set).
    pub fn key_header(self, name: &str) -> Self {
        self.identity_field("header", quoted(name))
    }

    /// `anonymous: { tier: <tier> }`.
    pub fn anonymous_tier(self, tier: &str) -> Self {
        self.identity_field("anonymous", format!("{{ tier: {tier} }}"))
    }

    /// `anonymous: reject`.
    pub fn anonymous_reject(self) -> Self {
        self.identity_field("anonymous", "reject".into())
    }

    /// `unknown_key: anonymous`.
    pub fn unknown_key_anonymous(self) -> Self {
        self.identity_field("unknown_key", "anonymous".into())
    }

    pub fn trusted_proxies(self, cidrs: &[&str]) -> Self {
        let cidrs: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
        self.identity_field("trusted_proxies", list(&cidrs))
    }

    /// `identity.ipv6_prefix`: how many leading bits of an IPv6 client address make one bucket.
    pub fn ipv6_prefix(self, bits: u8) -> Self {
        self.identity_field("ipv6_prefix", bits.to_string())
    }

    /// Appends a policy (written after the tiers).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// `memory_max_identities`: the in-process store's capacity.
    pub fn memory_max_identities(mut self, n: u64) -> Self {
        self.memory_max_identities = Some(n);
        self
    }

    pub fn tier(self, name: &str, limits: &[Limit]) -> Self {
        self.tier_spec(name, limits, false)
    }

    /// A tier in shadow mode: decides and reports, never blocks.
    pub fn shadow_tier(self, name: &str, limits: &[Limit]) -> Self {
        self.tier_spec(name, limits, true)
    }

    fn tier_spec(mut self, name: &str, limits: &[Limit], shadow: bool) -> Self {
        let spec = TierSpec {
            name: name.to_string(),
            limits: limits.to_vec(),
            shadow,
            concurrency: None,
        };
        match self.tiers.iter_mut().find(|t| t.name == name) {
            Some(slot) => *slot = spec,
            None => self.tiers.push(spec),
        }
        self
    }

    /// `concurrency: n` on an existing tier: at most `n` requests of one identity in flight.
    pub fn concurrency(mut self, tier: &str, n: u64) -> Self {
        let t = self.tiers.iter_mut().find(|t| t.name == tier);
        t.expect("a tier to limit").concurrency = Some(n);
        self
    }

    /// `{ id, key, tier }`; a key of an existing id replaces it in place.
    pub fn key(self, id: &str, key: &str, tier: &str) -> Self {
        self.key_entry(Key::new(id, key, tier))
    }

    pub fn key_entry(mut self, key: Key) -> Self {
        match self.keys.iter_mut().find(|k| k.id == key.id) {
            Some(slot) => *slot = key,
            None => self.keys.push(key),
        }
        self
    }

    /// `access_log: { path: <path> }`.
    pub fn access_log_path(mut self, path: &str) -> Self {
        self.access_log = Some(path.to_string());
        self
    }

    /// Appends a key even when its id exists (several keys of one id: a rotation).
    pub fn add_key(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// `keys_file: <path>` (relative to the config file's folder).
    pub fn keys_file(mut self, path: &str) -> Self {
        self.keys_file = Some(path.to_string());
        self
    }

    /// `keys_redis: { hash, ttl }` (the cache size left at its default).
    pub fn keys_redis(mut self, hash: &str, ttl: &str) -> Self {
        self.keys_redis = Some(format!("{{ hash: {}, ttl: {ttl} }}", quoted(hash)));
        self
    }

    /// `admin_token_sha256: <hex>`: the digest of the admin API's bearer token.
    pub fn admin_token_sha256(mut self, hex: &str) -> Self {
        self.admin_token_sha256 = Some(hex.to_string());
        self
    }

    /// `connection_rate: { per_ip, window }` (`window` left out when None: its default).
    pub fn connection_rate(mut self, per_ip: u32, window: Option<&str>) -> Self {
        self.connection_rate = Some((per_ip, window.map(str::to_string)));
        self
    }

    pub fn to_yaml(&self) -> String {
        let mut y = if self.listen.iter().all(Listener::is_plain) {
            let addrs: Vec<String> = self.listen.iter().map(|l| l.addr.clone()).collect();
            format!("listen: {}\n", list(&addrs))
        } else {
            let entries: String = self.listen.iter().map(Listener::yaml).collect();
            format!("listen:\n{entries}")
        };
        let _ = writeln!(y, "admin_listen: {}", quoted(&self.admin));
        if let Some(h) = &self.admin_token_sha256 {
            let _ = writeln!(y, "admin_token_sha256: {}", quoted(h));
        }
        if let Some(f) = &self.keys_file {
            let _ = writeln!(y, "keys_file: {}", quoted(f));
        }
        if let Some(k) = &self.keys_redis {
            let _ = writeln!(y, "keys_redis: {k}");
        }
        if let Some(r) = &self.redis {
            y.push_str("redis:\n");
            for (f, v) in &r.fields {
                let _ = writeln!(y, "  {f}: {v}");
            }
        }
        self.write_upstreams_and_routes(&mut y);
        y.push_str("identity:\n");
        for (f, v) in &self.identity {
            let _ = writeln!(y, "  {f}: {v}");
        }
        self.write_tiers_and_keys(&mut y);
        if let Some(p) = &self.access_log {
            let _ = writeln!(y, "access_log: {{ path: {} }}", quoted(p));
        }
        if let Some(n) = self.memory_max_identities {
            let _ = writeln!(y, "memory_max_identities: {n}");
        }
        match &self.connection_rate {
            Some((n, Some(w))) => {
                let _ = writeln!(y, "connection_rate: {{ per_ip: {n}, window: {w} }}");
            }
            Some((n, None)) => {
                let _ = writeln!(y, "connection_rate: {{ per_ip: {n} }}");
            }
            None => {}
        }
        y
    }

    fn write_upstreams_and_routes(&self, y: &mut String) {
        y.push_str("upstreams:\n");
        for u in &self.upstreams {
            let _ = writeln!(y, "  {}:\n    peers: {}", u.name, list(&u.peers));
            for (f, v) in &u.fields {
                let _ = writeln!(y, "    {f}: {v}");
            }
        }
        y.push_str("routes:\n");
        for r in &self.routes {
            let _ = writeln!(
                y,
                "  - prefix: {}\n    upstream: {}",
                quoted(&r.prefix),
                r.upstream
            );
            for (f, v) in &r.fields {
                let _ = writeln!(y, "    {f}: {v}");
            }
        }
    }

    fn write_tiers_and_keys(&self, y: &mut String) {
        y.push_str("tiers:\n");
        for t in &self.tiers {
            let _ = writeln!(y, "  {}:", t.name);
            if t.shadow {
                y.push_str("    shadow: true\n");
            }
            if let Some(n) = t.concurrency {
                let _ = writeln!(y, "    concurrency: {n}");
            }
            if t.limits.is_empty() {
                y.push_str("    limits: []\n");
            } else {
                y.push_str("    limits:\n");
                for l in &t.limits {
                    let _ = writeln!(y, "      - {}", l.yaml());
                }
            }
        }
        if !self.policies.is_empty() {
            y.push_str("policies:\n");
            for p in &self.policies {
                y.push_str(&p.yaml());
            }
        }
        if !self.keys.is_empty() {
            y.push_str("keys:\n");
            for k in &self.keys {
                let _ = writeln!(y, "  - {}", k.yaml());
            }
        }
    }
}

/// The gateway most tests start from: one `echo` upstream (health checked every 200 ms, 2 s
/// read timeout), routes `/proxy/` (prefix stripped) and `/api/`, anonymous callers in tier
/// `anonymous` (5 a minute), tiers `free` (60 a minute) and `internal` (unlimited), keys
/// `alice` (free-demo-key, free) and `carol` (internal-demo-key, internal), and Redis when
/// given.
pub fn standard(redis: Option<&str>, echo: &str) -> ConfigBuilder {
    let c = ConfigBuilder::new()
        .upstream(
            Upstream::new("echo", &[echo])
                .health_interval("200ms")
                .read_timeout("2s"),
        )
        .route(Route::new("/proxy/", "echo").strip_prefix())
        .route(Route::new("/api/", "echo"))
        .anonymous_tier("anonymous")
        .tier("anonymous", &[limit(5, "60s")])
        .tier("free", &[limit(60, "60s")])
        .tier("internal", &[])
        .key("alice", "free-demo-key", "free")
        .key("carol", "internal-demo-key", "internal");
    match redis {
        Some(url) => c.redis(Redis::url(url)),
        None => c,
    }
}

pub(super) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

pub(super) fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", quoted.join(", "))
}
