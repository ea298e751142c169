//! Rows for what picks a request's budgets: route `name` and `methods`, `policies`,
//! `identity.ipv6_prefix`, `memory_max_identities` and concurrency (`tiers.<t>.concurrency`,
//! `redis.concurrency_lease`).

use super::{row, Row};

/// Named routes `a` (`/a`) and `b` (`/b`, POST only) in place of the base's one route.
macro_rules! named_routes {
    () => {
        concat!(
            upstreams!(),
            "routes: [{ prefix: /a, upstream: u, name: a }, { prefix: /b, upstream: u, name: b, methods: [POST] }]\n",
            tiers!()
        )
    };
}

/// Four policies of one line each, for the row about too many.
macro_rules! four_policies {
    () => {
        "{ name: p, limits: [] }, { name: p, limits: [] }, { name: p, limits: [] }, { name: p, limits: [] }, "
    };
}
macro_rules! sixteen_policies {
    () => {
        concat!(
            four_policies!(),
            four_policies!(),
            four_policies!(),
            four_policies!()
        )
    };
}

/// Four limits of one policy, for the row about too many.
macro_rules! four_limits {
    () => {
        "{ requests: 1, window: 1s }, { requests: 1, window: 2s }, { requests: 1, window: 3s }, { requests: 1, window: 4s }, "
    };
}

pub const ROUTE_MATCH: &[Row] = &[
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u, methods: [GET] }, { prefix: /, upstream: u, name: b, methods: [GET, POST] }]\n",
            tiers!()
        ),
        "2:56: field `routes[1].prefix`",
        "duplicate prefix '/' for the same methods (give each route its own `methods`)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u, name: \"a b\" }]\n",
            tiers!()
        ),
        "2:36: field `routes[0].name`",
        "route names may use letters, digits, '_', '-' and '.' (at most 64)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /a, upstream: u, name: x }, { prefix: /b, upstream: u, name: x }]\n",
            tiers!()
        ),
        "2:75: field `routes[1].name`",
        "duplicate route name 'x' (routes that share a prefix need distinct names)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u, methods: [] }]\n",
            tiers!()
        ),
        "2:36: field `routes[0].methods`",
        "needs at least one method (leave `methods` out to match any)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u, methods: [get] }]\n",
            tiers!()
        ),
        "2:46: field `routes[0].methods[0]`",
        "'get' is not an HTTP method (methods are upper case: GET, POST, ...)",
    ),
    row(
        concat!(
            upstreams!(),
            "routes: [{ prefix: /, upstream: u, methods: [GET, GET] }]\n",
            tiers!()
        ),
        "2:51: field `routes[0].methods[1]`",
        "'GET' is listed twice",
    ),
];

pub const POLICIES: &[Row] = &[
    row(
        concat!(
            base!(),
            "policies: [",
            sixteen_policies!(),
            sixteen_policies!(),
            sixteen_policies!(),
            sixteen_policies!(),
            "{ name: p, limits: [] }]\n"
        ),
        "4:1: field `policies`",
        "at most 64 policies",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, limits: [{ requests: 1, window: 1s }] }, { name: p, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:66: field `policies[1].name`",
        "duplicate policy name 'p'",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: \"p q\", limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:14: field `policies[0].name`",
        "policy names may use letters, digits, '_', '-' and '.' (at most 64)",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: tier, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:14: field `policies[0].name`",
        "'tier' is reserved: it is the `policy` label of a tier's own limits",
    ),
    row(
        concat!(
            named_routes!(),
            "policies: [{ name: p, match: { routes: [] }, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:32: field `policies[0].match.routes`",
        "needs at least one route (leave `routes` out to match any)",
    ),
    row(
        concat!(
            named_routes!(),
            "policies: [{ name: p, match: { routes: [a, c] }, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:44: field `policies[0].match.routes[1]`",
        "unknown route 'c' (routes: a, b)",
    ),
    row(
        concat!(
            named_routes!(),
            "policies: [{ name: p, match: { methods: [Post] }, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:42: field `policies[0].match.methods[0]`",
        "'Post' is not an HTTP method (methods are upper case: GET, POST, ...)",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, limits: [{ requests: 1, window: 1s }], tiers: { t: [{ requests: 1, window: 1s }] } }]\n"
        ),
        "4:12: field `policies[0]`",
        "set either `limits` or `tiers`, not both",
    ),
    row(
        concat!(base!(), "policies: [{ name: p, by: ip }]\n"),
        "4:12: field `policies[0]`",
        "needs `limits` or `tiers`",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, by: \"header:x tenant\", limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:23: field `policies[0].by`",
        "'x tenant' is not a header name",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, by: client, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:23: field `policies[0].by`",
        "unknown `by` 'client' (expected identity, ip, global or header:<name>)",
    ),
    row(
        concat!(base!(), "policies: [{ name: p, tiers: {} }]\n"),
        "4:23: field `policies[0].tiers`",
        "needs at least one tier",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, tiers: { gold: [{ requests: 1, window: 1s }] } }]\n"
        ),
        "4:32: field `policies[0].tiers.gold`",
        "unknown tier 'gold' (defined: t)",
    ),
    row(
        concat!(base!(), "policies: [{ name: p, limits: [] }]\n"),
        "4:23: field `policies[0].limits`",
        "needs at least one limit",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, limits: [",
            four_limits!(),
            four_limits!(),
            four_limits!(),
            four_limits!(),
            "{ requests: 1, window: 5s }] }]\n"
        ),
        "4:23: field `policies[0].limits`",
        "at most 16 limits per policy",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, limits: [{ name: a, requests: 1, window: 1s }, { name: a, requests: 2, window: 2s }] }]\n"
        ),
        "4:72: field `policies[0].limits[1].name`",
        "duplicate limit name 'a' in this policy",
    ),
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [{ name: p.x, requests: 1, window: 1s }] } }\n",
            "policies: [{ name: p, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "3:26: field `tiers.t.limits[0].name`",
        "'p.x' clashes with policy 'p' (limit names starting with 'p.' are its own)",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, limitz: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:23: field `policies[0].limitz`",
        "unknown field `limitz`, expected one of `name`, `match`, `by`, `limits`, `tiers`",
    ),
];

/// A policy's limits are checked as a tier's are, with the policy's field path.
pub const POLICY_LIMITS: &[Row] = &[
    row(
        concat!(
            base!(),
            "policies: [{ name: p, limits: [{ requests: 0, window: 1s }] }]\n"
        ),
        "4:34: field `policies[0].limits[0].requests`",
        "must be at least 1 (use `limits: []` for an unlimited tier)",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, tiers: { t: [{ requests: 1, window: 0s }] } }]\n"
        ),
        "4:51: field `policies[0].tiers.t[0].window`",
        "must be positive",
    ),
    row(
        concat!(
            base!(),
            "policies: [{ name: p, match: { route: [a] }, limits: [{ requests: 1, window: 1s }] }]\n"
        ),
        "4:32: field `policies[0].match.route`",
        "unknown field `route`, expected `routes` or `methods`",
    ),
];

pub const CAPACITY: &[Row] = &[
    row(
        concat!(
            upstreams!(),
            routes!(),
            "tiers: { t: { limits: [], concurrency: 0 } }\n"
        ),
        "3:27: field `tiers.t.concurrency`",
        "must be between 1 and 1000000 (leave it out for no limit)",
    ),
    row(
        concat!(
            "redis: { url: \"redis://127.0.0.1:6379\", concurrency_lease: 10ms }\n",
            base!()
        ),
        "1:41: field `redis.concurrency_lease`",
        "must be between 100ms and 1d (longer than the slowest request it guards)",
    ),
    row(
        concat!(base!(), "identity: { ipv6_prefix: 0 }\n"),
        "4:13: field `identity.ipv6_prefix`",
        "must be between 1 and 128 (128: every IPv6 address on its own)",
    ),
    row(
        concat!(base!(), "identity: { ipv6_prefix: 129 }\n"),
        "4:13: field `identity.ipv6_prefix`",
        "must be between 1 and 128 (128: every IPv6 address on its own)",
    ),
    row(
        concat!(base!(), "memory_max_identities: 0\n"),
        "4:1: field `memory_max_identities`",
        "must be between 1 and 1000000000",
    ),
];
