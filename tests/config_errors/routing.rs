//! Rows for the sections that say where traffic goes: `listen` and `admin_listen`, `redis`,
//! `upstreams` and `routes`.

use super::{row, Row};

pub const LISTEN: &[Row] = &[
    row(
        concat!("listen: []\n", base!()),
        "1:1: field `listen`",
        "needs at least one address",
    ),
    row(
        concat!("listen: [\"127.0.0.1\"]\n", base!()),
        "1:10: field `listen[0]`",
        "'127.0.0.1' is not an IP:port address",
    ),
    row(
        concat!("admin_listen: \"localhost:9091\"\n", base!()),
        "1:1: field `admin_listen`",
        "'localhost:9091' is not an IP:port address",
    ),
    row(
        concat!(
            "listen: [\"127.0.0.1:8080\"]\nadmin_listen: \"127.0.0.1:8080\"\n",
            base!()
        ),
        "2:1: field `admin_listen`",
        "must differ from every `listen` address",
    ),
    row(
        concat!(
            "listen: [\"127.0.0.1:8080\", \"127.0.0.1:8080\"]\n",
            base!()
        ),
        "1:28: field `listen[1]`",
        "127.0.0.1:8080 is listed twice",
    ),
    row(
        concat!("listen: [{ addr: \"localhost:8443\", http2: true }]\n", base!()),
        "1:12: field `listen[0].addr`",
        "'localhost:8443' is not an IP:port address",
    ),
    row(
        concat!(
            "listen: [{ addr: \"127.0.0.1:8443\", tls: { certs: [] } }]\n",
            base!()
        ),
        "1:43: field `listen[0].tls.certs`",
        "needs at least one { cert, key } pair",
    ),
    row(
        concat!(
            "listen: [{ addr: \"127.0.0.1:8443\", tls: { certs: [{ cert: /nonexistent/t.pem, key: /nonexistent/t.key }] } }]\n",
            base!()
        ),
        "1:53: field `listen[0].tls.certs[0].cert`",
        "/nonexistent/t.pem: cannot read: No such file or directory (os error 2)",
    ),
    row(
        concat!(
            "listen: [{ addr: \"127.0.0.1:8443\", tls: { certs: [{ cert: Cargo.toml, key: Cargo.toml }] } }]\n",
            base!()
        ),
        "1:53: field `listen[0].tls.certs[0].cert`",
        "Cargo.toml: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
    ),
    row(
        concat!(
            "listen: [{ addr: \"127.0.0.1:8443\", tls: { certs: [], min_version: \"1.1\" } }]\n",
            base!()
        ),
        "1:54: field `listen[0].tls.min_version`",
        "must be \"1.2\" or \"1.3\"",
    ),
    row(
        concat!("listen: [{ addr: \"127.0.0.1:8443\", tsl: {} }]\n", base!()),
        "1:36: field `listen[0].tsl`",
        "unknown field `tsl`, expected one of `addr`, `tls`, `http2`",
    ),
    row(
        concat!("connection_rate: { per_ip: 0, window: 1s }\n", base!()),
        "1:20: field `connection_rate.per_ip`",
        "must be between 1 and 65535",
    ),
    row(
        concat!("connection_rate: { per_ip: 10, window: 50ms }\n", base!()),
        "1:32: field `connection_rate.window`",
        "must be between 100ms and 1h",
    ),
    row(
        concat!("connection_rate: { per_ip: 10, window: 2h }\n", base!()),
        "1:32: field `connection_rate.window`",
        "must be between 100ms and 1h",
    ),
];

pub const REDIS: &[Row] = &[
    row(
        concat!("redis: { cluster: [] }\n", base!()),
        "1:10: field `redis.cluster`",
        "needs at least one node URL",
    ),
    row(
        concat!(
            "redis: { url: \"redis://a:1\", cluster: [\"redis://b:1\"] }\n",
            base!()
        ),
        "1:30: field `redis.cluster`",
        "set either `url` or `cluster`, not both",
    ),
    row(
        concat!("redis: { timeout_ms: 5 }\n", base!()),
        "1:1: field `redis`",
        "needs `url` or `cluster`",
    ),
    row(
        concat!("redis: { url: \"http://u:pw@127.0.0.1:6379\" }\n", base!()),
        "1:10: field `redis.url`",
        "must start with redis:// or rediss://",
    ),
    row(
        concat!(
            "redis: { url: \"redis://u:pw@127.0.0.1:notaport\" }\n",
            base!()
        ),
        "1:10: field `redis.url`",
        "is not a valid Redis URL",
    ),
    row(
        concat!(
            "redis: { cluster: [\"redis://127.0.0.1:7000\", \"tcp://127.0.0.1:7001\"] }\n",
            base!()
        ),
        "1:46: field `redis.cluster[1]`",
        "must start with redis:// or rediss://",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", timeout_ms: 0 }\n",
            base!()
        ),
        "1:36: field `redis.timeout_ms`",
        "must be between 1 and 60000",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", key_prefix: \"{tg}\" }\n",
            base!()
        ),
        "1:36: field `redis.key_prefix`",
        "must be non-empty without braces or spaces (braces would break the cluster hash tag)",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_failures: 0 }\n",
            base!()
        ),
        "1:36: field `redis.breaker_failures`",
        "must be at least 1",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_window: 5ms }\n",
            base!()
        ),
        "1:36: field `redis.breaker_window`",
        "must be between 10ms and 60s (got 5ms)",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_failure_spread: 2m }\n",
            base!()
        ),
        "1:36: field `redis.breaker_failure_spread`",
        "must be between 0ns and 60s (got 120s)",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_open: 0ms }\n",
            base!()
        ),
        "1:36: field `redis.breaker_open`",
        "must be between 1ms and 600s (got 0ns)",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_min_calls: 0 }\n",
            base!()
        ),
        "1:36: field `redis.breaker_min_calls`",
        "must be at least 1",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_failure_ratio: 1.5 }\n",
            base!()
        ),
        "1:36: field `redis.breaker_failure_ratio`",
        "must be above 0 and at most 1 (0.5 = half the calls)",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_probes: 0 }\n",
            base!()
        ),
        "1:36: field `redis.breaker_probes`",
        "must be between 1 and 1000",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_window: 100ms, breaker_failure_spread: 100ms }\n",
            base!()
        ),
        "1:59: field `redis.breaker_failure_spread`",
        "must be shorter than redis.breaker_window (100ms), or the breaker can never open",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1\", breaker_half_open_after: 300ms }\n",
            base!()
        ),
        "1:36: field `redis.breaker_half_open_after`",
        "must be between 1ms and 200ms (got 300ms) and at most redis.breaker_open",
    ),
];

pub const UPSTREAMS: &[Row] = &[
    row(
        concat!("upstreams: {}\n", routes!(), tiers!()),
        "1:1: field `upstreams`",
        "needs at least one upstream",
    ),
    row(
        concat!(
            "upstreams: { \"u v\": { peers: [\"127.0.0.1:9000\"] } }\n",
            routes!(),
            tiers!()
        ),
        "1:14: field `upstreams.u v`",
        "upstream names may use letters, digits, '_', '-' and '.'",
    ),
    row(
        concat!("upstreams: { u: { peers: [] } }\n", routes!(), tiers!()),
        "1:19: field `upstreams.u.peers`",
        "needs at least one peer",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1\"] } }\n",
            routes!(),
            tiers!()
        ),
        "1:27: field `upstreams.u.peers[0]`",
        "'127.0.0.1' is not a host:port address",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:443\"], tls: true } }\n",
            routes!(),
            tiers!()
        ),
        "1:14: field `upstreams.u.sni`",
        "tls: true needs an `sni` (or `host`) name when peers are IP addresses",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], host: \"a\\nb\" } }\n",
            routes!(),
            tiers!()
        ),
        "1:46: field `upstreams.u.host`",
        "is not a valid Host header value",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], health_check: { path: healthz } } }\n",
            routes!(),
            tiers!()
        ),
        "1:62: field `upstreams.u.health_check.path`",
        "must start with '/'",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], health_check: { interval: 10ms } } }\n",
            routes!(),
            tiers!()
        ),
        "1:62: field `upstreams.u.health_check.interval`",
        "must be at least 50ms",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], connect_timeout: 0s } }\n",
            routes!(),
            tiers!()
        ),
        "1:46: field `upstreams.u.connect_timeout`",
        "must be positive",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], read_timeout: 0ms } }\n",
            routes!(),
            tiers!()
        ),
        "1:46: field `upstreams.u.read_timeout`",
        "must be positive",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], write_timeout: 0s } }\n",
            routes!(),
            tiers!()
        ),
        "1:46: field `upstreams.u.write_timeout`",
        "must be positive",
    ),
    row(
        concat!(
            "upstreams: { u: { peers: [\"127.0.0.1:9000\"], retries: 17 } }\n",
            routes!(),
            tiers!()
        ),
        "1:46: field `upstreams.u.retries`",
        "must be at most 16",
    ),
];

pub const ROUTES: &[Row] = &[
    row(
        concat!(upstreams!(), "routes: []\n", tiers!()),
        "2:1: field `routes`",
        "needs at least one route",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: api, upstream: u }]\n",
            tiers!()
        ),
        "2:12: field `routes[0].prefix`",
        "must start with '/'",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u }, { prefix: /, upstream: u }]\n",
            tiers!()
        ),
        "2:40: field `routes[1].prefix`",
        "duplicate prefix '/' for the same methods (give each route its own `methods`)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: backend }]\n",
            tiers!()
        ),
        "2:23: field `routes[0].upstream`",
        "unknown upstream 'backend' (defined: u)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u, cost: 0 }]\n",
            tiers!()
        ),
        "2:36: field `routes[0].cost`",
        "must be at least 1",
    ),
];
