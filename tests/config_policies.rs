//! A config with named routes, methods and every kind of policy loads into the plans a request
//! draws on, and a bad policy is refused by `tollgate -t` as an operator runs it, with file,
//! line and field. Every single validation message has its row in `tests/config_errors/`.
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
