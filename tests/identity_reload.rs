//! Identity (keys, anonymous callers, X-Forwarded-For trust) and hot reload (SIGHUP, file
//! edits, invalid edits, tier moves, reloads under load), plus the no-raw-key guarantee.
pub mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const SECRET_KEYS: [&str; 3] = ["free-demo-key", "internal-demo-key", "small-secret-key"];

/// The standard gateway plus tier `small` (7 a minute) and its key `sam`.
fn builder(redis: &str, echo: &str) -> ConfigBuilder {
    standard(Some(redis), echo)
        .tier("small", &[limit(7, "60s")])
        .key("sam", "small-secret-key", "small")
}

fn base(redis: &str, echo: &str) -> String {
    builder(redis, echo).to_yaml()
}

/// [`base`] with tier `small` allowing `requests` a minute.
fn small(redis: &str, echo: &str, requests: u64) -> String {
    builder(redis, echo)
        .tier("small", &[limit(requests, "60s")])
        .to_yaml()
}

fn echo_json(r: reqwest::blocking::Response) -> serde_json::Value {
    r.json().expect("echo json")
}

fn status(tg: &Tollgate, key: Option<&str>, xff: Option<&str>) -> u16 {
    let mut req = client().get(tg.url("/api/x"));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    req.send().expect("request").status().as_u16()
}

#[test]
fn keys_tiers_and_anonymous_callers() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));

    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", "free-demo-key")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let up = echo_json(r);
    assert_eq!(up["headers"]["x-tollgate-tier"], "free");
    assert_eq!(up["headers"]["x-tollgate-key-id"], "alice");

    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", "nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );

    let r = client().get(tg.url("/api/x")).send().unwrap();
    assert_eq!(r.status(), 200);
    let up = echo_json(r);
    assert_eq!(up["headers"]["x-tollgate-tier"], "anonymous");
    assert!(up["headers"].get("x-tollgate-key-id").is_none());

    // anonymous: reject → 401 for callers without a key.
    tg.write_config(
        &builder(&redis.url(), &echo.addr())
            .anonymous_reject()
            .to_yaml(),
    );
    tg.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || status(
        &tg, None, None
    ) == 401));
    assert_eq!(status(&tg, Some("free-demo-key"), None), 200);
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    // Untrusted: every spoofed X-Forwarded-For still lands in the socket peer's bucket (5/min).
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    let codes: Vec<u16> = (0..7)
        .map(|i| status(&tg, None, Some(&format!("203.0.113.{i}"))))
        .collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);

    // Trusted loopback proxy: each client address gets its own bucket.
    let trusted = builder(&redis.url(), &echo.addr())
        .trusted_proxies(&["127.0.0.1/32"])
        .to_yaml();
    let tg2 = Tollgate::start(&trusted);
    for i in 0..7 {
        assert_eq!(
            status(&tg2, None, Some(&format!("198.51.100.{i}"))),
            200,
            "client {i}"
        );
    }
    // A client cannot escape by prepending addresses: the right-most untrusted hop counts.
    for i in 0..5 {
        assert_eq!(
            status(&tg2, None, Some(&format!("10.9.9.{i}, 198.51.100.77"))),
            200
        );
    }
    assert_eq!(status(&tg2, None, Some("10.9.9.99, 198.51.100.77")), 429);
}

#[test]
fn sighup_applies_a_lowered_limit() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    for _ in 0..3 {
        assert_eq!(status(&tg, Some("small-secret-key"), None), 200);
    }
    let gen_before = tg.metric("tollgate_config_generation");
    tg.write_config(&small(&redis.url(), &echo.addr(), 4));
    tg.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || {
        tg.metric("tollgate_config_generation") > gen_before
    }));
    assert_eq!(status(&tg, Some("small-secret-key"), None), 200);
    assert_eq!(status(&tg, Some("small-secret-key"), None), 429);
}

#[test]
fn a_file_edit_takes_effect_within_two_seconds() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    assert_eq!(status(&tg, Some("small-secret-key"), None), 200);
    let edited = Instant::now();
    tg.write_config(&small(&redis.url(), &echo.addr(), 1));
    assert!(wait_until(Duration::from_secs(2), || status(
        &tg,
        Some("small-secret-key"),
        None
    ) == 429));
    eprintln!("edit took effect after {:?}", edited.elapsed());
}

#[test]
fn a_symlink_swap_is_picked_up() {
    // Kubernetes ConfigMaps: tollgate.yaml -> ..data/tollgate.yaml, ..data -> ..<timestamp>.
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    let dir = tg.dir.path();
    let write_version = |name: &str, yaml: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tollgate.yaml"), tg.fill(yaml)).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    write_version("..v1", &base(&redis.url(), &echo.addr()));
    let link_tmp = dir.join("link.tmp");
    std::os::unix::fs::symlink("..data/tollgate.yaml", &link_tmp).unwrap();
    std::fs::rename(&link_tmp, tg.config_path()).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(status(&tg, Some("small-secret-key"), None), 200);
    write_version("..v2", &small(&redis.url(), &echo.addr(), 1));
    assert!(wait_until(Duration::from_secs(3), || status(
        &tg,
        Some("small-secret-key"),
        None
    ) == 429));
}

#[test]
fn an_invalid_edit_keeps_the_old_config_and_counts_a_failure() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    let failures = || tg.metric("tollgate_config_reloads_total{result=\"failure\"}");
    assert_eq!(failures(), 0.0);
    tg.write_config(
        &builder(&redis.url(), &echo.addr())
            .key("sam", "small-secret-key", "nosuch")
            .to_yaml(),
    );
    assert!(wait_until(Duration::from_secs(3), || failures() == 1.0));
    assert_eq!(status(&tg, Some("small-secret-key"), None), 200);
    let logs = tg.logs();
    assert!(
        logs.contains("field `keys[2].tier`") && logs.contains("unknown tier 'nosuch'"),
        "the log names the field: {logs}"
    );
    // A listener change is refused too, with a pointer to the upgrade.
    let moved = builder(&redis.url(), &echo.addr())
        .listen("127.0.0.1:1")
        .to_yaml();
    tg.write_config(&moved);
    assert!(wait_until(Duration::from_secs(3), || failures() == 2.0));
    assert!(tg.logs().contains("run a graceful upgrade"));
    assert_eq!(status(&tg, Some("small-secret-key"), None), 200);
}

#[test]
fn a_key_moved_between_tiers_keeps_its_usage() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    // alice: free (60/min, limit named per_minute by its window). Use 5.
    for _ in 0..5 {
        assert_eq!(status(&tg, Some("free-demo-key"), None), 200);
    }
    // Move alice to `small` (7/min, also per_minute): 2 left, not 7.
    tg.write_config(
        &builder(&redis.url(), &echo.addr())
            .key("alice", "free-demo-key", "small")
            .to_yaml(),
    );
    tg.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || {
        tg.metric("tollgate_config_generation") >= 2.0
    }));
    let codes: Vec<u16> = (0..3)
        .map(|_| status(&tg, Some("free-demo-key"), None))
        .collect();
    assert_eq!(codes, [200, 200, 429]);
}

#[test]
fn fifty_reloads_under_load_fail_no_request() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    let pid = tg.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, sent, failed, url) =
                (stop.clone(), sent.clone(), failed.clone(), tg.url("/api/x"));
            std::thread::spawn(move || {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let ok = c
                        .get(&url)
                        .header("x-api-key", "internal-demo-key")
                        .send()
                        .is_ok_and(|r| r.status() == 200);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Invalid: a window without a unit.
    let bad = builder(&redis.url(), &echo.addr())
        .tier("small", &[limit(7, "sixty")])
        .to_yaml();
    for i in 0..50 {
        if i % 2 == 0 {
            // Valid, and different each time so every one is a real swap.
            tg.write_config(&small(&redis.url(), &echo.addr(), 7 + i));
        } else {
            tg.write_config(&bad);
        }
        tg.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(60));
    }
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.join().unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{sent} requests during 50 reloads, {failed} failed");
    assert!(sent > 100, "the load ran: {sent}");
    assert_eq!(failed, 0);
    assert_eq!(tg.pid(), pid);
    let mut tg = tg;
    assert!(tg.is_alive());
    assert!(tg.metric("tollgate_config_reloads_total{result=\"success\"}") >= 25.0);
    assert!(tg.metric("tollgate_config_reloads_total{result=\"failure\"}") >= 25.0);
}

#[test]
fn no_raw_key_in_logs_metrics_or_redis() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&base(&redis.url(), &echo.addr()));
    for key in SECRET_KEYS.iter().chain(["unknown-secret-key"].iter()) {
        for _ in 0..3 {
            status(&tg, Some(key), None);
        }
    }
    // An invalid reload that mentions a key field, to exercise the error path.
    tg.write_config(
        &builder(&redis.url(), &echo.addr())
            .key_entry(Key::new("sam", "small-secret-key", "small").sha256("zz"))
            .to_yaml(),
    );
    tg.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let logs = tg.logs();
    let metrics = tg.metrics();
    let keys = redis.cli(&["--scan"]);
    assert!(!keys.trim().is_empty(), "the limiter wrote keys");
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "logs captured"
    );
    for secret in SECRET_KEYS.iter().chain(["unknown-secret-key"].iter()) {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!metrics.contains(secret), "{secret} leaked into /metrics");
        assert!(
            !keys.contains(secret),
            "{secret} leaked into Redis keys: {keys}"
        );
    }
}
