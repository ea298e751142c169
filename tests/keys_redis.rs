//! `keys_redis`: a key in neither `keys:` nor the keys file is looked up in a Redis hash and
//! cached per replica for `ttl`. A key added with HSET works within the TTL; one deleted stops
//! working after it; with Redis stopped, a cached key keeps working and an unknown one is
//! refused.
pub mod common;

use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

const HASH: &str = "tollgate:keys";

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn start(redis: &RedisServer, echo: &Echo) -> Tollgate {
    let yaml = standard(Some(&redis.url()), &echo.addr())
        .keys_redis(HASH, "1s")
        .to_yaml();
    Tollgate::start(&yaml)
}

fn call(tg: &Tollgate, key: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", key)
        .send()
        .expect("request");
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_key_added_to_the_hash_works_within_the_ttl_and_a_deleted_one_stops() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = start(&redis, &echo);
    // Unknown, and cached as unknown.
    assert_eq!(call(&tg, "remote-key").0, 401);

    let field = digest("remote-key");
    redis.cli(&["HSET", HASH, &field, "rem\tfree"]);
    let added = Instant::now();
    assert!(
        wait_until(Duration::from_secs(4), || call(&tg, "remote-key").0 == 200),
        "the new key did not work within the TTL: {}",
        tg.logs()
    );
    assert!(
        added.elapsed() < Duration::from_secs(3),
        "within the 1 s TTL"
    );
    let (_, up) = call(&tg, "remote-key");
    assert_eq!(up["headers"]["x-tollgate-key-id"], "rem");
    assert_eq!(up["headers"]["x-tollgate-tier"], "free");
    let names = redis.cli(&["--scan", "--pattern", "tollgate:*"]);
    assert!(names.contains("id:rem"), "counted under its id: {names}");
    assert!(!names.contains("remote-key"), "{names}");

    redis.cli(&["HDEL", HASH, &field]);
    let deleted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(4), || call(&tg, "remote-key").0 == 401),
        "the deleted key still works"
    );
    assert!(
        deleted.elapsed() < Duration::from_secs(3),
        "within the 1 s TTL"
    );
    // Local keys never ask the hash.
    assert_eq!(call(&tg, "free-demo-key").0, 200);
}

#[test]
fn an_expired_or_malformed_hash_entry_is_refused() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = start(&redis, &echo);
    redis.cli(&[
        "HSET",
        HASH,
        &digest("old-key"),
        "old\tfree\t2020-01-01T00:00:00Z",
    ]);
    redis.cli(&["HSET", HASH, &digest("odd-key"), "odd"]);
    redis.cli(&["HSET", HASH, &digest("gold-key"), "gil\tgold"]);
    let (code, body) = call(&tg, "old-key");
    assert_eq!(code, 401);
    assert_eq!(body["detail"], "the API key has expired");
    assert_eq!(call(&tg, "odd-key").0, 401);
    assert_eq!(call(&tg, "gold-key").0, 401);
}

#[test]
fn with_redis_stopped_cached_keys_keep_working() {
    let mut redis = RedisServer::start();
    let echo = Echo::start();
    let tg = start(&redis, &echo);
    redis.cli(&["HSET", HASH, &digest("cached-key"), "cached\tfree"]);
    assert_eq!(call(&tg, "cached-key").0, 200);

    redis.kill();
    // Within the TTL and past it: the cached answer stands while Redis cannot give another
    // (the limit call fails open, the default).
    for _ in 0..3 {
        assert_eq!(call(&tg, "cached-key").0, 200);
        std::thread::sleep(Duration::from_millis(700));
    }
    // A key never seen follows `unknown_key: reject`.
    assert_eq!(call(&tg, "never-seen-key").0, 401);
    assert_eq!(call(&tg, "free-demo-key").0, 200);
}
