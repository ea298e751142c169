//! Shared by the policy tests: a gateway config with one route per `by` kind, and a burst of
//! concurrent clients that counts what was admitted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Routes and policies: `/id/` (per-tier, by identity), `/login/` (POST, by ip), `/search/`
/// (global), `/tenant/` (by header), `/g/` (a tight global beside the caller's own tier) and
/// `/api/` (the tier alone). `redis` is the whole `redis:` section, or empty for memory.
pub fn policy_config(redis: &str, echo: &str, extra: &str) -> String {
    format!(
        r#"listen: ["{{LISTEN}}"]
admin_listen: "{{ADMIN}}"
{redis}
upstreams:
  echo:
    peers: ["{echo}"]
    read_timeout: 5s
routes:
  - {{ prefix: "/id/", upstream: echo, name: id }}
  - {{ prefix: "/login/", upstream: echo, name: login, methods: [POST] }}
  - {{ prefix: "/search/", upstream: echo, name: search }}
  - {{ prefix: "/tenant/", upstream: echo, name: tenant }}
  - {{ prefix: "/g/", upstream: echo, name: guarded }}
  - {{ prefix: "/api/", upstream: echo }}
identity:
  anonymous: {{ tier: anonymous }}
  trusted_proxies: ["127.0.0.1"]
{extra}
tiers:
  anonymous:
    limits: [{{ requests: 5, window: 60s }}]
  free:
    limits: [{{ requests: 60, window: 60s }}]
  small:
    limits: [{{ name: own, requests: 10, window: 60s }}]
  internal:
    limits: []
policies:
  - name: per-id
    match: {{ routes: [id] }}
    tiers:
      free: [{{ requests: 40, window: 60s }}]
  - name: login
    match: {{ routes: [login], methods: [POST] }}
    by: ip
    limits: [{{ name: per_min, requests: 30, window: 60s }}]
  - name: search
    match: {{ routes: [search] }}
    by: global
    limits: [{{ requests: 40, window: 60s }}]
  - name: tenant
    match: {{ routes: [tenant] }}
    by: "header:x-tenant"
    limits: [{{ requests: 20, window: 60s }}]
  - name: guard
    match: {{ routes: [guarded] }}
    by: global
    limits: [{{ requests: 3, window: 60s }}]
  - name: api-writes
    match: {{ routes: ["/api/"], methods: [DELETE] }}
    limits: [{{ requests: 2, window: 60s }}]
keys:
  - {{ id: alice, key: "free-demo-key", tier: free }}
  - {{ id: carol, key: "internal-demo-key", tier: internal }}
  - {{ id: sam, key: "small-key", tier: small }}
  - {{ id: sam-b, key: "small-key-b", tier: small }}
  - {{ id: sam-c, key: "small-key-c", tier: small }}
  - {{ id: sam-d, key: "small-key-d", tier: small }}
  - {{ id: dave, key: "internal-two", tier: internal }}
"#
    )
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

/// Keys of the `small` tier (own limit 10), for tests that need one in a given slot.
pub const SMALL_KEYS: [&str; 4] = ["small-key", "small-key-b", "small-key-c", "small-key-d"];

pub fn key(k: &'static str) -> impl Fn(usize) -> Vec<(&'static str, String)> + Send + Sync {
    move |_| vec![("x-api-key", k.to_string())]
}
