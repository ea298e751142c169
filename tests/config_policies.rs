//! Every validation error of route names and methods, `policies:`, `identity.ipv6_prefix` and
//! `memory_max_identities`: each bad config is refused with its file, line and field, and the
//! good one loads. One case also goes through `tollgate -t`, as an operator runs it.
use std::path::Path;

use tollgate::config::load_str;

const GOOD: &str = r#"listen: ["127.0.0.1:8080"]
admin_listen: "127.0.0.1:9091"
upstreams:
  api:
    peers: ["127.0.0.1:9000"]
routes:
  - name: charges
    prefix: "/v1/charges"
    methods: [POST]
    upstream: api
  - name: login
    prefix: "/login"
    upstream: api
  - prefix: "/"
    upstream: api
identity:
  anonymous: { tier: anonymous }
  ipv6_prefix: 64
memory_max_identities: 1000
tiers:
  anonymous:
    limits: [{ requests: 10, window: 60s }]
  free:
    limits: [{ name: per_minute, requests: 60, window: 60s }]
policies:
  - name: login-bruteforce
    match: { routes: [login], methods: [POST] }
    by: ip
    limits: [{ requests: 5, window: 60s }]
  - name: charges
    match: { routes: [charges] }
    tiers:
      free: [{ requests: 2, window: 1s }]
  - name: tenant
    by: "header:x-tenant"
    limits: [{ name: per_second, requests: 100, window: 1s }]
keys:
  - { id: alice, key: "policy-test-key", tier: free }
"#;

/// `from` replaced by `to` in the good file must fail on `field`, on the line holding `at`
/// (in the changed file), with a message containing `says`.
struct Case {
    from: &'static str,
    to: &'static str,
    field: &'static str,
    at: &'static str,
    says: &'static str,
}

const CASES: &[Case] = &[
    Case { from: "  - name: charges\n    prefix", to: "  - name: \"char ges\"\n    prefix", field: "routes[0].name", at: "char ges", says: "route names may use" },
    Case { from: "  - name: login\n", to: "  - name: charges\n", field: "routes[1].name", at: "  - name: charges\n    prefix: \"/login\"", says: "duplicate route name 'charges'" },
    Case { from: "methods: [POST]\n    upstream", to: "methods: []\n    upstream", field: "routes[0].methods", at: "methods: []", says: "at least one method" },
    Case { from: "methods: [POST]\n    upstream", to: "methods: [post]\n    upstream", field: "routes[0].methods[0]", at: "methods: [post]", says: "'post' is not an HTTP method" },
    Case { from: "methods: [POST]\n    upstream", to: "methods: [POST, POST]\n    upstream", field: "routes[0].methods[1]", at: "methods: [POST, POST]", says: "listed twice" },
    Case { from: "  - prefix: \"/\"\n", to: "  - prefix: \"/login\"\n    name: login2\n", field: "routes[2].prefix", at: "  - prefix: \"/login\"\n    name: login2", says: "duplicate prefix '/login'" },
    Case { from: "  - name: login-bruteforce", to: "  - name: \"login brute\"", field: "policies[0].name", at: "login brute", says: "policy names may use" },
    Case { from: "  - name: tenant", to: "  - name: charges", field: "policies[2].name", at: "  - name: charges\n    by:", says: "duplicate policy name 'charges'" },
    Case { from: "  - name: tenant", to: "  - name: tier", field: "policies[2].name", at: "  - name: tier", says: "'tier' is reserved" },
    Case { from: "by: ip", to: "by: client", field: "policies[0].by", at: "by: client", says: "unknown `by` 'client'" },
    Case { from: "by: \"header:x-tenant\"", to: "by: \"header:x tenant\"", field: "policies[2].by", at: "header:x tenant", says: "is not a header name" },
    Case { from: "    match: { routes: [charges] }\n", to: "    match: { routes: [charges] }\n    limits: [{ requests: 1, window: 1s }]\n", field: "policies[1]", at: "  - name: charges\n    match", says: "either `limits` or `tiers`, not both" },
    Case { from: "    by: \"header:x-tenant\"\n    limits: [{ name: per_second, requests: 100, window: 1s }]\n", to: "    by: \"header:x-tenant\"\n", field: "policies[2]", at: "  - name: tenant", says: "needs `limits` or `tiers`" },
    Case { from: "    limits: [{ requests: 5, window: 60s }]", to: "    limits: []", field: "policies[0].limits", at: "    limits: []", says: "at least one limit" },
    Case { from: "      free: [{ requests: 2, window: 1s }]", to: "      gold: [{ requests: 2, window: 1s }]", field: "policies[1].tiers.gold", at: "gold:", says: "unknown tier 'gold'" },
    Case { from: "    tiers:\n      free: [{ requests: 2, window: 1s }]", to: "    tiers: {}", field: "policies[1].tiers", at: "    tiers: {}", says: "at least one tier" },
    Case { from: "routes: [login], methods", to: "routes: [logon], methods", field: "policies[0].match.routes[0]", at: "routes: [logon]", says: "unknown route 'logon'" },
    Case { from: "routes: [login], methods", to: "routes: [], methods", field: "policies[0].match.routes", at: "routes: [], methods", says: "at least one route" },
    Case { from: "methods: [POST] }", to: "methods: [Get] }", field: "policies[0].match.methods[0]", at: "methods: [Get] }", says: "'Get' is not an HTTP method" },
    Case { from: "limits: [{ requests: 5, window: 60s }]", to: "limits: [{ requests: 0, window: 60s }]", field: "policies[0].limits[0].requests", at: "requests: 0", says: "at least 1" },
    Case { from: "[{ requests: 2, window: 1s }]", to: "[{ requests: 2, window: 0s }]", field: "policies[1].tiers.free[0].window", at: "window: 0s", says: "must be positive" },
    Case { from: "limits: [{ name: per_second, requests: 100, window: 1s }]", to: "limits: [{ name: a, requests: 100, window: 1s }, { name: a, requests: 1, window: 1s }]", field: "policies[2].limits[1].name", at: "name: a, requests: 1", says: "duplicate limit name 'a'" },
    Case { from: "limits: [{ name: per_minute, requests: 60", to: "limits: [{ name: charges.x, requests: 60", field: "tiers.free.limits[0].name", at: "charges.x", says: "clashes with policy 'charges'" },
    Case { from: "  ipv6_prefix: 64", to: "  ipv6_prefix: 129", field: "identity.ipv6_prefix", at: "ipv6_prefix: 129", says: "between 1 and 128" },
    Case { from: "  ipv6_prefix: 64", to: "  ipv6_prefix: 0", field: "identity.ipv6_prefix", at: "ipv6_prefix: 0", says: "between 1 and 128" },
    Case { from: "memory_max_identities: 1000", to: "memory_max_identities: 0", field: "memory_max_identities", at: "memory_max_identities: 0", says: "between 1 and 1000000000" },
    Case { from: "    by: ip\n", to: "    by: ip\n    limit: []\n", field: "policies[0].limit", at: "    limit: []", says: "unknown field `limit`" },
    Case { from: "    match: { routes: [login], methods: [POST] }", to: "    match: { route: [login] }", field: "policies[0].match.route", at: "match: { route", says: "unknown field `route`" },
];

fn line_of(source: &str, needle: &str) -> usize {
    let at = source
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the file"));
    source[..at].matches('\n').count() + 1
}

#[test]
fn the_good_file_loads_with_its_plans() {
    let s = load_str(Path::new("p.yaml"), GOOD).expect("good config");
    let charges = s.route_for("/v1/charges/1", &http::Method::POST).unwrap();
    assert_eq!(s.routes[charges].name.as_ref(), "charges");
    // A GET skips the POST-only route and falls to "/".
    let other = s.route_for("/v1/charges/1", &http::Method::GET).unwrap();
    assert_eq!(s.routes[other].name.as_ref(), "/");
    let free = &s.tiers["free"];
    let plan = s.plan(charges, &http::Method::POST, free).unwrap();
    let names: Vec<Vec<&str>> = plan
        .budgets
        .iter()
        .map(|b| b.names.iter().map(|n| n.as_ref()).collect())
        .collect();
    assert_eq!(
        names,
        [
            vec!["per_minute"],
            vec!["charges.0"],
            vec!["tenant.per_second"]
        ]
    );
    assert_eq!((s.ipv6_prefix, s.memory_max_identities), (64, 1000));
}

#[test]
fn every_mistake_names_its_line_and_field() {
    for c in CASES {
        assert!(
            GOOD.contains(c.from),
            "case {}: {:?} not in the good file",
            c.field,
            c.from
        );
        let bad = GOOD.replacen(c.from, c.to, 1);
        let e = match load_str(Path::new("p.yaml"), &bad) {
            Ok(_) => panic!("case {}: accepted", c.field),
            Err(e) => e,
        };
        assert_eq!(e.field, c.field, "case {}: {e}", c.field);
        assert_eq!(e.line, line_of(&bad, c.at), "case {}: {e}", c.field);
        assert!(e.message.contains(c.says), "case {}: {e}", c.field);
        assert!(e.to_string().starts_with("p.yaml:"), "{e}");
        assert!(!e.to_string().contains("policy-test-key"), "{e}");
    }
}

#[test]
fn tollgate_t_refuses_a_policy_with_both_limits_and_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let bad = GOOD.replacen(
        "    match: { routes: [charges] }\n",
        "    match: { routes: [charges] }\n    limits: [{ requests: 1, window: 1s }]\n",
        1,
    );
    std::fs::write(&file, &bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["-t", "--config"])
        .arg(&file)
        .output()
        .expect("tollgate -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = line_of(&bad, "  - name: charges\n    match");
    assert!(
        stderr.contains(&format!("bad.yaml:{line}:")) && stderr.contains("policies[1]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("either `limits` or `tiers`, not both"),
        "{stderr}"
    );
}
