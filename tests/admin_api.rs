//! The operator API on `admin_listen`: a key's usage read back exactly and without charging,
//! reset to the full budget, who is being limited, the config in force, and who may ask; on the
//! in-process store, a real Redis and a real 3-master Redis Cluster.
pub mod common;

use std::time::Duration;

use common::cluster::RedisCluster;
use common::*;
use serde_json::Value;

const TOKEN: &str = "adm1n-t0ken-for-tests";

/// alice (free, 60/min) and tina (tight, 3/min), a trusted local proxy for X-Forwarded-For.
fn config(redis: Option<&str>, echo: &str) -> ConfigBuilder {
    standard(redis, echo)
        .trusted_proxies(&["127.0.0.1/32"])
        .tier(
            "tight",
            &[
                limit(3, "60s").named("per_minute"),
                limit(100, "1h").named("hourly").algorithm("fixed_window"),
            ],
        )
        .key("tina", "tight-secret-key", "tight")
}

fn yaml(redis: Option<&str>, echo: &str) -> String {
    config(redis, echo).to_yaml()
}

fn send(tg: &Tollgate, key: Option<&str>, xff: Option<&str>) -> u16 {
    let mut r = client().get(tg.url("/api/x"));
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    if let Some(ip) = xff {
        r = r.header("x-forwarded-for", ip);
    }
    r.send().expect("request").status().as_u16()
}

/// (status, body as JSON or Null, content type) of an admin request.
fn admin(tg: &Tollgate, method: &str, path: &str, token: Option<&str>) -> (u16, Value, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = client().request(m, tg.admin_url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().expect("admin request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::Null),
        ct,
    )
}

/// (name, limit, used, remaining) of each limit of `id`.
fn usage(tg: &Tollgate, id: &str) -> Vec<(String, u64, u64, u64)> {
    let (status, body, _) = admin(tg, "GET", &format!("/v1/keys/{id}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id);
    body["limits"]
        .as_array()
        .expect("limits")
        .iter()
        .map(|l| {
            let n = |f: &str| l[f].as_u64().unwrap_or_else(|| panic!("{f} in {l}"));
            assert!(n("reset_ms") <= 3_600_000, "{l}");
            (
                l["name"].as_str().unwrap_or("").to_string(),
                n("limit"),
                n("used"),
                n("remaining"),
            )
        })
        .collect()
}

/// The whole read-reset cycle against whatever store `tg` uses.
fn usage_is_exact_read_only_and_resettable(tg: &Tollgate) {
    for _ in 0..7 {
        assert_eq!(send(tg, Some("free-demo-key"), None), 200);
    }
    assert_eq!(usage(tg, "alice"), [("per_minute".to_string(), 60, 7, 53)]);
    // Reading consumes nothing, however often.
    for _ in 0..5 {
        assert_eq!(usage(tg, "alice")[0].2, 7);
    }
    assert_eq!(send(tg, Some("free-demo-key"), None), 200);
    assert_eq!(usage(tg, "alice")[0].2, 8);

    // Two limits: tina is limited after 3; both limits are listed by name.
    for _ in 0..5 {
        send(tg, Some("tight-secret-key"), None);
    }
    let tina = usage(tg, "tina");
    assert_eq!(
        tina,
        [
            ("per_minute".to_string(), 3, 3, 0),
            ("hourly".to_string(), 100, 3, 97)
        ]
    );
    // Reset: 204, then the full budget.
    let (status, _, _) = admin(tg, "DELETE", "/v1/keys/tina/usage", None);
    assert_eq!(status, 204);
    assert_eq!(usage(tg, "tina")[0].2, 0);
    let codes: Vec<u16> = (0..4)
        .map(|_| send(tg, Some("tight-secret-key"), None))
        .collect();
    assert_eq!(codes, [200, 200, 200, 429]);
    // Unknown ids: 404 problem+json, for reads and resets.
    for (m, p) in [
        ("GET", "/v1/keys/nobody"),
        ("DELETE", "/v1/keys/nobody/usage"),
    ] {
        let (status, body, ct) = admin(tg, m, p, None);
        assert_eq!(status, 404, "{m} {p}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["status"], 404);
    }
    assert!(tg
        .logs()
        .contains("usage of key id 'tina' cleared by 127.0.0.1"));
}

#[test]
fn usage_on_the_in_process_store() {
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(None, &echo.addr()));
    usage_is_exact_read_only_and_resettable(&tg);
}

#[test]
fn usage_on_redis() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(Some(&redis.url()), &echo.addr()));
    // The first admin call comes before any request has made the shared connection.
    assert_eq!(usage(&tg, "alice")[0].2, 0);
    usage_is_exact_read_only_and_resettable(&tg);
    // Reset removed tina's keys from Redis; alice's are still there.
    let keys = redis.cli(&["--scan"]);
    assert!(keys.lines().count() >= 1, "{keys}");
    assert!(!keys.contains("tight-secret-key") && !keys.contains("free-demo-key"));
}

#[test]
fn usage_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let echo = Echo::start();
    let y = config(None, &echo.addr())
        .redis(Redis::cluster(&cluster.urls()).timeout_ms(500))
        .to_yaml();
    let tg = Tollgate::start(&y);
    usage_is_exact_read_only_and_resettable(&tg);
}

#[test]
fn the_top_list_names_the_heaviest_abusers_first() {
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(None, &echo.addr()));
    // tina: 3 allowed, 27 limited. One IP: 5 allowed, 15 limited. 30 IPs: 1 limited each.
    for _ in 0..30 {
        send(&tg, Some("tight-secret-key"), None);
    }
    for _ in 0..20 {
        send(&tg, None, Some("10.9.9.9"));
    }
    for i in 0..30 {
        for _ in 0..6 {
            send(&tg, None, Some(&format!("10.1.0.{i}")));
        }
    }
    let (status, body, _) = admin(&tg, "GET", "/v1/top?n=3&window=60s", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window_s"], 60);
    let top = body["top"].as_array().expect("top");
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["identity"], "tina");
    assert_eq!(top[0]["limited"], 27);
    assert_eq!(top[1]["identity"], "ip:10.9.9.9");
    assert_eq!(top[1]["limited"], 15);
    assert_eq!(top[2]["limited"], 1);
    // Defaults: n=10; bad parameters are a 400 problem.
    let (_, body, _) = admin(&tg, "GET", "/v1/top", None);
    assert_eq!(body["top"].as_array().map(Vec::len), Some(10));
    let (status, _, ct) = admin(&tg, "GET", "/v1/top?n=500", None);
    assert_eq!((status, ct.as_str()), (400, "application/problem+json"));
    // The gauge mirrors the list with at most 20 series, 32 identities limited.
    let metrics = tg.metrics();
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_top_limited{"))
        .count();
    assert_eq!(series, 20, "{metrics}");
    assert_eq!(
        metric_value(&metrics, "tollgate_top_limited{identity=\"tina\"}"),
        27.0
    );
    assert!(!metrics.contains("tight-secret-key"));
}

#[test]
fn the_config_in_force_is_described_without_a_key() {
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(None, &echo.addr()));
    let (status, body, _) = admin(&tg, "GET", "/v1/config", None);
    assert_eq!(status, 200);
    assert_eq!(body["generation"], 1);
    let bytes = std::fs::read(tg.config_path()).expect("config");
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&bytes))
    };
    assert_eq!(body["sha256"], digest);
    assert!(body["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("tollgate.yaml")));
    let at = body["loaded_at"].as_str().expect("loaded_at");
    assert!(
        at.len() >= 20 && at.ends_with('Z') && at.contains('T'),
        "{at}"
    );
    let text = body.to_string();
    assert!(!text.contains("free-demo-key") && !text.contains("tight-secret-key"));
    // A reload bumps the generation.
    tg.write_config(
        &config(None, &echo.addr())
            .tier("free", &[limit(61, "60s")])
            .to_yaml(),
    );
    tg.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || {
        admin(&tg, "GET", "/v1/config", None).1["generation"] == 2
    }));
}

#[test]
fn a_token_guards_v1_and_leaves_health_and_metrics_open() {
    let echo = Echo::start();
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(TOKEN.as_bytes()))
    };
    let tg = Tollgate::start(
        &config(None, &echo.addr())
            .admin_token_sha256(&digest)
            .to_yaml(),
    );
    for path in ["/v1/keys/alice", "/v1/top", "/v1/config"] {
        let (status, body, ct) = admin(&tg, "GET", path, None);
        assert_eq!(
            (status, ct.as_str()),
            (401, "application/problem+json"),
            "{path}"
        );
        assert_eq!(body["status"], 401);
        assert_eq!(
            admin(&tg, "GET", path, Some("wrong-token")).0,
            401,
            "{path}"
        );
        assert_eq!(admin(&tg, "GET", path, Some(TOKEN)).0, 200, "{path}");
    }
    assert_eq!(admin(&tg, "DELETE", "/v1/keys/alice/usage", None).0, 401);
    assert_eq!(
        admin(&tg, "DELETE", "/v1/keys/alice/usage", Some(TOKEN)).0,
        204
    );
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(admin(&tg, "GET", path, None).0, 200, "{path}");
    }
    let logs = tg.logs();
    assert!(logs.contains("bearer token presented: true"));
    assert!(!logs.contains(TOKEN) && !tg.metrics().contains(TOKEN));
}

#[test]
fn the_environment_token_wins_over_the_config() {
    let echo = Echo::start();
    let tg = Tollgate::start_with_env(
        &config(None, &echo.addr())
            .admin_token_sha256(&"ab".repeat(32))
            .to_yaml(),
        &[("TOLLGATE_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(admin(&tg, "GET", "/v1/config", Some(TOKEN)).0, 200);
    assert_eq!(admin(&tg, "GET", "/v1/config", None).0, 401);
    let (_, body, _) = admin(&tg, "GET", "/v1/nothing-here", Some(TOKEN));
    assert_eq!(body["status"], 404);
    assert!(!tg.logs().contains(TOKEN));
}
