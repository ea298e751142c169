//! What running several tollgate replicas (pods) in front of one store does to a limit, where it
//! is not simply "the limit, exactly" (that case: `cluster_proxy.rs`, `ratelimit_http.rs`):
//!
//! * `on_error: local` while the store is down: each replica limits on its own, so N replicas
//!   admit up to N times the limit;
//! * reload skew (replicas on different config generations for a moment): a changed number
//!   shares one counter, so the larger limit bounds the total; a changed algorithm (or limit
//!   name) is a different key, so each generation has its own counter and the total can reach the
//!   sum of both limits.

pub mod common;

use common::config::Limit;
use common::{
    client, free_port, limit, ConfigBuilder, Echo, Redis, RedisServer, Route, Tollgate, Upstream,
};

fn yaml(redis_url: &str, on_error: &str, echo: &str, limit: Limit) -> String {
    ConfigBuilder::new()
        .redis(Redis::url(redis_url).on_error(on_error))
        .upstream(Upstream::new("echo", &[echo]))
        .route(Route::new("/", "echo"))
        .anonymous_reject()
        .tier("t", &[limit])
        .key("pod-key", "pod-key", "t")
        .to_yaml()
}

/// Sends `n` requests for the key, replica `i % len` for request `i`; returns the 200 count per
/// replica (asserting every other answer is a 429).
fn round_robin(gws: &[&Tollgate], n: usize) -> Vec<usize> {
    let c = client();
    let mut ok = vec![0; gws.len()];
    for i in 0..n {
        let g = gws[i % gws.len()];
        let s = c
            .get(g.url("/x"))
            .header("x-api-key", "pod-key")
            .send()
            .expect("answered")
            .status()
            .as_u16();
        match s {
            200 => ok[i % gws.len()] += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    ok
}

#[test]
fn local_fallback_multiplies_the_limit_by_the_number_of_replicas() {
    // A store that is not there: nothing listens on this port.
    let dead = free_port();
    let echo = Echo::start();
    let y = yaml(
        &format!("redis://127.0.0.1:{dead}/0"),
        "local",
        &echo.addr(),
        limit(10, "60s"),
    );
    let gws: Vec<Tollgate> = (0..3).map(|_| Tollgate::start(&y)).collect();
    let refs: Vec<&Tollgate> = gws.iter().collect();
    let per_replica = round_robin(&refs, 60);
    // Each replica's in-process limiter admits its own 10: 30 in all, three times the limit.
    assert_eq!(per_replica, vec![10, 10, 10]);
}

#[test]
fn reload_skew_a_changed_number_shares_the_counter() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let old = Tollgate::start(&yaml(
        &redis.url(),
        "fail_closed",
        &echo.addr(),
        limit(10, "60s").named("pm"),
    ));
    let new = Tollgate::start(&yaml(
        &redis.url(),
        "fail_closed",
        &echo.addr(),
        limit(20, "60s").named("pm"),
    ));
    // Same key in Redis: the old replica stops at 10 entries, the new one at 20.
    let per_replica = round_robin(&[&old, &new], 60);
    assert_eq!(per_replica.iter().sum::<usize>(), 20, "{per_replica:?}");
    assert_eq!(per_replica, vec![5, 15]);
}

#[test]
fn reload_skew_a_changed_algorithm_is_a_second_counter() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let old = Tollgate::start(&yaml(
        &redis.url(),
        "fail_closed",
        &echo.addr(),
        limit(10, "1h").named("pm").algorithm("sliding_log"),
    ));
    let new = Tollgate::start(&yaml(
        &redis.url(),
        "fail_closed",
        &echo.addr(),
        limit(10, "1h").named("pm").algorithm("token_bucket"),
    ));
    // `...:pm:slr` and `...:pm:tb` are different keys: 10 on each, 20 in all while both
    // generations serve.
    let per_replica = round_robin(&[&old, &new], 60);
    assert_eq!(per_replica, vec![10, 10]);
}
