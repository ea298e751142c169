//! Metrics, health endpoints, request ids, traceparent, the access log and the dashboard.
pub mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;

fn yaml(redis: &str, echo: &str) -> String {
    standard(Some(redis), echo)
        .tier("tight", &[limit(2, "60s").named("per_minute")])
        .key("tina", "tight-secret-key", "tight")
        .to_yaml()
}

fn send(tg: &Tollgate, path: &str, key: Option<&str>) -> u16 {
    let mut r = client().get(tg.url(path));
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    r.send().expect("request").status().as_u16()
}

#[test]
fn counters_match_a_known_mix_exactly() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));

    // 3 allowed for alice, 2 allowed + 3 limited for tina, 2 unknown keys, 2 unrouted,
    // 2 upstream 500s for alice.
    for _ in 0..3 {
        assert_eq!(send(&tg, "/api/ok", Some("free-demo-key")), 200);
    }
    let tina: Vec<u16> = (0..5)
        .map(|_| send(&tg, "/api/x", Some("tight-secret-key")))
        .collect();
    assert_eq!(tina, [200, 200, 429, 429, 429]);
    for _ in 0..2 {
        assert_eq!(send(&tg, "/api/x", Some("bogus-secret-key")), 401);
    }
    for _ in 0..2 {
        assert_eq!(
            send(&tg, "/nowhere/secret-path-abc", Some("free-demo-key")),
            404
        );
    }
    for _ in 0..2 {
        assert_eq!(send(&tg, "/api/x?status=500", Some("free-demo-key")), 500);
    }

    let m = tg.metrics();
    let v = |s: &str| metric_value(&m, s);
    assert_eq!(
        v(r#"tollgate_requests_total{code="200",route="/api/",tier="free"}"#),
        3.0
    );
    assert_eq!(
        v(r#"tollgate_requests_total{code="500",route="/api/",tier="free"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tollgate_requests_total{code="200",route="/api/",tier="tight"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tollgate_requests_total{code="429",route="/api/",tier="tight"}"#),
        3.0
    );
    assert_eq!(
        v(r#"tollgate_requests_total{code="401",route="/api/",tier="none"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tollgate_requests_total{code="404",route="unmatched",tier="none"}"#),
        2.0
    );
    assert_eq!(
        v(
            r#"tollgate_ratelimit_decisions_total{decision="limited",limit="per_minute",policy="tier",tier="tight"}"#
        ),
        3.0
    );
    assert_eq!(
        v(
            r#"tollgate_ratelimit_decisions_total{decision="allowed",limit="per_minute",policy="tier",tier="tight"}"#
        ),
        2.0
    );
    assert_eq!(
        v(
            r#"tollgate_ratelimit_decisions_total{decision="allowed",limit="per_minute",policy="tier",tier="free"}"#
        ),
        5.0
    );
    assert_eq!(
        v(r#"tollgate_key_requests_total{decision="limited",key_id="tina"}"#),
        3.0
    );
    assert_eq!(
        v(r#"tollgate_key_requests_total{decision="allowed",key_id="tina"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tollgate_key_requests_total{decision="allowed",key_id="alice"}"#),
        5.0
    );
    assert_eq!(
        v(r#"tollgate_request_duration_seconds_count{route="/api/"}"#),
        12.0
    );
    assert_eq!(
        v(r#"tollgate_upstream_duration_seconds_count{upstream="echo"}"#),
        7.0
    );
    // Over-limit cache answers repeated denials locally, so store checks <= decisions.
    let checks = v(r#"tollgate_store_duration_seconds_count{op="check"}"#);
    assert!((8.0..=10.0).contains(&checks), "store checks {checks}");
    assert_eq!(v("tollgate_config_generation"), 1.0);
    assert_eq!(v(r#"tollgate_config_reloads_total{result="success"}"#), 1.0);
    assert!(v("process_resident_memory_bytes") > 0.0);

    // No label value carries a key or a raw path.
    for secret in [
        "free-demo-key",
        "tight-secret-key",
        "bogus-secret-key",
        "secret-path-abc",
        "/api/ok",
        "status=500",
    ] {
        assert!(!m.contains(secret), "{secret} appears in /metrics");
    }
}

#[test]
fn promtool_accepts_the_exposition() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    send(&tg, "/api/x", Some("free-demo-key"));
    send(&tg, "/api/x", Some("tight-secret-key"));
    let m = tg.metrics();
    let path = tg.dir.path().join("metrics.txt");
    std::fs::write(&path, &m).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed: {report}");
    assert!(report.trim().is_empty(), "promtool warnings: {report}");
}

#[test]
fn readyz_follows_the_store() {
    let mut redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let ready = || http_get(tg.admin_port, "/readyz").map(|(s, _)| s);
    assert_eq!(http_get(tg.admin_port, "/healthz").unwrap().0, 200);
    assert!(wait_until(Duration::from_secs(5), || ready() == Some(200)));
    redis.kill();
    assert!(wait_until(Duration::from_secs(5), || ready() == Some(503)));
    let (_, body) = http_get(tg.admin_port, "/readyz").unwrap();
    assert!(body.contains("unreachable"), "{body}");
    assert_eq!(http_get(tg.admin_port, "/healthz").unwrap().0, 200);
    redis.restart();
    assert!(wait_until(Duration::from_secs(10), || ready() == Some(200)));
}

fn access_lines(tg: &Tollgate) -> Vec<serde_json::Value> {
    tg.logs()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("every access log line is JSON"))
        .collect()
}

#[test]
fn request_ids_reach_upstream_client_and_access_log() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));

    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", "free-demo-key")
        .header("x-request-id", "client-id-123")
        .header("traceparent", tp)
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-123");
    let up: serde_json::Value = r.json().unwrap();
    assert_eq!(up["headers"]["x-request-id"], "client-id-123");
    assert_eq!(up["headers"]["traceparent"], tp);

    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", "free-demo-key")
        .header("x-request-id", "bad id with spaces")
        .send()
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let up: serde_json::Value = r.json().unwrap();
    assert_eq!(up["headers"]["x-request-id"], generated.as_str());
    let started = up["headers"]["traceparent"].as_str().unwrap();
    assert!(
        started.starts_with("00-") && started.len() == 55,
        "{started}"
    );

    // Answers tollgate writes itself carry the id too.
    let r = client().get(tg.url("/nowhere")).send().unwrap();
    let id404 = r.headers()["x-request-id"].to_str().unwrap().to_string();

    assert!(wait_until(Duration::from_secs(3), || access_lines(&tg)
        .len()
        >= 3));
    let lines = access_lines(&tg);
    assert_eq!(lines.len(), 3, "one line per request");
    assert_eq!(lines[0]["request_id"], "client-id-123");
    assert_eq!(lines[0]["key_id"], "alice");
    assert_eq!(lines[0]["tier"], "free");
    assert_eq!(lines[0]["route"], "/api/");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["decision"], "allowed");
    assert_eq!(lines[0]["remaining"], 59);
    assert_eq!(lines[0]["upstream"], "echo");
    assert!(lines[0]["upstream_ms"].as_f64().is_some());
    assert!(lines[0]["total_ms"].as_f64().is_some());
    assert_eq!(lines[1]["request_id"], generated.as_str());
    assert_eq!(lines[2]["request_id"], id404.as_str());
    assert_eq!(lines[2]["status"], 404);
    assert!(!tg.logs().contains("free-demo-key"));
}

#[test]
fn access_log_can_be_turned_off() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let y = yaml(&redis.url(), &echo.addr()) + "access_log: { enabled: false }\n";
    let tg = Tollgate::start(&y);
    for _ in 0..3 {
        send(&tg, "/api/x", Some("free-demo-key"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(access_lines(&tg).is_empty());
}

#[test]
fn dashboard_queries_only_metrics_that_exist() {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/tollgate-dashboard.json"
    ))
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&raw).expect("valid JSON");
    assert!(dash["panels"].as_array().is_some_and(|p| !p.is_empty()));
    assert!(dash["title"].is_string() && dash["schemaVersion"].is_number());

    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    // Exercise every series family once so that labelled metrics are exposed.
    send(&tg, "/api/x", Some("free-demo-key"));
    for _ in 0..3 {
        send(&tg, "/api/x", Some("tight-secret-key"));
    }
    let dead = yaml(&redis.url(), "127.0.0.1:1");
    tg.write_config(&dead);
    tg.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(400));
    send(&tg, "/api/x", Some("free-demo-key"));
    let mut r2 = RedisServer::start();
    let port = r2.port;
    r2.kill();
    tg.write_config(&yaml(&format!("redis://127.0.0.1:{port}/0"), &echo.addr()));
    tg.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(400));
    send(&tg, "/api/x", Some("free-demo-key"));
    let m = tg.metrics();
    let exposed: BTreeSet<&str> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let mut queried = BTreeSet::new();
    for word in raw.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("tollgate_") || word.starts_with("process_") {
            queried.insert(word.to_string());
        }
    }
    assert!(!queried.is_empty());
    for q in &queried {
        // A histogram's base name (in a description) stands for its _bucket series.
        let found =
            exposed.contains(q.as_str()) || exposed.contains(format!("{q}_bucket").as_str());
        assert!(found, "dashboard queries {q}, not exposed");
    }
}
