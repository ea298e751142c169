//! Unit tests of the in-process store, on a manual clock.

use super::*;
use crate::limiter::{Clock, Limit};

/// A store on a manual clock, called the way the tests read best: one identity, its limits, a
/// cost and the time of the call.
struct TestStore {
    store: MemoryStore,
    clock: Clock,
}

impl TestStore {
    fn new() -> Self {
        let clock = Clock::manual(0);
        TestStore {
            store: MemoryStore::with_clock(clock.clone()),
            clock,
        }
    }

    fn check_sync(&self, id: &str, limits: &[Limit], cost: u64, now: u64) -> Verdict {
        self.clock.set_us(now);
        self.store.check_sync(&[Budget::new(id, limits)], cost)
    }

    fn len(&self) -> usize {
        self.store.len()
    }
}

const B: u64 = 1_699_999_200_000_000; // a multiple of one hour, in µs
const S: u64 = 1_000_000;
const MS: u64 = 1_000;

fn lim(name: &str, algorithm: Algorithm, requests: u64, window_ms: u64) -> Limit {
    Limit {
        name: name.into(),
        requests,
        window_ms,
        algorithm,
    }
}

/// (allowed, remaining, retry_ms, reset_ms) of a single-limit check.
fn one(s: &TestStore, id: &str, l: &Limit, cost: u64, now: u64) -> (bool, u64, u64, u64) {
    let v = s.check_sync(id, std::slice::from_ref(l), cost, now);
    let o = v.outcomes[0];
    assert_eq!(v.allowed, o.allowed);
    (o.allowed, o.remaining, o.retry_after_ms, o.reset_ms)
}

#[test]
fn sliding_log_is_exact_at_the_boundary() {
    let s = TestStore::new();
    let l = lim("m", Algorithm::SlidingLog, 3, 60_000);
    let w = 60_000 * MS;
    assert_eq!(one(&s, "a", &l, 1, B), (true, 2, 0, 60_000));
    assert_eq!(one(&s, "a", &l, 1, B + MS), (true, 1, 0, 59_999));
    assert_eq!(one(&s, "a", &l, 1, B + 2 * MS), (true, 0, 0, 59_998));
    assert_eq!(one(&s, "a", &l, 1, B + 3 * MS), (false, 0, 59_997, 59_997));
    assert_eq!(one(&s, "a", &l, 1, B + w - 1), (false, 0, 1, 1));
    assert_eq!(one(&s, "a", &l, 1, B + w), (true, 0, 0, 1));
    assert_eq!(one(&s, "a", &l, 1, B + w), (false, 0, 1, 1));
    // cost: 3 of 5, then 3 more needs the oldest gone
    let l5 = lim("m", Algorithm::SlidingLog, 5, 60_000);
    assert_eq!(one(&s, "c", &l5, 3, B), (true, 2, 0, 60_000));
    assert_eq!(one(&s, "c", &l5, 3, B + MS), (false, 2, 59_999, 59_999));
    assert_eq!(one(&s, "c", &l5, 2, B + 2 * MS), (true, 0, 0, 59_998));
    assert_eq!(one(&s, "c", &l5, 3, B + 3 * MS), (false, 0, 59_997, 59_997));
}

#[test]
fn fixed_window_lets_2l_through_across_a_boundary() {
    let s = TestStore::new();
    let l = lim("m", Algorithm::FixedWindow, 5, 60_000);
    for i in 1..=5 {
        assert_eq!(one(&s, "a", &l, 1, B + 40 * S), (true, 5 - i, 0, 20_000));
    }
    assert_eq!(one(&s, "a", &l, 1, B + 40 * S), (false, 0, 20_000, 20_000));
    assert_eq!(one(&s, "a", &l, 1, B + 60 * S - MS), (false, 0, 1, 1));
    for i in 1..=5 {
        assert_eq!(one(&s, "a", &l, 1, B + 60 * S), (true, 5 - i, 0, 60_000));
    }
    assert_eq!(one(&s, "a", &l, 1, B + 60 * S), (false, 0, 60_000, 60_000));
}

#[test]
fn sliding_window_weights_the_previous_window() {
    let s = TestStore::new();
    let l = lim("m", Algorithm::SlidingWindow, 10, 60_000);
    for _ in 0..10 {
        assert!(one(&s, "a", &l, 1, B + 30 * S).0);
    }
    assert_eq!(one(&s, "a", &l, 1, B + 30 * S), (false, 0, 36_000, 30_000));
    let n = B + 60 * S;
    assert_eq!(one(&s, "a", &l, 1, n), (false, 0, 6_000, 60_000));
    assert_eq!(one(&s, "a", &l, 1, n + 5_999 * MS), (false, 0, 1, 54_001));
    assert_eq!(one(&s, "a", &l, 1, n + 6_000 * MS), (true, 0, 0, 54_000));
    assert_eq!(one(&s, "a", &l, 1, n + 30 * S), (true, 3, 0, 30_000));
    // Worst case: L at the very end of a window, then L*e/W more at offset e.
    for _ in 0..10 {
        assert!(one(&s, "b", &l, 1, n - MS).0);
    }
    let admitted = (0..10)
        .filter(|_| one(&s, "b", &l, 1, n + 30 * S).0)
        .count();
    assert_eq!(admitted, 5);
}

#[test]
fn token_bucket_bursts_then_refills() {
    let s = TestStore::new();
    let l = lim("m", Algorithm::TokenBucket, 5, 60_000);
    for i in 1..=5 {
        assert_eq!(one(&s, "a", &l, 1, B), (true, 5 - i, 0, i * 12_000));
    }
    assert_eq!(one(&s, "a", &l, 1, B), (false, 0, 12_000, 60_000));
    assert_eq!(one(&s, "a", &l, 1, B + 11_999 * MS), (false, 0, 1, 48_001));
    assert_eq!(one(&s, "a", &l, 1, B + 12 * S), (true, 0, 0, 60_000));
    assert_eq!(one(&s, "a", &l, 1, B + 48 * S), (true, 2, 0, 36_000));
    assert_eq!(one(&s, "a", &l, 5, B + 1000 * S), (true, 0, 0, 60_000));
}

#[test]
fn cost_above_limit_is_denied_with_retry_window_and_records_nothing() {
    let s = TestStore::new();
    for a in Algorithm::ALL {
        let l = lim("big", a, 5, 60_000);
        let (allowed, remaining, retry, _) = one(&s, "a", &l, 6, B);
        assert_eq!((allowed, remaining, retry), (false, 5, 60_000), "{a}");
    }
    assert_eq!(s.len(), 0);
    let zero = lim("zero", Algorithm::TokenBucket, 0, 60_000);
    assert_eq!(one(&s, "a", &zero, 1, B), (false, 0, 60_000, 0));
    let fw = lim("fw", Algorithm::FixedWindow, 5, 60_000);
    assert_eq!(
        one(&s, "a", &fw, 0, B),
        (true, 4, 0, 60_000),
        "cost 0 counts as 1"
    );
}

#[test]
fn retry_after_is_exact() {
    // (limit, priming (time, cost) requests, then the denied request (time, cost))
    type Case = (Algorithm, u64, &'static [(u64, u64)], (u64, u64));
    let cases: [Case; 6] = [
        (
            Algorithm::SlidingLog,
            3,
            &[(B + 123, 1), (B + 7 * S, 1), (B + 19 * S, 1)],
            (B + 25 * S + 456, 1),
        ),
        (Algorithm::SlidingLog, 3, &[(B + 123, 3)], (B + 5 * S, 2)),
        (
            Algorithm::FixedWindow,
            3,
            &[(B + 30 * S, 3)],
            (B + 30 * S + 789, 1),
        ),
        (
            Algorithm::TokenBucket,
            3,
            &[(B + 321, 3)],
            (B + 5 * S + 7, 2),
        ),
        (
            Algorithm::SlidingWindow,
            7,
            &[(B + 20 * S, 4), (B + 70 * S, 2)],
            (B + 70 * S + 5, 2),
        ),
        (
            Algorithm::SlidingWindow,
            7,
            &[(B + 50 * S, 5)],
            (B + 50 * S + 5, 3),
        ),
    ];
    for (i, (a, n, prime, (at, cost))) in cases.into_iter().enumerate() {
        let s = TestStore::new();
        let l = lim("r", a, n, 60_000);
        for &(t, c) in prime {
            assert!(one(&s, "a", &l, c, t).0, "case {i}: priming");
        }
        let (allowed, _, retry, _) = one(&s, "a", &l, cost, at);
        assert!(!allowed && retry > 0, "case {i}");
        assert!(
            !one(&s, "a", &l, cost, at + (retry - 1) * MS).0,
            "case {i}: early"
        );
        assert!(
            one(&s, "a", &l, cost, at + retry * MS).0,
            "case {i}: at retry"
        );
    }
}

#[test]
fn multi_limit_is_all_or_nothing() {
    let s = TestStore::new();
    let limits = [
        lim("a", Algorithm::SlidingLog, 2, 60_000),
        lim("b", Algorithm::FixedWindow, 5, 60_000),
        lim("c", Algorithm::TokenBucket, 10, 60_000),
        lim("d", Algorithm::SlidingWindow, 10, 60_000),
    ];
    assert!(s.check_sync("x", &limits, 1, B).allowed);
    assert!(s.check_sync("x", &limits, 1, B + MS).allowed);
    let v = s.check_sync("x", &limits, 1, B + 2 * MS);
    assert!(!v.allowed);
    let got: Vec<_> = v
        .outcomes
        .iter()
        .map(|o| (o.allowed, o.remaining, o.retry_after_ms, o.reset_ms))
        .collect();
    assert_eq!(
        got,
        [
            (false, 0, 59_998, 59_998),
            (true, 2, 0, 59_998),
            (true, 7, 0, 17_998),
            (true, 7, 0, 59_998),
        ]
    );
    assert_eq!(v.retry_after_ms(), 59_998);
    // The denied request left the other limits untouched: each alone sees two requests.
    for l in &limits[1..] {
        let o = s.check_sync("x", std::slice::from_ref(l), 1, B + 2 * MS);
        assert_eq!(
            o.outcomes[0].remaining,
            got[limits.iter().position(|x| x == l).unwrap()].1
        );
    }
    // A denial by the last limit charges none of the earlier ones.
    let two = [
        lim("e", Algorithm::SlidingLog, 10, 60_000),
        lim("f", Algorithm::FixedWindow, 2, 60_000),
    ];
    assert!(!s.check_sync("y", &two, 3, B).allowed);
    assert_eq!(one(&s, "y", &two[0], 1, B), (true, 9, 0, 60_000));
}

#[test]
fn no_budget_is_allowed_and_stores_nothing() {
    let s = MemoryStore::default();
    let v = s.check_sync(&[], 1);
    assert!(v.allowed && v.outcomes.is_empty());
    assert!(s.is_empty());
    assert_eq!(s.kind(), "memory");
}

#[test]
fn the_store_clock_is_the_system_clock() {
    let s = MemoryStore::new();
    let l = [lim("m", Algorithm::FixedWindow, 1, 3_600_000)];
    let before = crate::limiter::clock::system_now_us();
    assert!(s.check_sync(&[Budget::new("a", &l)], 1).allowed);
    // Same hour (unless it just turned): the second request sees the first.
    let v = s.check_sync(&[Budget::new("a", &l)], 1);
    let crossed =
        (crate::limiter::clock::system_now_us() / 3_600_000_000) != before / 3_600_000_000;
    assert!(crossed || !v.allowed);
}

#[test]
fn budgets_in_different_shards_are_all_or_nothing() {
    let s = TestStore::new();
    let tight = [lim("g", Algorithm::FixedWindow, 1, 60_000)];
    let loose = [lim("m", Algorithm::SlidingLog, 10, 60_000)];
    s.clock.set_us(B);
    let first = [Budget::new("k:1", &loose), Budget::new("global", &tight)];
    assert!(s.store.check_sync(&first, 1).allowed);
    // The global budget refuses: the caller's own budget is not charged.
    let second = [Budget::new("k:2", &loose), Budget::new("global", &tight)];
    let v = s.store.check_sync(&second, 1);
    assert!(!v.allowed && v.outcomes[0].allowed && !v.outcomes[1].allowed);
    assert_eq!(one(&s, "k:2", &loose[0], 1, B), (true, 9, 0, 60_000));
}

#[test]
fn expired_entries_are_evicted() {
    let s = TestStore::new();
    let limits = [
        lim("sl", Algorithm::SlidingLog, 10, 1_000),
        lim("tb", Algorithm::TokenBucket, 10, 1_000),
    ];
    const KEYS: usize = 100_000;
    let mut id = String::new();
    for wave in 0..4u64 {
        let now = B + wave * 10 * S;
        for i in 0..KEYS {
            id.clear();
            id.push_str(&format!("w{wave}-{i}"));
            assert!(s.check_sync(&id, &limits, 1, now).allowed);
        }
        // Every earlier wave has expired; at most about one stale wave waits for a sweep.
        assert!(
            s.len() <= 2 * 2 * KEYS + 2 * SHARDS * MIN_SWEEP,
            "wave {wave}: {} entries",
            s.len()
        );
    }
    // A lone request much later does not see stale state either.
    assert_eq!(
        one(&s, "w0-0", &limits[0], 1, B + 100 * S),
        (true, 9, 0, 1_000)
    );
}

#[tokio::test]
async fn the_async_check_is_the_sync_one() {
    let s = TestStore::new();
    s.clock.set_us(B);
    let l = [lim("m", Algorithm::SlidingLog, 1, 1_000)];
    let b = [Budget::new("a", &l)];
    assert!(s.store.check(&b, 1).await.unwrap().allowed);
    assert!(!s.store.check(&b, 1).await.unwrap().allowed);
    assert!(s.store.ping().await.is_ok());
}

#[test]
fn the_sweeper_frees_expired_identities_without_traffic() {
    let clock = Clock::manual(B);
    let s = Arc::new(MemoryStore::with_clock(clock.clone()));
    s.set_max_identities(2);
    let l = [lim("s", Algorithm::SlidingLog, 5, 1_000)];
    assert!(s.check_sync(&[Budget::new("a", &l)], 1).allowed);
    assert!(s.check_sync(&[Budget::new("b", &l)], 1).allowed);
    assert_eq!(s.identities(), 2);
    s.start_sweeper(std::time::Duration::from_millis(10));
    clock.advance_us(2 * S);
    let start = std::time::Instant::now();
    while s.identities() > 0 && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        (s.identities(), s.len()),
        (0, 0),
        "no request came, yet both went"
    );
}

#[test]
fn a_full_store_counts_new_identities_in_the_tiers_overflow_bucket() {
    let s = TestStore::new();
    s.store.set_max_identities(1);
    let l = [lim("m", Algorithm::FixedWindow, 2, 60_000)];
    s.clock.set_us(B);
    let check = |id: &str, tier: &str| {
        s.store
            .check_sync(&[Budget::new(id, &l).with_overflow(tier)], 1)
            .allowed
    };
    assert!(check("a", "free"));
    // Full: "b" and "c" share free's overflow bucket of 2; another tier has its own.
    assert!(check("b", "free") && check("c", "free"));
    assert!(!check("d", "free"));
    assert!(check("e", "paid"));
    // "a" still has its own bucket; a refused new identity took no place.
    assert!(check("a", "free"));
    assert_eq!(s.store.identities(), 1);
}
