//! Redis failures under load: killed (SIGKILL, then restarted empty on the same port) and
//! frozen (SIGSTOP, then SIGCONT), for each `on_error` policy; tollgate started while Redis is
//! down; and the over-limit cache's two promises (answers locally, never admits more).
//!
//! Bounds checked on every request of a run: the status is one the policy allows, and the
//! latency stays under `timeout_ms` plus a margin for this shared, loaded machine.

pub mod common;

use std::time::{Duration, Instant};

use common::load::{self, start_load, LoadSpec, Sample};
use common::*;

const TIMEOUT_MS: u64 = 100;
/// Scheduling slack on a 2-core machine shared with other builds and tests.
const MARGIN_MS: u64 = 400;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    FailOpen,
    FailClosed,
    Local,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::FailOpen => "fail_open",
            Policy::FailClosed => "fail_closed",
            Policy::Local => "local",
        }
    }

    /// The decision label a request takes while the store is away.
    fn fallback_decision(self) -> &'static str {
        match self {
            Policy::FailOpen => "error_allowed",
            Policy::FailClosed => "error_denied",
            Policy::Local => "local",
        }
    }
}

/// A gateway config with the given Redis failure settings and the tiers these tests use:
/// `load` (never reached), `tiny` (3 a minute), `short` (4 per 3 s) and `exact` (20 a minute).
fn yaml(redis_url: &str, echo: &str, policy: Policy, over_limit_cache: bool) -> String {
    ConfigBuilder::new()
        .redis(
            Redis::url(redis_url)
                .timeout_ms(TIMEOUT_MS)
                .on_error(policy.name())
                .breaker(3, "1s")
                .over_limit_cache(over_limit_cache),
        )
        .upstream(
            Upstream::new("echo", &[echo])
                .health_interval("200ms")
                .read_timeout("5s"),
        )
        .route(Route::new("/api/", "echo"))
        .anonymous_tier("anonymous")
        .tier("anonymous", &[limit(5, "60s")])
        .tier("load", &[limit(1_000_000, "60s").algorithm("fixed_window")])
        .tier("tiny", &[limit(3, "60s")])
        .tier("short", &[limit(4, "3s")])
        .tier("exact", &[limit(20, "60s")])
        .key("loader", "load-key", "load")
        .key("tiny", "tiny-key", "tiny")
        .key("tiny2", "tiny-key-2", "tiny")
        .key("short", "short-key", "short")
        .key("exact", "exact-key", "exact")
        .key("exact2", "exact-key-2", "exact")
        .to_yaml()
}

fn get(tg: &Tollgate, key: &str) -> Response {
    let mut c = Conn::connect(tg.port, Duration::from_secs(5)).expect("connect");
    c.get(
        "/api/x",
        &[("x-api-key".to_string(), key.to_string())],
        true,
    )
    .unwrap_or_else(|e| panic!("request failed: {e:?}"))
}

fn decisions(tg: &Tollgate, tier: &str, decision: &str) -> f64 {
    metric_sum(
        &tg.metrics(),
        "tollgate_ratelimit_decisions_total",
        &[("tier", tier), ("decision", decision)],
    )
}

fn store_checks(tg: &Tollgate) -> f64 {
    metric_sum(
        &tg.metrics(),
        "tollgate_store_duration_seconds_count",
        &[("op", "check")],
    )
}

fn circuit_open_count(tg: &Tollgate) -> f64 {
    metric_sum(
        &tg.metrics(),
        "tollgate_store_errors_total",
        &[("kind", "circuit_open")],
    )
}

/// Sends `tiny-key` requests until one is refused by the store itself (not the local fallback,
/// not the over-limit cache of an earlier denial): the time that took, or None.
fn time_until_store_limits(tg: &Tollgate, key: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let before = decisions(tg, "tiny", "limited");
    while start.elapsed() < within {
        let r = get(tg, key);
        if r.status == 429 && decisions(tg, "tiny", "limited") > before {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    Kill,
    Freeze,
}

fn describe(samples: &[Sample]) -> String {
    let errs: Vec<_> = samples
        .iter()
        .filter(|s| s.err.is_some())
        .take(5)
        .map(|s| format!("{:?}: {:?}", s.at, s.err))
        .collect();
    format!(
        "{} requests, statuses {:?}, retried stale connections {}, max latency {:?}, errors {errs:?}",
        samples.len(),
        load::status_counts(samples),
        samples.iter().filter(|s| s.retried).count(),
        load::max_latency(samples)
    )
}

fn outage_under_load(policy: Policy, outage: Outage) {
    let mut redis = RedisServer::start_with(free_port(), Vec::new());
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr(), policy, true));
    assert_eq!(get(&tg, "load-key").status, 200, "warm-up");

    let spec = LoadSpec::new(tg.port, "/api/load", "load-key");
    let load = start_load(spec);
    std::thread::sleep(Duration::from_millis(800));

    let t_out = load.started.elapsed();
    match outage {
        Outage::Kill => redis.kill(),
        Outage::Freeze => redis.freeze(),
    }
    std::thread::sleep(Duration::from_millis(3000));
    let breaker_rejections_during = circuit_open_count(&tg);
    let t_back_start = load.started.elapsed();
    match outage {
        Outage::Kill => redis.restart(),
        Outage::Freeze => redis.thaw(),
    }
    let t_back = load.started.elapsed();

    // Limiting resumes: Redis (restarted empty, or thawed) refuses a key over its limit.
    let resumed = time_until_store_limits(&tg, "tiny-key", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(700));
    let samples = load.stop();
    let logs = tg.logs();
    let summary = describe(&samples);

    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= t_out && s.at < t_back)
        .collect();
    let max_during = during.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "[{policy:?} {outage:?}] {summary}; during outage: {} requests, max latency {max_during:?}; \
         redis back after {:?} (restart took {:?}); store limiting resumed after {resumed:?}",
        during.len(),
        t_back - t_out,
        t_back - t_back_start,
    );

    // 1. Nothing failed beyond what the policy says.
    for s in &samples {
        let ok = match policy {
            Policy::FailOpen | Policy::Local => s.status == 200,
            Policy::FailClosed => {
                s.status == 200
                    || (s.status == 503
                        && s.at + s.took >= t_out
                        && s.at < t_back + Duration::from_millis(2500))
            }
        };
        assert!(ok, "request {s:?} broke the {policy:?} policy; {summary}");
    }
    // 2. No request took longer than the store budget plus the margin.
    let bound = Duration::from_millis(TIMEOUT_MS + MARGIN_MS);
    for s in &samples {
        assert!(
            s.took < bound,
            "request {s:?} took longer than {bound:?}; {summary}"
        );
    }
    assert!(!during.is_empty(), "the load stalled during the outage");
    // 3. Limiting resumed within 2 s of Redis coming back.
    let resumed = resumed
        .unwrap_or_else(|| panic!("limiting did not resume after Redis came back; logs:\n{logs}"));
    assert!(
        resumed < Duration::from_secs(2),
        "limiting resumed only after {resumed:?}"
    );
    // 4. The policy's decision was counted.
    assert!(
        decisions(&tg, "load", policy.fallback_decision()) > 0.0,
        "no {} decision counted",
        policy.fallback_decision()
    );
    // 5. The breaker opened during the outage and closed again afterwards.
    assert!(
        breaker_rejections_during > 0.0,
        "the circuit breaker never opened"
    );
    assert!(
        logs.contains("circuit breaker closed"),
        "the breaker never closed; logs:\n{logs}"
    );
    if outage == Outage::Freeze {
        // Once open, only the probes (one per breaker_open) pay the timeout.
        let open_phase: Vec<&&Sample> = during
            .iter()
            .filter(|s| s.at >= t_out + Duration::from_millis(1200))
            .collect();
        let slow = open_phase
            .iter()
            .filter(|s| s.took >= Duration::from_millis(TIMEOUT_MS * 8 / 10))
            .count();
        eprintln!(
            "[{policy:?} {outage:?}] breaker-open phase: {} requests, {slow} at the timeout (probes)",
            open_phase.len()
        );
        assert!(open_phase.len() > 20, "too little traffic to judge");
        assert!(
            slow <= 6,
            "{slow} of {} requests paid the timeout while the breaker should be open",
            open_phase.len()
        );
    }
    // After recovery, the store decides again.
    let allowed_before = decisions(&tg, "load", "allowed");
    assert_eq!(get(&tg, "load-key").status, 200);
    assert!(decisions(&tg, "load", "allowed") > allowed_before);
}

#[test]
fn redis_killed_mid_load_fail_open() {
    outage_under_load(Policy::FailOpen, Outage::Kill);
}

#[test]
fn redis_killed_mid_load_fail_closed() {
    outage_under_load(Policy::FailClosed, Outage::Kill);
}

#[test]
fn redis_killed_mid_load_local() {
    outage_under_load(Policy::Local, Outage::Kill);
}

#[test]
fn redis_frozen_mid_load_fail_open() {
    outage_under_load(Policy::FailOpen, Outage::Freeze);
}

#[test]
fn redis_frozen_mid_load_fail_closed() {
    outage_under_load(Policy::FailClosed, Outage::Freeze);
}

#[test]
fn redis_frozen_mid_load_local() {
    outage_under_load(Policy::Local, Outage::Freeze);
}

/// Starts with nothing listening on the Redis port, checks the policy, then starts Redis there.
fn start_with_redis_down(policy: Policy) {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&url, &echo.addr(), policy, true));

    let (status, body) = http_get(tg.admin_port, "/readyz").expect("readyz");
    assert_eq!(status, 503, "/readyz with Redis down: {body}");

    match policy {
        Policy::FailOpen => {
            for _ in 0..5 {
                let r = get(&tg, "tiny-key");
                assert_eq!(r.status, 200, "{}", r.text());
            }
            assert!(decisions(&tg, "tiny", "error_allowed") >= 5.0);
        }
        Policy::FailClosed => {
            let r = get(&tg, "load-key");
            assert_eq!(r.status, 503, "{}", r.text());
            assert_eq!(
                r.header("content-type"),
                Some("application/problem+json"),
                "{r:?}"
            );
            let retry: u64 = r
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            assert!(retry >= 1);
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
            assert_eq!(body["status"], 503);
            assert!(decisions(&tg, "load", "error_denied") >= 1.0);
        }
        Policy::Local => {
            let statuses: Vec<u16> = (0..6).map(|_| get(&tg, "tiny-key").status).collect();
            assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "local limits");
            assert!(decisions(&tg, "tiny", "local") >= 6.0);
            let r = get(&tg, "tiny-key");
            assert!(r.header("retry-after").is_some(), "{r:?}");
        }
    }

    // Redis appears: /readyz turns 200 within a few seconds, and the store decides again.
    let _redis = RedisServer::start_with(port, Vec::new());
    let t0 = Instant::now();
    let ready = wait_until(Duration::from_secs(5), || {
        http_get(tg.admin_port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let took = t0.elapsed();
    eprintln!("[{policy:?}] /readyz turned 200 {took:?} after Redis started");
    assert!(ready, "/readyz stayed 503; logs:\n{}", tg.logs());

    let t0 = Instant::now();
    let decided = wait_until(Duration::from_secs(3), || {
        let before = decisions(&tg, "load", "allowed");
        get(&tg, "load-key").status == 200 && decisions(&tg, "load", "allowed") > before
    });
    eprintln!(
        "[{policy:?}] the store decided again {:?} after /readyz",
        t0.elapsed()
    );
    assert!(
        decided,
        "the store never decided again; logs:\n{}",
        tg.logs()
    );
    // And limits: a fresh key is refused by Redis after 3.
    let resumed = time_until_store_limits(&tg, "tiny-key-2", Duration::from_secs(3));
    assert!(resumed.is_some(), "Redis never limited tiny-key-2");
}

#[test]
fn starts_with_redis_down_fail_open() {
    start_with_redis_down(Policy::FailOpen);
}

#[test]
fn starts_with_redis_down_fail_closed() {
    start_with_redis_down(Policy::FailClosed);
}

#[test]
fn starts_with_redis_down_local() {
    start_with_redis_down(Policy::Local);
}

/// Once Redis said a key is over, this replica refuses it without asking Redis again, until
/// the moment Redis named, and then asks Redis again.
#[test]
fn over_limit_cache_answers_locally_until_the_retry_time() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(&redis.url(), &echo.addr(), Policy::FailOpen, true));

    let mut c = Conn::connect(tg.port, Duration::from_secs(5)).expect("connect");
    let h = [("x-api-key".to_string(), "short-key".to_string())];
    for i in 0..4 {
        let r = c.get("/api/s", &h, false).expect("request");
        assert_eq!(r.status, 200, "request {i}");
    }
    // The fifth is refused by Redis, and the refusal is cached.
    let first_denial = c.get("/api/s", &h, false).expect("request");
    let denied_at = Instant::now();
    assert_eq!(first_denial.status, 429);
    let body: serde_json::Value = serde_json::from_slice(&first_denial.body).expect("json");
    let retry_ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(
        retry_ms > 1000 && retry_ms <= 3000,
        "retry_after_ms {retry_ms}"
    );
    let checks = store_checks(&tg);

    // Hammer until shortly before the retry time: all refused, no store call.
    let mut refused = 0;
    while denied_at.elapsed() + Duration::from_millis(300) < Duration::from_millis(retry_ms) {
        let r = c.get("/api/s", &h, false).expect("request");
        assert_eq!(r.status, 429);
        let retry_after: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=3).contains(&retry_after));
        refused += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let checks_after = store_checks(&tg);
    eprintln!("{refused} cached refusals; store checks {checks} -> {checks_after}");
    assert!(refused >= 20, "only {refused} refusals sent");
    assert_eq!(
        checks_after, checks,
        "the store was asked while the key was cached as over its limit"
    );
    assert!(decisions(&tg, "short", "limited") >= refused as f64);

    // After the retry time the store is asked again, and it admits.
    let wait = Duration::from_millis(retry_ms + 50).saturating_sub(denied_at.elapsed());
    std::thread::sleep(wait);
    let r = c.get("/api/s", &h, false).expect("request");
    assert_eq!(r.status, 200, "after the retry time: {}", r.text());
    assert!(store_checks(&tg) > checks_after);
}

/// Two replicas on one Redis, one with the cache and one without, hammered concurrently for
/// one key: together they admit exactly the limit, as Redis alone would. (`fail_closed`, so a
/// store call that misses its 100 ms budget on this loaded machine cannot admit a request.)
#[test]
fn over_limit_cache_never_admits_more_than_redis() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let cached = Tollgate::start(&yaml(&redis.url(), &echo.addr(), Policy::FailClosed, true));
    let uncached = Tollgate::start(&yaml(&redis.url(), &echo.addr(), Policy::FailClosed, false));

    let mut loads = Vec::new();
    for port in [cached.port, uncached.port] {
        let mut spec = LoadSpec::new(port, "/api/e", "exact-key");
        spec.workers = 2;
        spec.pause = Duration::from_millis(2);
        loads.push(start_load(spec));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let samples: Vec<Vec<Sample>> = loads.into_iter().map(|l| l.stop()).collect();
    let admitted: Vec<usize> = samples
        .iter()
        .map(|s| s.iter().filter(|s| s.status == 200).count())
        .collect();
    let unavailable = samples.iter().flatten().filter(|s| s.status == 503).count();
    let other: Vec<&Sample> = samples
        .iter()
        .flatten()
        .filter(|s| ![200, 429, 503].contains(&s.status))
        .collect();
    let checks = [store_checks(&cached), store_checks(&uncached)];
    let sent = [samples[0].len(), samples[1].len()];
    eprintln!(
        "admitted (cached, uncached) = {admitted:?} of {sent:?} sent; store checks {checks:?}; \
         {unavailable} store calls over budget (503)"
    );
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    let total = admitted[0] + admitted[1];
    // A call that timed out may still have been counted by Redis: it can only lower the total.
    assert!(
        total <= 20 && total + unavailable >= 20,
        "the two replicas together must admit exactly the limit: {total}"
    );
    assert!(sent[0] > 60, "too little load on the cached replica");
    // The cached replica asked Redis far less often than it was asked.
    assert!(
        checks[0] < sent[0] as f64 / 2.0,
        "cache on: {} store checks for {} requests",
        checks[0],
        sent[0]
    );
    assert_eq!(
        checks[1], sent[1] as f64,
        "cache off: every request is a store check"
    );

    // And the same exact count for a single replica with the cache on, sequential requests.
    let statuses: Vec<u16> = (0..30)
        .map(|_| get(&cached, "exact-key-2").status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20);
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
}
