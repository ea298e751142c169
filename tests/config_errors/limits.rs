//! Rows for the sections that say who gets how much (`tiers` and their durations, `identity`,
//! `keys`, `access_log`), for the whole file, and for what serde finds while reading it.

use super::{row, Row};

pub const TIERS: &[Row] = &[
    row(concat!(upstreams!(), routes!(), "tiers: {}\n"), "3:1: field `tiers`", "needs at least one tier"),
    row(
        concat!(upstreams!(), routes!(), "tiers: { \"t t\": { limits: [] } }\n"),
        "3:10: field `tiers.t t`",
        "tier names may use letters, digits, '_', '-' and '.'",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 0, window: 1s }] } }\n"),
        "3:26: field `tiers.t.limits[0].requests`",
        "must be at least 1 (use `limits: []` for an unlimited tier)",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 1000000001, window: 1s, algorithm: token_bucket }] } }\n"),
        "3:26: field `tiers.t.limits[0].requests`",
        "must be at most 1000000000",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 1000001, window: 1s }] } }\n"),
        "3:26: field `tiers.t.limits[0].requests`",
        "sliding_log keeps the last `requests` admissions (8 bytes each, about 8.4 MB per identity at 1000000); at most 1000000, use sliding_window or token_bucket above",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 1, window: 0s }] } }\n"),
        "3:39: field `tiers.t.limits[0].window`",
        "must be positive",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 1, window: 367d }] } }\n"),
        "3:39: field `tiers.t.limits[0].window`",
        "must be at most 366d",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 1, window: 1s, algorithm: leaky }] } }\n"),
        "3:51: field `tiers.t.limits[0].algorithm`",
        "unknown algorithm 'leaky' (expected sliding_log, sliding_window, fixed_window or token_bucket)",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ name: \"a b\", requests: 1, window: 1s }] } }\n"),
        "3:26: field `tiers.t.limits[0].name`",
        "limit names may use letters, digits, '_', '-' and '.'",
    ),
    row(
        concat!(upstreams!(), routes!(), "tiers: { t: { limits: [{ requests: 1, window: 1s }, { requests: 2, window: 1s }] } }\n"),
        "3:53: field `tiers.t.limits[1].name`",
        "duplicate limit name 'per_second' in this tier (name the limits)",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers:\n  t:\n    limits:\n",
            "      - { name: l0, requests: 1, window: 1s }\n      - { name: l1, requests: 1, window: 1s }\n",
            "      - { name: l2, requests: 1, window: 1s }\n      - { name: l3, requests: 1, window: 1s }\n",
            "      - { name: l4, requests: 1, window: 1s }\n      - { name: l5, requests: 1, window: 1s }\n",
            "      - { name: l6, requests: 1, window: 1s }\n      - { name: l7, requests: 1, window: 1s }\n",
            "      - { name: l8, requests: 1, window: 1s }\n      - { name: l9, requests: 1, window: 1s }\n",
            "      - { name: la, requests: 1, window: 1s }\n      - { name: lb, requests: 1, window: 1s }\n",
            "      - { name: lc, requests: 1, window: 1s }\n      - { name: ld, requests: 1, window: 1s }\n",
            "      - { name: le, requests: 1, window: 1s }\n      - { name: lf, requests: 1, window: 1s }\n",
            "      - { name: lg, requests: 1, window: 1s }\n",
        ),
        "5:5: field `tiers.t.limits`",
        "at most 16 limits per tier",
    ),
];

/// Durations are parsed while the file is read, so these come back through serde with the
/// value's own position.
pub const DURATIONS: &[Row] = &[
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [{ requests: 1, window: 60 }] } }\n"
        ),
        "3:39: field `tiers.t.limits[0].window`",
        "'60' has no unit (use ms, s, m, h or d, e.g. \"60s\")",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [{ requests: 1, window: s }] } }\n"
        ),
        "3:39: field `tiers.t.limits[0].window`",
        "'s' is not a duration (expected e.g. \"60s\")",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [{ requests: 1, window: 99999999999999999999s }] } }\n"
        ),
        "3:39: field `tiers.t.limits[0].window`",
        "'99999999999999999999s' is not a duration (number too large)",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [{ requests: 1, window: 5w }] } }\n"
        ),
        "3:39: field `tiers.t.limits[0].window`",
        "'5w' has an unknown unit 'w' (use ms, s, m, h or d)",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [{ requests: 1, window: 18446744073709551615d }] } }\n"
        ),
        "3:39: field `tiers.t.limits[0].window`",
        "'18446744073709551615d' is too long",
    ),
];

pub const IDENTITY: &[Row] = &[
    row(
        concat!(base!(), "identity: { header: \"x api key\" }\n"),
        "4:13: field `identity.header`",
        "'x api key' is not a header name",
    ),
    row(
        concat!(base!(), "identity: { anonymous: allow }\n"),
        "4:13: field `identity.anonymous`",
        "'allow' is not valid (use `reject` or `{ tier: <name> }`)",
    ),
    row(
        concat!(base!(), "identity: { anonymous: { tier: guest } }\n"),
        "4:26: field `identity.anonymous.tier`",
        "unknown tier 'guest' (defined: t)",
    ),
    row(
        concat!(
            base!(),
            "identity: { trusted_proxies: [\"10.0.0.0/33\"] }\n"
        ),
        "4:31: field `identity.trusted_proxies[0]`",
        "'10.0.0.0/33' is not a CIDR or IP address",
    ),
];

pub const KEYS: &[Row] = &[
    row(
        concat!(base!(), "keys: [{ id: \"a b\", key: \"row-secret-key-0001\", tier: t }]\n"),
        "4:10: field `keys[0].id`",
        "ids may use letters, digits, '_', '-' and '.' (at most 64)",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [] }, u: { limits: [] } }\n",
            "keys:\n  - { id: a, key: \"row-secret-key-0001\", tier: t }\n  - { id: a, key: \"other\", tier: u }\n"
        ),
        "6:28: field `keys[1].tier`",
        "keys of one id must name one tier: id 'a' has 'u' here and 't' at keys[0]",
    ),
    row(
        concat!(base!(), "keys: [{ id: a, key: \"row-secret-key-0001\", tier: t, expires: never }]\n"),
        "4:54: field `keys[0].expires`",
        "must be an RFC 3339 instant, such as 2027-01-01T00:00:00Z",
    ),
    row(concat!(base!(), "keys_file: \" \"\n"), "4:1: field `keys_file`", "must be a file path"),
    row(
        concat!(base!(), "keys_redis: { ttl: 30s }\n"),
        "4:1: field `keys_redis`",
        "needs a `redis` section (the hash is read through its connection)",
    ),
    row(
        concat!("redis: { url: \"redis://127.0.0.1:6379\" }\n", base!(), "keys_redis: { hash: \"a b\" }\n"),
        "5:15: field `keys_redis.hash`",
        "must be a Redis key name without spaces",
    ),
    row(
        concat!("redis: { url: \"redis://127.0.0.1:6379\" }\n", base!(), "keys_redis: { cache: 0 }\n"),
        "5:15: field `keys_redis.cache`",
        "must be between 1 and 10000000",
    ),
    row(
        concat!("redis: { url: \"redis://127.0.0.1:6379\" }\n", base!(), "keys_redis: { ttl: 10ms }\n"),
        "5:15: field `keys_redis.ttl`",
        "must be between 100ms and 1d",
    ),
    row(
        concat!(base!(), "keys_file: missing-row.tsv\n"),
        "4:1: field `keys_file`",
        "cannot read missing-row.tsv: No such file or directory (os error 2)",
    ),
    row(
        concat!(base!(), "keys: [{ id: a, key: \"\", tier: t }]\n"),
        "4:17: field `keys[0].key`",
        "must be a non-empty header-safe string",
    ),
    row(
        concat!(base!(), "keys: [{ id: a, key_sha256: \"row-secret-key-0001\", tier: t }]\n"),
        "4:17: field `keys[0].key_sha256`",
        "must be 64 hex characters",
    ),
    row(
        concat!(
            base!(),
            "keys: [{ id: a, key: \"row-secret-key-0001\", key_sha256: \"",
            "0000000000000000000000000000000000000000000000000000000000000000\", tier: t }]\n"
        ),
        "4:8: field `keys[0]`",
        "set either `key` or `key_sha256`, not both",
    ),
    row(concat!(base!(), "keys: [{ id: a, tier: t }]\n"), "4:8: field `keys[0]`", "needs `key` or `key_sha256`"),
    row(
        concat!(base!(), "keys: [{ id: a, key: \"row-secret-key-0001\", tier: gold }]\n"),
        "4:45: field `keys[0].tier`",
        "unknown tier 'gold' (defined: t)",
    ),
    row(
        concat!(
            base!(),
            "keys:\n  - { id: a, key: \"row-secret-key-0001\", tier: t }\n  - { id: b, key: \"row-secret-key-0001\", tier: t }\n"
        ),
        "6:5: field `keys[1]`",
        "this key is already assigned to another id (keys must be unique)",
    ),
];

pub const FILE: &[Row] = &[
    row(
        concat!(base!(), "admin_token_sha256: \"row-secret-key-0001\"\n"),
        "4:1: field `admin_token_sha256`",
        "must be 64 hex characters",
    ),
    row("", "", "the file is empty"),
    row("  \n\n", "", "the file is empty"),
    row(
        concat!(base!(), "access_log: { sample: 1.5 }\n"),
        "4:15: field `access_log.sample`",
        "must be between 0.0 and 1.0",
    ),
];

/// What serde finds while reading the file: syntax, unknown and missing fields, wrong types.
pub const PARSING: &[Row] = &[
    row(
        concat!("upstreams: { u: { peers: [\"127.0.0.1:9000\"\n", routes!(), tiers!()),
        "2:1: field `upstreams.u.peers`",
        "did not find expected ',' or ']', while parsing a flow sequence",
    ),
    row(
        concat!(upstreams!(), "routes: [{ prefix: /, upstream: u, strip_prefx: true }]\n", tiers!()),
        "2:36: field `routes[0].strip_prefx`",
        "unknown field `strip_prefx`, expected one of `name`, `prefix`, `methods`, `upstream`, `strip_prefix`, `cost`, `preserve_host`",
    ),
    row(
        concat!(base!(), "keys_fil: keys.tsv\n"),
        "4:1: field `keys_fil`",
        "unknown field `keys_fil`, expected one of `listen`, `admin_listen`, `redis`, `upstreams`, \
         `routes`, `identity`, `tiers`, `keys`, `keys_file`, `keys_redis`, `access_log`, `admin_token_sha256`, `connection_rate`, \
         `policies`, `memory_max_identities`",
    ),
    row(
        concat!(base!(), "admin_token: \"row-secret-key-0001\"\n"),
        "4:1: field `admin_token`",
        "unknown field `admin_token`, expected one of `listen`, `admin_listen`, `redis`, `upstreams`, \
         `routes`, `identity`, `tiers`, `keys`, `keys_file`, `keys_redis`, `access_log`, `admin_token_sha256`, `connection_rate`, \
         `policies`, `memory_max_identities`",
    ),
    row(
        concat!(base!(), "keys: [{ id: a, key: \"row-secret-key-0001\", tier: t, expire: never }]\n"),
        "4:54: field `keys[0].expire`",
        "unknown field `expire`, expected one of `id`, `key`, `key_sha256`, `tier`, `expires`, `disabled`",
    ),
    row(
        concat!("redis: { url: \"redis://127.0.0.1\", passwd: x }\n", base!()),
        "1:36: field `redis.passwd`",
        "unknown field `passwd`, expected one of `url`, `cluster`, `timeout_ms`, `on_error`, \
         `key_prefix`, `breaker_failures`, `breaker_window`, `breaker_min_calls`, \
         `breaker_failure_ratio`, `breaker_failure_spread`, `breaker_half_open_after`, \
         `breaker_probes`, `breaker_open`, `over_limit_cache`, `concurrenc...",
    ),
    row(
        concat!("connection_rate: { per_ip: 5, burst: 3 }\n", base!()),
        "1:31: field `connection_rate.burst`",
        "unknown field `burst`, expected `per_ip` or `window`",
    ),
    row(concat!("connection_rate: { window: 1s }\n", base!()), "1:1: field `connection_rate`", "missing field `per_ip`"),
    row(concat!(upstreams!(), tiers!()), "1:1", "missing field `routes`"),
    row(concat!(base!(), "keys: [{ id: a, key: \"row-secret-key-0001\" }]\n"), "4:8: field `keys[0]`", "missing field `tier`"),
    row(
        concat!(base!(), "keys: [\"row-secret-key-0001\"]\n"),
        "4:8: field `keys[0]`",
        "invalid type: string \"(value hidden)\", expected struct RawKey",
    ),
    row(
        concat!(base!(), "keys: [{ id: a, key: [\"row-secret-key-0001\"], tier: t }]\n"),
        "4:17: field `keys[0].key`",
        "invalid type: sequence, expected a string",
    ),
    row(
        concat!("redis: \"redis://user:row-secret-key-0001@127.0.0.1\"\n", base!()),
        "1:1: field `redis`",
        "invalid type: string \"(value hidden)\", expected struct RawRedis",
    ),
    row(
        concat!("redis: { url: \"redis://127.0.0.1\", on_error: ignore }\n", base!()),
        "1:36: field `redis.on_error`",
        "unknown variant `ignore`, expected one of `fail_open`, `fail_closed`, `local`",
    ),
    row(
        concat!(upstreams!(), "routes: [{ prefix: /, upstream: u, cost: lots }]\n", tiers!()),
        "2:36: field `routes[0].cost`",
        "invalid type: string \"lots\", expected u64",
    ),
];
