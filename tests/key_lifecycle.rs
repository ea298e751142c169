//! Key lifecycle: the counters belong to a key's id (several keys of one id share one budget,
//! and the store never sees key material), `expires` takes effect at its instant without a
//! reload, `disabled: true` is refused, and `tollgate -t` refuses keys of one id that name
//! different tiers.
pub mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Tier `small` (3 a minute) with keys `key-one` and `key-two` of one id, `rot`.
fn rotation(redis: &str, echo: &str) -> ConfigBuilder {
    standard(Some(redis), echo)
        .tier("small", &[limit(3, "60s")])
        .add_key(Key::new("rot", "key-one", "small"))
        .add_key(Key::new("rot", "key-two", "small"))
}

/// Status and body of `GET /api/x` with `key`.
fn call(tg: &Tollgate, key: &str) -> (u16, String) {
    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", key)
        .send()
        .expect("request");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn two_keys_of_one_id_share_its_counters() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&rotation(&redis.url(), &echo.addr()).to_yaml());

    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", "key-two")
        .send()
        .expect("request");
    assert_eq!(r.status(), 200);
    let up: serde_json::Value = r.json().expect("echo json");
    assert_eq!(up["headers"]["x-tollgate-key-id"], "rot");

    assert_eq!(call(&tg, "key-one").0, 200);
    assert_eq!(call(&tg, "key-one").0, 200);
    // Three requests of id `rot`, whichever key: the fourth is over, with either key.
    assert_eq!(call(&tg, "key-two").0, 429);
    assert_eq!(call(&tg, "key-one").0, 429);

    let names = redis.cli(&["--scan"]);
    assert!(names.contains("id:rot"), "counters are the id's: {names}");
    assert!(
        !names.contains("key-one") && !names.contains("key-two"),
        "no key material in the store: {names}"
    );
}

#[test]
fn a_key_expires_at_its_instant_without_a_reload() {
    let echo = Echo::start();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = chrono::DateTime::from_timestamp(now as i64 + 3, 0)
        .expect("instant")
        .to_rfc3339();
    let yaml = standard(None, &echo.addr())
        .add_key(Key::new("temp", "temp-key", "free").expires(&at))
        .add_key(Key::new("late", "past-key", "free").expires("2020-01-01T00:00:00Z"))
        .to_yaml();
    let tg = Tollgate::start(&yaml);
    assert_eq!(call(&tg, "temp-key").0, 200);
    let (code, body) = call(&tg, "past-key");
    assert_eq!(code, 401);
    assert!(body.contains("the API key has expired"), "{body}");

    assert!(
        wait_until(Duration::from_secs(8), || call(&tg, "temp-key").0 == 401),
        "the key still works after {at}"
    );
    let (_, body) = call(&tg, "temp-key");
    assert!(body.contains("the API key has expired"), "{body}");
    assert_eq!(tg.metric("tollgate_config_generation"), 1.0, "no reload");
    assert_eq!(call(&tg, "free-demo-key").0, 200);
}

#[test]
fn a_disabled_key_is_refused_and_its_ids_other_key_works() {
    let echo = Echo::start();
    let yaml = standard(None, &echo.addr())
        .add_key(Key::new("dora", "old-dora-key", "free").disabled())
        .add_key(Key::new("dora", "new-dora-key", "free"))
        .to_yaml();
    let tg = Tollgate::start(&yaml);
    let (code, body) = call(&tg, "old-dora-key");
    assert_eq!(code, 401);
    assert!(body.contains("the API key is disabled"), "{body}");
    assert!(!body.contains("old-dora-key"), "{body}");
    assert_eq!(call(&tg, "new-dora-key").0, 200);
}

#[test]
fn check_refuses_keys_of_one_id_naming_different_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tollgate.yaml");
    let yaml = standard(None, "127.0.0.1:9")
        .listen("127.0.0.1:1")
        .admin_listen("127.0.0.1:2")
        .add_key(Key::new("alice", "second-alice-key", "internal"))
        .to_yaml();
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(TOLLGATE)
        .arg("-t")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("tollgate -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("field `keys[2].tier`: keys of one id must name one tier: id 'alice' has 'internal' here and 'free' at keys[0]"),
        "{stderr}"
    );
    assert!(!stderr.contains("second-alice-key"), "{stderr}");
}
