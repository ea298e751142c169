//! The rate limiter seen from a client: 429 answers, headers, keep-alive, multi-limit tiers,
//! cost, shadow mode, and exact counts under concurrency across one and two proxies.
pub mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn yaml(redis: &str, echo: &str) -> String {
    // A generous budget and fail_closed: on a loaded CI box a store call that misses its
    // budget must show up as a 503, never as a silent fail-open admission.
    standard(Some(redis), echo)
        .with_redis(|r| r.timeout_ms(2000).on_error("fail_closed"))
        .route(Route::new("/costly/", "echo").cost(3))
        .tier("tight", &[limit(3, "60s").named("per_minute")])
        .tier("short", &[limit(2, "3s").named("short")])
        .tier(
            "multi",
            &[
                limit(2, "1s").named("burst").algorithm("token_bucket"),
                limit(5, "60s").named("per_minute"),
            ],
        )
        .shadow_tier("shadowed", &[limit(2, "60s").named("per_minute")])
        .tier("hundred", &[limit(100, "60s").named("per_minute")])
        .key("tight", "tight-key", "tight")
        .key("short", "short-key", "short")
        .key("multi", "multi-key", "multi")
        .key("shadow", "shadow-key", "shadowed")
        .key("hundred", "hundred-key", "hundred")
        .to_yaml()
}

fn get(tg: &Tollgate, path: &str, key: &str) -> reqwest::blocking::Response {
    client()
        .get(tg.url(path))
        .header("x-api-key", key)
        .send()
        .expect("request")
}

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn limited_request_gets_429_with_headers_and_problem_body() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));

    for expected_remaining in [2, 1, 0] {
        let r = get(&tg, "/api/x", "tight-key");
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-policy"), "\"per_minute\";q=3;w=60");
        assert_eq!(
            header(&r, "ratelimit"),
            format!("\"per_minute\";r={expected_remaining};t=60")
        );
        assert_eq!(header(&r, "x-ratelimit-limit"), "3");
        assert_eq!(
            header(&r, "x-ratelimit-remaining"),
            expected_remaining.to_string()
        );
    }
    let r = get(&tg, "/api/x", "tight-key");
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((59..=60).contains(&retry), "retry-after {retry}");
    assert!(header(&r, "ratelimit").starts_with("\"per_minute\";r=0;t="));
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    assert!(!header(&r, "x-request-id").is_empty());
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["status"], 429);
    assert_eq!(body["detail"], "limit per_minute of tier tight exceeded");
    assert_eq!(body["violated-policies"], serde_json::json!(["per_minute"]));
    let retry_ms = body["retry_after_ms"].as_u64().unwrap();
    assert!(retry_ms > 58_000 && retry_ms <= 60_000, "{retry_ms}");
}

#[test]
fn retry_after_is_the_real_time_until_a_slot_frees() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));

    let t0 = Instant::now();
    assert_eq!(get(&tg, "/api/x", "short-key").status(), 200);
    assert_eq!(get(&tg, "/api/x", "short-key").status(), 200);
    let r = get(&tg, "/api/x", "short-key");
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    let real = 3.0 - t0.elapsed().as_secs_f64();
    assert!(
        (retry as f64 - real).abs() <= 1.0,
        "Retry-After {retry} vs real {real:.2}"
    );
    // Just before the slot frees: still limited. Just after: admitted.
    let body: serde_json::Value = r.json().unwrap();
    let wait = Duration::from_millis(body["retry_after_ms"].as_u64().unwrap());
    std::thread::sleep(wait + Duration::from_millis(50));
    assert_eq!(get(&tg, "/api/x", "short-key").status(), 200);
}

/// Sends one request on `s` and reads one response; returns (status, headers+body text).
fn roundtrip(s: &mut TcpStream, path: &str, key: &str) -> (u16, String) {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nx-api-key: {key}\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, text);
            }
        }
    }
}

#[test]
fn connection_stays_open_after_a_429() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let mut s = TcpStream::connect(("127.0.0.1", tg.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        assert_eq!(roundtrip(&mut s, "/api/x", "tight-key").0, 200);
    }
    let (status, text) = roundtrip(&mut s, "/api/x", "tight-key");
    assert_eq!(status, 429);
    assert!(!text.to_ascii_lowercase().contains("connection: close"));
    // The same connection carries the next request.
    assert_eq!(roundtrip(&mut s, "/api/x", "tight-key").0, 429);
    assert_eq!(roundtrip(&mut s, "/api/x", "free-demo-key").0, 200);
}

#[test]
fn multi_limit_tier_checks_every_limit() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));

    assert_eq!(get(&tg, "/api/x", "multi-key").status(), 200);
    assert_eq!(get(&tg, "/api/x", "multi-key").status(), 200);
    let r = get(&tg, "/api/x", "multi-key");
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["violated-policies"], serde_json::json!(["burst"]));

    // The burst refills (one token per 500 ms); the per-minute limit (5) then binds.
    let mut admitted = 2;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while Instant::now() < deadline && admitted < 6 {
        std::thread::sleep(Duration::from_millis(600));
        let r = get(&tg, "/api/x", "multi-key");
        if r.status() == 200 {
            admitted += 1;
        } else {
            last = Some(r.json::<serde_json::Value>().unwrap());
            if admitted == 5 {
                break;
            }
        }
    }
    assert_eq!(admitted, 5, "the per-minute limit admits exactly 5");
    let last = last.expect("a 429 after the per-minute limit");
    assert_eq!(last["violated-policies"], serde_json::json!(["per_minute"]));
    // A denied request is recorded in no limit: the burst still has room.
    let r = get(&tg, "/api/x", "multi-key");
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["violated-policies"],
        serde_json::json!(["per_minute"])
    );
}

#[test]
fn route_cost_charges_several_units() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    // tight: 3 per minute; /costly/ costs 3.
    let r = get(&tg, "/costly/x", "tight-key");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    assert_eq!(get(&tg, "/costly/x", "tight-key").status(), 429);
    assert_eq!(get(&tg, "/api/x", "tight-key").status(), 429);
}

#[test]
fn shadow_tier_reports_but_never_blocks() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    for _ in 0..5 {
        assert_eq!(get(&tg, "/api/x", "shadow-key").status(), 200);
    }
    let m = tg.metrics();
    let series = |d: &str| {
        metric_value(
            &m,
            &format!(
                "tollgate_ratelimit_decisions_total{{decision=\"{d}\",limit=\"per_minute\",policy=\"tier\",tier=\"shadowed\"}}"
            ),
        )
    };
    assert_eq!(series("allowed"), 2.0);
    assert_eq!(series("shadow_limited"), 3.0);
}

/// 64 concurrent clients send `total` requests for one key across `proxies`.
fn hammer(proxies: &[&Tollgate], total: usize) -> (usize, usize, usize) {
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Vec<String> = proxies.iter().map(|p| p.url("/api/x")).collect();
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (ok, limited, other, next) =
                (ok.clone(), limited.clone(), other.clone(), next.clone());
            let url = urls[i % urls.len()].clone();
            std::thread::spawn(move || {
                let c = client();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    match c.get(&url).header("x-api-key", "hundred-key").send() {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) if r.status() == 429 => limited.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    )
}

#[test]
fn exactly_the_limit_is_admitted_under_concurrency() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let (ok, limited, other) = hammer(&[&tg], 2000);
    assert_eq!((ok, limited, other), (100, 1900, 0));
}

#[test]
fn two_proxies_share_one_exact_limit() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let a = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let b = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let (ok, limited, other) = hammer(&[&a, &b], 2000);
    assert_eq!((ok, limited, other), (100, 1900, 0));
}
