//! Late answers are not wasted: a call that timed out while Redis was paused is answered when
//! Redis resumes, and a denial in that answer warms the over-limit cache, so the client already
//! over its limit is refused again without another round trip. Real Redis, SIGSTOP/SIGCONT.

pub mod breaker_support;
pub mod common;

use std::time::{Duration, Instant};

use breaker_support::*;
use common::metric_sum;
use common::{Echo, RedisServer, Tollgate};

fn store_checks(tg: &Tollgate) -> f64 {
    metric_sum(
        &tg.metrics(),
        "tollgate_store_duration_seconds_count",
        &[("op", "check")],
    )
}

#[test]
fn a_late_denial_warms_the_over_limit_cache() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let url = format!("url: \"{}\"", redis.url());
    let tg = Tollgate::start(&yaml(&url, &echo.addr(), "fail_open", ""));
    let started = Instant::now();
    let mut conn = None;
    // The whole minute's budget: every call reaches Redis (a call that misses its budget on a
    // busy host still runs there), so Redis has counted 20.
    for i in 0..20 {
        let s = shoot(tg.port, &mut conn, "exact-0", started);
        assert_eq!(s.status, 200, "request {i}: {s:?}");
    }

    // Redis pauses: three requests time out and fail open. Their calls stay queued in Redis.
    redis.freeze();
    let blind: Vec<Shot> = (0..3)
        .map(|_| shoot(tg.port, &mut conn, "exact-0", started))
        .collect();
    redis.thaw();
    assert!(
        blind.iter().all(|s| s.status == 200 && !s.decided),
        "requests during the pause: {blind:?}"
    );

    // Redis answers them late (denied: the key is over its limit), and the denial is cached:
    // the first request after the pause is refused without a store call.
    std::thread::sleep(Duration::from_millis(300));
    let before = store_checks(&tg);
    let s = shoot(tg.port, &mut conn, "exact-0", started);
    assert_eq!(s.status, 429, "{s:?}");
    let refused_locally = store_checks(&tg) == before;
    eprintln!("[late answers] {blind:?}; refused from the cache: {refused_locally}");
    assert!(
        refused_locally,
        "the late denial did not warm the over-limit cache"
    );
}
