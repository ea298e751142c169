//! The refund across hash slots, algorithm by algorithm, on a real 3-master Redis Cluster: a
//! request refused by one slot leaves every limit of the other slots exactly as the in-process
//! store (which decides all budgets at once) leaves them.
pub mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cluster::RedisCluster;
use tollgate::limiter::store::redis::slot_of;
use tollgate::limiter::{
    Algorithm, Budget, Clock, Limit, MemoryStore, RedisStore, RedisTarget, Store,
};

fn lim(name: &str, algorithm: Algorithm, requests: u64) -> Limit {
    Limit {
        name: name.into(),
        requests,
        window_ms: 60_000,
        algorithm,
    }
}

#[test]
fn a_refused_request_is_refunded_by_every_other_slot() {
    let cluster = RedisCluster::start();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let clock = Clock::manual(now);
    let store = RedisStore::new(
        RedisTarget::Cluster(cluster.urls()),
        "tgrefund",
        Duration::from_secs(2),
        clock.clone(),
    );
    let memory = MemoryStore::with_clock(clock.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let own = [
        lim("sl", Algorithm::SlidingLog, 5),
        lim("sw", Algorithm::SlidingWindow, 5),
        lim("fw", Algorithm::FixedWindow, 5),
        lim("tb", Algorithm::TokenBucket, 5),
    ];
    let tight = [lim("g", Algorithm::FixedWindow, 1)];
    let (me, shared) = ("k:refund-me", "global");
    assert_ne!(slot_of(me), slot_of(shared));
    assert_ne!(
        cluster.master_of(slot_of(me)),
        cluster.master_of(slot_of(shared))
    );
    let both = [Budget::new(me, &own), Budget::new(shared, &tight)];
    let alone = [Budget::new(me, &own)];
    let step = |budgets: &[Budget<'_>], cost: u64| {
        clock.advance_us(1_000);
        let c = rt
            .block_on(store.check(budgets, cost))
            .expect("cluster check");
        let m = memory.check_sync(budgets, cost);
        // The refund runs beside the request: give it time to land.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(c, m, "cluster vs in-process at cost {cost}");
        c
    };
    assert!(step(&both, 1).allowed);
    for cost in [1, 2] {
        let v = step(&both, cost);
        assert!(!v.allowed && v.outcomes[..4].iter().all(|o| o.allowed) && !v.outcomes[4].allowed);
    }
    // The two refused requests cost nothing: every limit has 4 left, then 3, ...
    for left in (0..4).rev() {
        let v = step(&alone, 1);
        assert!(v.allowed);
        assert!(v.outcomes.iter().all(|o| o.remaining == left), "{v:?}");
    }
    assert!(!step(&alone, 1).allowed);
}
