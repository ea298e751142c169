//! Policies over real sockets, on the in-process store and on a real Redis: every `by` kind is
//! exact under 64 concurrent clients, a refusal by a shared budget charges the caller nothing,
//! methods pick routes and policies, IPv6 clients count by prefix, and a full in-process store
//! judges new identities in the tier's overflow bucket.
pub mod common;

use common::policies::{burst, key, policy_config, SMALL_KEYS};
use common::*;
use reqwest::Method;

/// Redis with a generous timeout (a 64-client burst on a loaded box) and no fallback, so a
/// store error would show as a 503, not as a wrong count.
fn strict(redis: Redis) -> Redis {
    redis.timeout_ms(2000).on_error("fail_closed")
}

fn violated(r: reqwest::blocking::Response) -> (u16, Vec<String>) {
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().unwrap_or_default();
    let list = body["violated-policies"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (status, list)
}

fn send(
    tg: &Tollgate,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut rb = client().request(method, tg.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().expect("request")
}

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Every scenario against one gateway; they use distinct routes and keys.
fn every_kind_is_exact(tg: &Tollgate) {
    // by: identity, per tier: alice (free) gets the policy's 40 of 100, not the tier's 60.
    let b = burst(&tg.url("/id/x"), Method::GET, 100, key("free-demo-key"));
    assert_eq!(
        (b.ok, b.limited, b.other),
        (40, 60, 0),
        "by identity: {b:?}"
    );
    let (s, v) = violated(send(
        tg,
        Method::GET,
        "/id/x",
        &[("x-api-key", "free-demo-key")],
    ));
    assert_eq!((s, v), (429, vec!["per-id.0".to_string()]));
    // The 61 refused requests cost the tier nothing: 60 - 40 left, this one takes one.
    let r = send(tg, Method::GET, "/api/x", &[("x-api-key", "free-demo-key")]);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "ratelimit"), "\"per_minute\";r=19;t=60");
    // The admin API shows the by-identity policy beside the tier, whatever the route.
    let usage: serde_json::Value = client()
        .get(tg.admin_url("/v1/keys/alice"))
        .send()
        .and_then(|r| r.json())
        .expect("admin usage");
    let used = |name: &str| {
        usage["limits"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name))
            .map(|l| l["used"].as_u64().unwrap_or(99))
    };
    assert_eq!(
        (used("per_minute"), used("per-id.0")),
        (Some(41), Some(40)),
        "{usage}"
    );

    // by: ip, whoever the caller: two internal keys (no limits of their own) share 30.
    let b = burst(&tg.url("/login/x"), Method::POST, 100, |i| {
        let k = if i % 2 == 0 {
            "internal-demo-key"
        } else {
            "internal-two"
        };
        vec![("x-api-key", k.to_string())]
    });
    assert_eq!((b.ok, b.limited, b.other), (30, 70, 0), "by ip: {b:?}");
    let r = send(
        tg,
        Method::POST,
        "/login/x",
        &[("x-api-key", "internal-two")],
    );
    assert_eq!(
        header(&r, "ratelimit-policy"),
        "\"login.per_min\";q=30;w=60"
    );
    assert_eq!(violated(r), (429, vec!["login.per_min".to_string()]));
    // The route takes POST only: GET finds no route at all.
    let r = send(
        tg,
        Method::GET,
        "/login/x",
        &[("x-api-key", "internal-two")],
    );
    assert_eq!(r.status(), 404);

    // by: global: every caller shares 40.
    let b = burst(&tg.url("/search/x"), Method::GET, 100, |i| {
        let k = if i % 2 == 0 {
            "internal-demo-key"
        } else {
            "internal-two"
        };
        vec![("x-api-key", k.to_string())]
    });
    assert_eq!((b.ok, b.limited, b.other), (40, 60, 0), "global: {b:?}");

    // by: header: 20 per tenant; a request without the header is not limited by the policy.
    let b = burst(&tg.url("/tenant/x"), Method::GET, 100, |i| {
        let t = if i % 2 == 0 { "acme" } else { "globex" };
        vec![
            ("x-api-key", "internal-demo-key".to_string()),
            ("x-tenant", t.to_string()),
        ]
    });
    assert_eq!((b.ok, b.limited, b.other), (40, 60, 0), "header: {b:?}");
    let b = burst(
        &tg.url("/tenant/x"),
        Method::GET,
        30,
        key("internal-demo-key"),
    );
    assert_eq!((b.ok, b.other), (30, 0), "no header, no policy: {b:?}");
}

/// A refusal by a global budget leaves the caller's own budget untouched.
fn global_refusal_charges_nothing(tg: &Tollgate, small_key: &'static str) {
    let sam = [("x-api-key", small_key)];
    for _ in 0..3 {
        assert_eq!(send(tg, Method::GET, "/g/x", &sam).status(), 200);
    }
    for _ in 0..4 {
        let (s, v) = violated(send(tg, Method::GET, "/g/x", &sam));
        assert_eq!((s, v), (429, vec!["guard.0".to_string()]));
    }
    // Own limit 10: 3 were admitted, the 4 refusals took nothing.
    let r = send(tg, Method::GET, "/api/x", &sam);
    assert_eq!(header(&r, "ratelimit"), "\"own\";r=6;t=60");
    let b = burst(&tg.url("/api/x"), Method::GET, 20, key(small_key));
    assert_eq!((b.ok, b.limited), (6, 14), "{b:?}");
}

/// A policy that matches one method limits that method only.
fn method_policies(tg: &Tollgate) {
    let carol = [("x-api-key", "internal-demo-key")];
    let statuses: Vec<u16> = (0..3)
        .map(|_| send(tg, Method::DELETE, "/api/x", &carol).status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    for _ in 0..5 {
        assert_eq!(send(tg, Method::GET, "/api/x", &carol).status(), 200);
    }
    let m = tg.metrics();
    assert!(
        metric_value(
            &m,
            "tollgate_ratelimit_decisions_total{decision=\"limited\",limit=\"api-writes.0\",policy=\"api-writes\",tier=\"internal\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[test]
fn policies_on_the_in_process_store() {
    let echo = Echo::start();
    let tg = Tollgate::start(&policy_config(None, &echo.addr()).to_yaml());
    every_kind_is_exact(&tg);
    global_refusal_charges_nothing(&tg, "small-key");
    method_policies(&tg);
}

#[test]
fn policies_on_redis() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let config = policy_config(Some(strict(Redis::url(&redis.url()))), &echo.addr());
    let tg = Tollgate::start(&config.to_yaml());
    every_kind_is_exact(&tg);
    global_refusal_charges_nothing(&tg, "small-key");
    method_policies(&tg);
    // Key names: the policy is in every one, header values only as digests.
    let keys = redis.cli(&["--scan", "--pattern", "tollgate:*"]);
    assert!(keys.contains("tollgate:{global}:search.0:sl"), "{keys}");
    assert!(
        keys.contains("tollgate:{ip:127.0.0.1}:login.per_min:sl"),
        "{keys}"
    );
    assert!(keys.contains("tollgate:{h:x-tenant:"), "{keys}");
    assert!(
        !keys.contains("acme") && !keys.contains("free-demo-key"),
        "{keys}"
    );
}

fn anonymous_from(tg: &Tollgate, ip: &str, n: usize) -> usize {
    (0..n)
        .filter(|_| send(tg, Method::GET, "/api/x", &[("x-forwarded-for", ip)]).status() == 200)
        .count()
}

#[test]
fn ipv6_clients_count_by_prefix() {
    let echo = Echo::start();
    let tg = Tollgate::start(&policy_config(None, &echo.addr()).to_yaml());
    // Anonymous limit 5: two addresses of one /64 share it; another /64 has its own.
    assert_eq!(anonymous_from(&tg, "2001:db8:1:2::1", 3), 3);
    assert_eq!(anonymous_from(&tg, "2001:db8:1:2:ffff::9", 3), 2);
    assert_eq!(anonymous_from(&tg, "2001:db8:1:3::1", 6), 5);
    // by: ip policies too: 30 shared by the /64.
    let b = burst(&tg.url("/login/x"), Method::POST, 60, |i| {
        vec![
            ("x-api-key", "internal-demo-key".to_string()),
            ("x-forwarded-for", format!("2001:db8:7:7::{:x}", i + 1)),
        ]
    });
    assert_eq!((b.ok, b.limited), (30, 30), "{b:?}");

    let tg = Tollgate::start(&policy_config(None, &echo.addr()).ipv6_prefix(128).to_yaml());
    assert_eq!(anonymous_from(&tg, "2001:db8:1:2::1", 6), 5);
    assert_eq!(anonymous_from(&tg, "2001:db8:1:2::2", 6), 5);
}

#[test]
fn a_full_in_process_store_judges_new_identities_in_the_overflow_bucket() {
    let echo = Echo::start();
    let config = policy_config(None, &echo.addr()).memory_max_identities(3);
    let tg = Tollgate::start(&config.to_yaml());
    for i in 1..=3 {
        assert_eq!(anonymous_from(&tg, &format!("10.0.0.{i}"), 1), 1);
    }
    // Ten new addresses: no room, so they share the anonymous tier's overflow bucket of 5.
    let admitted: usize = (1..=10)
        .map(|i| anonymous_from(&tg, &format!("10.0.1.{i}"), 1))
        .sum();
    assert_eq!(admitted, 5);
    // The identities held keep their own buckets.
    assert_eq!(anonymous_from(&tg, "10.0.0.1", 6), 4);
    assert!(tg.metric("tollgate_store_overflow_total") >= 10.0);
}

/// On a real 3-master Redis Cluster, where the caller's budget and the shared ones live on
/// different masters: every kind is still exact, and a refusal by any slot is refunded by
/// the others.
#[test]
fn policies_on_a_redis_cluster() {
    use tollgate::identity::StoreIdentity;
    use tollgate::limiter::store::redis::slot_of;

    let cluster = common::cluster::RedisCluster::start();
    let global = cluster.keyslot("tollgate:{global}:guard.0:sl");
    assert_eq!(global, slot_of("global"));
    // A caller whose own budget lives on another master than the global one.
    let (_, small_key) = SMALL_KEYS
        .into_iter()
        .find(|(id, _)| {
            let id = StoreIdentity::for_id(id);
            let own = cluster.keyslot(&format!("tollgate:{{{id}}}:own:sl"));
            assert_eq!(own, slot_of(id.as_str()));
            cluster.master_of(own) != cluster.master_of(global)
        })
        .expect("a small-tier key on another master than {global}");
    let echo = Echo::start();
    let config = policy_config(Some(strict(Redis::cluster(&cluster.urls()))), &echo.addr());
    let tg = Tollgate::start(&config.to_yaml());
    every_kind_is_exact(&tg);
    global_refusal_charges_nothing(&tg, small_key);
    assert!(
        metric_value(
            &tg.metrics(),
            "tollgate_store_operations_total{op=\"refund\"}"
        ) >= 1.0,
        "the guard's refusals were refunded across slots"
    );
}
