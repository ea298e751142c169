//! The Redis scripts and the in-process store against each other and against the spec
//! (`scripts/redis/README.md`): exact boundaries, the fixed_window 2L burst, the sliding_window
//! error bound, and property tests that the two stores answer every sequence identically.
//!
//! Clocks: both stores run on one manual clock that each call sets, but Redis TTLs run on Redis's own clock. A TTL is
//! derived from the caller's `now`, so it is only safe if the caller's clock never runs slower
//! than real time. The fixed scenarios use 60 s windows and place their events so no state they
//! rely on has a TTL of less than seconds; the property tests build `now` as real elapsed time
//! plus the generated deltas, which keeps the synthetic clock at least as fast as Redis's.

pub mod common;

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use std::sync::Arc;

use tollgate::limiter::{
    Algorithm, BreakerSettings, Budget, Clock, Limit, LimitOutcome, Limiter, MemoryStore, OnError,
    Outcome, RedisSettings, RedisStore, RedisTarget, Source, Store, Verdict,
};

/// A multiple of one hour, in µs, so windows of 10 s, 60 s, ... start on it.
const B: u64 = 1_699_999_200_000_000;
const S: u64 = 1_000_000;
const MS: u64 = 1_000;
const W: u64 = 60_000;

struct Env {
    // Declared first so the store's connection goes before the server does.
    redis: RedisStore,
    memory: MemoryStore,
    /// The manual clock both stores decide at.
    clock: Clock,
    rt: tokio::runtime::Runtime,
    url: String,
    _server: common::RedisServer,
}

impl Env {
    fn start() -> Env {
        let server = common::RedisServer::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let clock = Clock::manual(B);
        Env {
            redis: RedisStore::new(
                RedisTarget::Single(server.url()),
                "tgtest",
                Duration::from_millis(500),
                clock.clone(),
            ),
            memory: MemoryStore::with_clock(clock.clone()),
            clock,
            rt,
            url: server.url(),
            _server: server,
        }
    }

    /// Runs one request on both stores, asserts they agree, returns the verdict.
    fn both(&self, id: &str, limits: &[Limit], cost: u64, now_us: u64) -> Verdict {
        self.clock.set_us(now_us);
        let budgets = [Budget::new(id, limits)];
        let r = self
            .rt
            .block_on(self.redis.check(&budgets, cost))
            .expect("redis check");
        let m = self
            .rt
            .block_on(self.memory.check(&budgets, cost))
            .expect("memory check");
        assert_eq!(
            r, m,
            "redis vs memory: id {id} cost {cost} now {now_us} {limits:?}"
        );
        r
    }

    /// Single limit: (allowed, remaining, retry_ms, reset_ms).
    fn one(&self, id: &str, l: &Limit, cost: u64, now_us: u64) -> (bool, u64, u64, u64) {
        let v = self.both(id, std::slice::from_ref(l), cost, now_us);
        let o = v.outcomes[0];
        (o.allowed, o.remaining, o.retry_after_ms, o.reset_ms)
    }
}

fn lim(name: &str, algorithm: Algorithm, requests: u64, window_ms: u64) -> Limit {
    Limit {
        name: name.into(),
        requests,
        window_ms,
        algorithm,
    }
}

fn tuple(o: &LimitOutcome) -> (bool, u64, u64, u64) {
    (o.allowed, o.remaining, o.retry_after_ms, o.reset_ms)
}

#[test]
fn sliding_log_is_exact_at_the_boundary() {
    let env = Env::start();
    let l = lim("m", Algorithm::SlidingLog, 3, W);
    let w = W * MS;
    assert_eq!(env.one("sl", &l, 1, B), (true, 2, 0, 60_000));
    assert_eq!(env.one("sl", &l, 1, B + MS), (true, 1, 0, 59_999));
    assert_eq!(env.one("sl", &l, 1, B + 2 * MS), (true, 0, 0, 59_998));
    assert_eq!(env.one("sl", &l, 1, B + 3 * MS), (false, 0, 59_997, 59_997));
    // One µs before the first entry is W old it still counts; exactly W old it does not.
    assert_eq!(env.one("sl", &l, 1, B + w - 1), (false, 0, 1, 1));
    assert_eq!(env.one("sl", &l, 1, B + w), (true, 0, 0, 1));
    assert_eq!(env.one("sl", &l, 1, B + w), (false, 0, 1, 1));
    // Two requests in one microsecond are two entries.
    assert_eq!(env.one("sl-same-us", &l, 1, B), (true, 2, 0, 60_000));
    assert_eq!(env.one("sl-same-us", &l, 2, B), (true, 0, 0, 60_000));
    assert_eq!(env.one("sl-same-us", &l, 1, B), (false, 0, 60_000, 60_000));
    // cost > 1
    let l5 = lim("m", Algorithm::SlidingLog, 5, W);
    assert_eq!(env.one("sl-cost", &l5, 3, B), (true, 2, 0, 60_000));
    assert_eq!(
        env.one("sl-cost", &l5, 3, B + MS),
        (false, 2, 59_999, 59_999)
    );
    assert_eq!(env.one("sl-cost", &l5, 2, B + 2 * MS), (true, 0, 0, 59_998));
    assert_eq!(
        env.one("sl-cost", &l5, 3, B + 3 * MS),
        (false, 0, 59_997, 59_997)
    );
}

#[test]
fn fixed_window_admits_2l_across_a_boundary() {
    let env = Env::start();
    let l = lim("m", Algorithm::FixedWindow, 5, W);
    // 20 s before the boundary at B + 60 s (not closer: the key's TTL is the time to the boundary).
    for i in 1..=5 {
        assert_eq!(env.one("fw", &l, 1, B + 40 * S), (true, 5 - i, 0, 20_000));
    }
    assert_eq!(env.one("fw", &l, 1, B + 40 * S), (false, 0, 20_000, 20_000));
    assert_eq!(env.one("fw", &l, 1, B + 60 * S - MS), (false, 0, 1, 1));
    for i in 1..=5 {
        assert_eq!(env.one("fw", &l, 1, B + 60 * S), (true, 5 - i, 0, 60_000));
    }
    // 2L = 10 admitted within 20 s of a 60 s window.
    assert_eq!(env.one("fw", &l, 1, B + 60 * S), (false, 0, 60_000, 60_000));
}

#[test]
fn sliding_window_estimate_and_error_bound() {
    let env = Env::start();
    let l = lim("m", Algorithm::SlidingWindow, 10, W);
    for _ in 0..10 {
        assert!(env.one("sw", &l, 1, B + 30 * S).0);
    }
    // cur = 10: wait for the next window, then until 10*(W - e) + W <= 10*W, i.e. e = 6 s.
    assert_eq!(env.one("sw", &l, 1, B + 30 * S), (false, 0, 36_000, 30_000));
    let n = B + 60 * S;
    assert_eq!(env.one("sw", &l, 1, n), (false, 0, 6_000, 60_000));
    assert_eq!(env.one("sw", &l, 1, n + 5_999 * MS), (false, 0, 1, 54_001));
    assert_eq!(env.one("sw", &l, 1, n + 6_000 * MS), (true, 0, 0, 54_000));
    assert_eq!(env.one("sw", &l, 1, n + 30 * S), (true, 3, 0, 30_000));

    // Error bound: with all L of the previous window at its very end, offset e of the next
    // window admits floor(L*e/W) more, so (now - W, now] holds L + floor(L*e/W) < 2L.
    for (i, e_ms) in [0u64, 6_000, 30_000, 59_999].into_iter().enumerate() {
        let id = format!("sw-bound-{i}");
        for _ in 0..10 {
            assert!(env.one(&id, &l, 1, n - MS).0);
        }
        let admitted = (0..20)
            .filter(|_| env.one(&id, &l, 1, n + e_ms * MS).0)
            .count() as u64;
        assert_eq!(admitted, 10 * e_ms / W, "e = {e_ms} ms");
    }
}

#[test]
fn token_bucket_bursts_then_refills() {
    let env = Env::start();
    let l = lim("m", Algorithm::TokenBucket, 5, W); // one token per 12 s
    for i in 1..=5 {
        assert_eq!(env.one("tb", &l, 1, B), (true, 5 - i, 0, i * 12_000));
    }
    assert_eq!(env.one("tb", &l, 1, B), (false, 0, 12_000, 60_000));
    assert_eq!(env.one("tb", &l, 1, B + 11_999 * MS), (false, 0, 1, 48_001));
    assert_eq!(env.one("tb", &l, 1, B + 12 * S), (true, 0, 0, 60_000));
    assert_eq!(env.one("tb", &l, 1, B + 48 * S), (true, 2, 0, 36_000));
    assert_eq!(env.one("tb", &l, 5, B + 1000 * S), (true, 0, 0, 60_000));
}

#[test]
fn multi_limit_all_or_nothing_and_cost_above_limit() {
    let env = Env::start();
    let limits = [
        lim("a", Algorithm::SlidingLog, 2, W),
        lim("b", Algorithm::FixedWindow, 5, W),
        lim("c", Algorithm::TokenBucket, 10, W),
        lim("d", Algorithm::SlidingWindow, 10, W),
    ];
    assert!(env.both("multi", &limits, 1, B).allowed);
    assert!(env.both("multi", &limits, 1, B + MS).allowed);
    let v = env.both("multi", &limits, 1, B + 2 * MS);
    assert!(!v.allowed);
    let got: Vec<_> = v.outcomes.iter().map(tuple).collect();
    assert_eq!(
        got,
        [
            (false, 0, 59_998, 59_998),
            (true, 2, 0, 59_998),
            (true, 7, 0, 17_998),
            (true, 7, 0, 59_998),
        ]
    );
    // Had the denied request been recorded, these would each see one unit less.
    for (l, expected) in limits[1..].iter().zip(&got[1..]) {
        assert_eq!(env.one("multi", l, 1, B + 2 * MS), *expected, "{}", l.name);
    }
    for a in Algorithm::ALL {
        let l = lim("big", a, 5, W);
        let (allowed, remaining, retry, _) = env.one("big", &l, 6, B);
        assert_eq!((allowed, remaining, retry), (false, 5, W), "{a}");
        // Nothing was recorded: the full limit is still there.
        assert!(env.one("big", &l, 5, B).0, "{a}");
    }
}

/// Sorted admitted µs timestamps, one per unit: no `max + 1` of them within a window.
fn max_in_any_window(admitted: &[u64], window_us: u64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..admitted.len() {
        while admitted[hi] - admitted[lo] >= window_us {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// A generated request: how the clock moves before it, and its cost.
#[derive(Debug, Clone)]
struct Event {
    step: u8,
    frac: u64,
    cost: u64,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let cost = prop_oneof![12 => 1..=3u64, 1 => 1..=60u64];
    prop::collection::vec(
        (0u8..8, 0u64..=1000, cost).prop_map(|(step, frac, cost)| Event { step, frac, cost }),
        1..200,
    )
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

/// The clock advance before an event: none, sub-millisecond, around W/L, or around W.
fn delta_us(e: &Event, limit: u64, window_ms: u64) -> u64 {
    match e.step {
        0 | 1 => 0,
        2 | 3 => e.frac,
        4..=6 => e.frac * window_ms * 1000 / (500 * limit),
        _ => e.frac * window_ms * 1000 / 500,
    }
}

/// Feeds `events` to both stores for one tier, asserting identical verdicts, and returns the
/// times at which requests were admitted, one entry per unit of cost.
fn run_sequence(env: &Env, id: &str, limits: &[Limit], events: &[Event]) -> Vec<u64> {
    // Real time plus the generated deltas: see the module docs.
    let start_sys = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let start = Instant::now();
    let (l0, w0) = (limits[0].requests, limits[0].window_ms);
    let mut offset = 0u64;
    let mut admitted = Vec::new();
    for e in events {
        offset += delta_us(e, l0, w0);
        let now = start_sys + start.elapsed().as_micros() as u64 + offset;
        let v = env.both(id, limits, e.cost, now);
        assert_eq!(v.outcomes.len(), limits.len());
        assert_eq!(v.allowed, v.outcomes.iter().all(|o| o.allowed));
        if v.allowed {
            admitted.extend(std::iter::repeat_n(now, e.cost as usize));
        } else {
            assert!(v.retry_after_ms() > 0, "a denial always says when to retry");
        }
    }
    admitted
}

#[test]
fn sliding_log_never_exceeds_its_limit() {
    let env = Env::start();
    let case = Cell::new(0u64);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(limit in 1u64..50, window_ms in 100u64..5000, evs in events())| {
        case.set(case.get() + 1);
        let id = format!("sl-prop-{}", case.get());
        let l = [lim("p", Algorithm::SlidingLog, limit, window_ms)];
        let admitted = run_sequence(&env, &id, &l, &evs);
        let most = max_in_any_window(&admitted, window_ms * 1000);
        prop_assert!(most as u64 <= limit, "{most} admitted in one window, limit {limit}");
    });
}

#[test]
fn redis_and_memory_agree_on_any_sequence() {
    let env = Env::start();
    let case = Cell::new(0u64);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let tier = prop::collection::vec((algorithm(), 1u64..50, 100u64..5000), 1..=3);
    proptest!(config, |(tier in tier, evs in events())| {
        case.set(case.get() + 1);
        let id = format!("agree-{}", case.get());
        let limits: Vec<Limit> = tier
            .iter()
            .enumerate()
            .map(|(i, &(a, l, w))| lim(&format!("l{i}"), a, l, w))
            .collect();
        let admitted = run_sequence(&env, &id, &limits, &evs);
        // Every admitted request was admitted by every limit, so each limit's bound holds.
        for l in &limits {
            let most = max_in_any_window(&admitted, l.window_ms * 1000) as u64;
            match l.algorithm {
                Algorithm::SlidingLog => prop_assert!(most <= l.requests),
                Algorithm::SlidingWindow => prop_assert!(most < 2 * l.requests),
                Algorithm::FixedWindow => prop_assert!(most <= 2 * l.requests),
                Algorithm::TokenBucket => {}
            }
        }
    });
}

/// A Redis limiter with the over-limit cache on, deciding at `clock`.
fn cached_limiter(env: &Env, clock: &Clock) -> Limiter {
    let settings = RedisSettings {
        target: RedisTarget::Single(env.url.clone()),
        timeout: Duration::from_millis(500),
        on_error: OnError::FailClosed,
        key_prefix: "tgcache".into(),
        // Never opens: the test compares verdicts, every one from Redis or the cache.
        breaker: BreakerSettings {
            min_calls: u32::MAX,
            ..BreakerSettings::default()
        },
        over_limit_cache: true,
        concurrency_lease: Duration::from_secs(60),
    };
    let store = RedisStore::new(
        settings.target.clone(),
        &settings.key_prefix,
        settings.timeout,
        clock.clone(),
    );
    Limiter::with_store(Arc::new(store), &settings, Arc::new(MemoryStore::new()))
        .with_cache_clock(clock.clone())
}

/// The over-limit cache answers only what Redis would: Redis-with-cache and the in-process
/// store give the same verdicts on random traffic of several identities with random costs
/// (a cached `cost: 3` refusal must not refuse a later `cost: 1` request Redis would admit).
#[test]
fn redis_with_over_limit_cache_agrees_with_memory() {
    let env = Env::start();
    let clock = Clock::manual(B);
    let limiter = cached_limiter(&env, &clock);
    let memory = MemoryStore::with_clock(clock.clone());
    let case = Cell::new(0u64);
    let hits = Cell::new(0u64);
    let config = ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let tier = prop::collection::vec((algorithm(), 2u64..20, 100u64..3000), 1..=2);
    let traffic = prop::collection::vec((0usize..3, 0u8..8, 0u64..=1000, 1u64..=4), 1..150);
    proptest!(config, |(tier in tier, traffic in traffic)| {
        case.set(case.get() + 1);
        let limits: Vec<Limit> = tier
            .iter()
            .enumerate()
            .map(|(i, &(a, l, w))| lim(&format!("l{i}"), a, l, w))
            .collect();
        let start_sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        let start = Instant::now();
        let mut offset = 0;
        for (who, step, frac, cost) in traffic {
            let e = Event { step, frac, cost };
            offset += delta_us(&e, limits[0].requests, limits[0].window_ms);
            clock.set_us(start_sys + start.elapsed().as_micros() as u64 + offset);
            let id = format!("cache-{}-{who}", case.get());
            let budgets = [Budget::new(&id, &limits)];
            let outcome = env.rt.block_on(limiter.decide(&budgets, cost, "tier", 1));
            let Outcome::Decided { verdict, source } = outcome else {
                panic!("the store failed: {outcome:?}");
            };
            if source == Source::Cache {
                hits.set(hits.get() + 1);
            }
            let m = env.rt.block_on(memory.check(&budgets, cost)).expect("memory check");
            prop_assert_eq!(verdict.allowed, m.allowed, "id {} cost {} from {:?}", id, cost, source);
        }
    });
    assert!(
        hits.get() > 0,
        "the cache answered nothing: the test did not exercise it"
    );
}

/// Requests that wait at the same moment go out as one script call, decided in order: exact.
#[test]
fn concurrent_decisions_are_batched_and_exact() {
    let env = Env::start();
    let l = [lim("b", Algorithm::SlidingLog, 40, W)];
    env.clock.set_us(B);
    let calls = |env: &Env| -> u64 {
        let client = redis::Client::open(env.url.as_str()).unwrap();
        let mut c = client.get_connection().unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .unwrap();
        info.lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Connect (and load the script) first, so that the count below is the batches alone.
    let warm = [Budget::new("batch-warm", &l)];
    env.rt.block_on(env.redis.check(&warm, 1)).expect("warm-up");
    let before = calls(&env);
    let budgets = [Budget::new("batch-hot", &l)];
    let verdicts = env.rt.block_on(futures::future::join_all(
        (0..64).map(|_| env.redis.check(&budgets, 1)),
    ));
    let allowed = verdicts
        .iter()
        .filter(|v| v.as_ref().expect("check").allowed)
        .count();
    assert_eq!(allowed, 40, "exactly the limit is admitted");
    let used = calls(&env) - before;
    assert!(
        used <= 16,
        "64 concurrent decisions took {used} script calls: they were not batched"
    );
}
