//! Shared by the policy tests: the [`Policy`] part of a [`ConfigBuilder`], a gateway config
//! with one route per `by` kind, and a burst of concurrent clients that counts what was
//! admitted.

use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::config::{limit, list, quoted, ConfigBuilder, Limit, Redis, Route, Upstream};

/// One entry of `policies`: `Policy::new("login").routes(&["login"]).by("ip").limits(..)`.
#[derive(Clone, Debug)]
pub struct Policy {
    name: String,
    routes: Vec<String>,
    methods: Vec<String>,
    by: Option<String>,
    limits: Option<Vec<Limit>>,
    tiers: Vec<(String, Vec<Limit>)>,
}

impl Policy {
    pub fn new(name: &str) -> Self {
        Policy {
            name: name.to_string(),
            routes: Vec::new(),
            methods: Vec::new(),
            by: None,
            limits: None,
            tiers: Vec::new(),
        }
    }

    /// `match.routes`: route names (or prefixes of unnamed routes).
    pub fn routes(mut self, routes: &[&str]) -> Self {
        self.routes = routes.iter().map(|r| r.to_string()).collect();
        self
    }

    /// `match.methods`.
    pub fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| m.to_string()).collect();
        self
    }

    /// `by`: `identity`, `ip`, `global` or `header:<name>`.
    pub fn by(mut self, by: &str) -> Self {
        self.by = Some(by.to_string());
        self
    }

    /// Fixed limits, for every caller the policy matches.
    pub fn limits(mut self, limits: &[Limit]) -> Self {
        self.limits = Some(limits.to_vec());
        self
    }

    /// Limits for one tier (a tier not given is not limited by this policy).
    pub fn tier(mut self, tier: &str, limits: &[Limit]) -> Self {
        self.tiers.push((tier.to_string(), limits.to_vec()));
        self
    }

    /// The entry as YAML lines under `policies:`.
    pub fn yaml(&self) -> String {
        let limits = |ls: &[Limit]| {
            let ls: Vec<String> = ls.iter().map(Limit::yaml).collect();
            format!("[{}]", ls.join(", "))
        };
        let mut y = format!("  - name: {}\n", self.name);
        let mut matched = Vec::new();
        if !self.routes.is_empty() {
            matched.push(format!("routes: {}", list(&self.routes)));
        }
        if !self.methods.is_empty() {
            matched.push(format!("methods: [{}]", self.methods.join(", ")));
        }
        if !matched.is_empty() {
            let _ = writeln!(y, "    match: {{ {} }}", matched.join(", "));
        }
        if let Some(by) = &self.by {
            let _ = writeln!(y, "    by: {}", quoted(by));
        }
        if let Some(ls) = &self.limits {
            let _ = writeln!(y, "    limits: {}", limits(ls));
        }
        if !self.tiers.is_empty() {
            y.push_str("    tiers:\n");
            for (t, ls) in &self.tiers {
                let _ = writeln!(y, "      {t}: {}", limits(ls));
            }
        }
        y
    }
}

/// Routes and policies: `/id/` (per-tier, by identity), `/login/` (POST, by ip), `/search/`
/// (global), `/tenant/` (by header), `/g/` (a tight global beside the caller's own tier) and
/// `/api/` (the tier alone, DELETE limited by a policy). The in-process store unless `redis`.
pub fn policy_config(redis: Option<Redis>, echo: &str) -> ConfigBuilder {
    let route = |prefix: &str, name: &str| Route::new(prefix, "echo").name(name);
    let c = ConfigBuilder::new()
        .upstream(Upstream::new("echo", &[echo]).read_timeout("5s"))
        .route(route("/id/", "id"))
        .route(route("/login/", "login").methods(&["POST"]))
        .route(route("/search/", "search"))
        .route(route("/tenant/", "tenant"))
        .route(route("/g/", "guarded"))
        .route(Route::new("/api/", "echo"))
        .anonymous_tier("anonymous")
        .trusted_proxies(&["127.0.0.1"])
        .tier("anonymous", &[limit(5, "60s")])
        .tier("free", &[limit(60, "60s")])
        .tier("small", &[limit(10, "60s").named("own")])
        .tier("internal", &[])
        .policy(
            Policy::new("per-id")
                .routes(&["id"])
                .tier("free", &[limit(40, "60s")]),
        )
        .policy(
            Policy::new("login")
                .routes(&["login"])
                .methods(&["POST"])
                .by("ip")
                .limits(&[limit(30, "60s").named("per_min")]),
        )
        .policy(
            Policy::new("search")
                .routes(&["search"])
                .by("global")
                .limits(&[limit(40, "60s")]),
        )
        .policy(
            Policy::new("tenant")
                .routes(&["tenant"])
                .by("header:x-tenant")
                .limits(&[limit(20, "60s")]),
        )
        .policy(
            Policy::new("guard")
                .routes(&["guarded"])
                .by("global")
                .limits(&[limit(3, "60s")]),
        )
        .policy(
            Policy::new("api-writes")
                .routes(&["/api/"])
                .methods(&["DELETE"])
                .limits(&[limit(2, "60s")]),
        )
        .key("alice", "free-demo-key", "free")
        .key("carol", "internal-demo-key", "internal")
        .key("dave", "internal-two", "internal");
    let c = SMALL_KEYS
        .iter()
        .fold(c, |c, (id, key)| c.key(id, key, "small"));
    match redis {
        Some(r) => c.redis(r),
        None => c,
    }
}

/// The outcome of one burst: how many of each status.
#[derive(Debug, Default)]
pub struct Burst {
    pub ok: usize,
    pub limited: usize,
    pub other: usize,
}

/// `total` requests from 64 concurrent clients; request `i` gets `headers(i)`.
pub fn burst(
    url: &str,
    method: reqwest::Method,
    total: usize,
    headers: impl Fn(usize) -> Vec<(&'static str, String)> + Send + Sync + 'static,
) -> Burst {
    const CLIENTS: usize = 64;
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let headers = Arc::new(headers);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, counts, headers) = (next.clone(), counts.clone(), headers.clone());
            let (url, method) = (url.to_string(), method.clone());
            std::thread::spawn(move || {
                let client = super::client();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let mut rb = client.request(method.clone(), &url);
                    for (k, v) in headers(i) {
                        rb = rb.header(k, v);
                    }
                    let slot = match rb.send().map(|r| r.status().as_u16()) {
                        Ok(200) => 0,
                        Ok(429) => 1,
                        _ => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    Burst {
        ok: counts[0].load(Ordering::Relaxed),
        limited: counts[1].load(Ordering::Relaxed),
        other: counts[2].load(Ordering::Relaxed),
    }
}

/// Ids and keys of the `small` tier (own limit 10), for tests that need one in a given slot.
pub const SMALL_KEYS: [(&str, &str); 4] = [
    ("sam", "small-key"),
    ("sam-b", "small-key-b"),
    ("sam-c", "small-key-c"),
    ("sam-d", "small-key-d"),
];

pub fn key(k: &'static str) -> impl Fn(usize) -> Vec<(&'static str, String)> + Send + Sync {
    move |_| vec![("x-api-key", k.to_string())]
}
