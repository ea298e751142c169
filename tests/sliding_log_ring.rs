//! The sliding_log ring (issue 18) against the sorted set it replaced and against the in-process
//! store: random costs (above the limit too), limits that change between requests (the ring grows
//! and shrinks) and a clock that steps back, all on a real redis-server running the Lua as
//! shipped.
//!
//! Clocks: Redis TTLs run on Redis's own clock (see `tests/limiter_exactness.rs`). The sorted-set
//! comparison keeps the synthetic clock at least as fast as real time. The clock-step test moves
//! it backwards too, so there every window is at least 10 s and a case lasts well under a second:
//! no key can reach its TTL while the case still needs it.

pub mod common;

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tollgate::limiter::{
    Algorithm, Budget, Clock, Limit, MemoryStore, RedisStore, RedisTarget, Store, Verdict,
};

/// The shipped script with the old sorted-set sliding_log in place of the ring.
const ZSET_LUA: &str = concat!(
    include_str!("fixtures/sliding_log_zset.lua"),
    "\n",
    include_str!("../scripts/redis/sliding_window.lua"),
    "\n",
    include_str!("../scripts/redis/fixed_window.lua"),
    "\n",
    include_str!("../scripts/redis/token_bucket.lua"),
    "\n",
    include_str!("../scripts/redis/ratelimit.lua"),
);

type Answer = (bool, u64, u64, u64);

struct Env {
    redis: RedisStore,
    memory: MemoryStore,
    /// The manual clock both stores decide at.
    clock: Clock,
    zset: redis::Script,
    raw: redis::aio::MultiplexedConnection,
    rt: tokio::runtime::Runtime,
    _server: common::RedisServer,
}

impl Env {
    fn start() -> Env {
        let server = common::RedisServer::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = redis::Client::open(server.url()).expect("redis url");
        let raw = rt
            .block_on(client.get_multiplexed_async_connection())
            .expect("redis connection");
        let clock = Clock::manual(real_now_us());
        Env {
            redis: RedisStore::new(
                RedisTarget::Single(server.url()),
                "tgring",
                Duration::from_millis(500),
                clock.clone(),
            ),
            memory: MemoryStore::with_clock(clock.clone()),
            clock,
            zset: redis::Script::new(ZSET_LUA),
            raw,
            rt,
            _server: server,
        }
    }

    /// One single-limit request on the ring (Redis) and the in-process store; they must agree.
    fn ring(&self, id: &str, l: &Limit, cost: u64, now: u64) -> Answer {
        let limits = std::slice::from_ref(l);
        let r = self.check(&self.redis, id, limits, cost, now);
        let m = self.check(&self.memory, id, limits, cost, now);
        assert_eq!(r, m, "redis vs memory: {id} cost {cost} now {now} {l:?}");
        let o = r.outcomes[0];
        (o.allowed, o.remaining, o.retry_after_ms, o.reset_ms)
    }

    fn check(&self, s: &dyn Store, id: &str, l: &[Limit], cost: u64, now: u64) -> Verdict {
        self.clock.set_us(now);
        self.rt
            .block_on(s.check(&[Budget::new(id, l)], cost))
            .expect("store check")
    }

    /// The same request on the old sorted-set script, under its own key.
    fn zset(&self, key: &str, l: &Limit, cost: u64, now: u64) -> Answer {
        let mut conn = self.raw.clone();
        let mut inv = self.zset.key(key);
        inv.arg(now)
            .arg(cost)
            .arg(1)
            .arg(l.requests)
            .arg(l.window_ms);
        let out: Vec<i64> = self
            .rt
            .block_on(inv.invoke_async(&mut conn))
            .expect("sorted-set script");
        assert_eq!(out.len(), 6, "{out:?}");
        let u = |v: i64| u64::try_from(v).expect("non-negative");
        (out[2] == 1, u(out[3]), u(out[4]), u(out[5]))
    }
}

fn sliding_log(requests: u64, window_ms: u64) -> Limit {
    Limit {
        name: "p".into(),
        requests,
        window_ms,
        algorithm: Algorithm::SlidingLog,
    }
}

fn real_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A generated request: how the clock moves before it, its cost, and the limit in force.
#[derive(Debug, Clone)]
struct Event {
    step: u8,
    frac: u64,
    cost: u64,
    limit: u64,
}

/// Costs mostly small, sometimes up to the limit and beyond it; the limit changes now and then.
fn events(max_limit: u64) -> impl Strategy<Value = Vec<Event>> {
    let first = 1..=max_limit;
    (
        first,
        prop::collection::vec((0u8..10, 0u64..=1000, 0u8..20, 1..=max_limit), 1..150),
    )
        .prop_map(move |(mut limit, raw)| {
            raw.into_iter()
                .map(|(step, frac, pick, new_limit)| {
                    if pick == 0 {
                        limit = new_limit;
                    }
                    let cost = match pick {
                        1 => limit + 1 + frac % 3,
                        2..=4 => 1 + frac % limit,
                        _ => 1 + frac % 3,
                    };
                    Event {
                        step,
                        frac,
                        cost,
                        limit,
                    }
                })
                .collect()
        })
}

/// The clock advance before an event: none, sub-millisecond, around W/L, or around W.
fn forward_us(e: &Event, window_ms: u64) -> u64 {
    match e.step {
        0 | 1 => 0,
        2 | 3 => e.frac,
        4..=7 => e.frac * window_ms * 1000 / (500 * e.limit),
        _ => e.frac * window_ms * 1000 / 500,
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_ring_answers_exactly_as_the_sorted_set_did() {
    same_as_the_sorted_set(40, 64);
}

/// Limits up to 600: rings above 1 KB (read near their hint, written with SETRANGE) and limit
/// changes across that size.
#[test]
fn large_rings_answer_exactly_as_the_sorted_set_did() {
    same_as_the_sorted_set(600, 24);
}

fn same_as_the_sorted_set(max_limit: u64, cases: u32) {
    let env = Env::start();
    let case = Cell::new(0u64);
    proptest!(config(cases), |(window_ms in 100u64..5000, evs in events(max_limit))| {
        case.set(case.get() + 1);
        let id = format!("zset-{max_limit}-{}", case.get());
        let zkey = format!("tgzset:{{{id}}}:p:sl");
        // Real time plus the generated deltas: never slower than Redis's clock.
        let (start_sys, start) = (real_now_us(), Instant::now());
        let mut offset = 0;
        for (i, e) in evs.iter().enumerate() {
            offset += forward_us(e, window_ms);
            let now = start_sys + start.elapsed().as_micros() as u64 + offset;
            let l = sliding_log(e.limit, window_ms);
            let ring = env.ring(&id, &l, e.cost, now);
            let zset = env.zset(&zkey, &l, e.cost, now);
            prop_assert_eq!(ring, zset, "event {} of {:?}", i, evs);
        }
    });
}

/// Boundaries: the clock moves on a grid of W/q (q = 1 to 8, so rarely a whole number of
/// milliseconds), one µs either side of it, or not at all, so requests keep landing exactly W,
/// W - 1 µs and W + 1 µs after earlier admissions. The ring (Redis and in-process) must answer
/// as the sorted set did, `retry` and `reset` rounded up alike. Windows are at least 10 s and a
/// case lasts well under a second, so no key reaches its Redis TTL while the case needs it.
#[test]
fn the_ring_answers_as_the_sorted_set_did_on_the_boundaries() {
    let env = Env::start();
    let case = Cell::new(0u64);
    let grid = prop::collection::vec((0u8..6, 1u64..=8), 150);
    proptest!(config(48), |(window_s in 10u64..30, evs in events(300), grid in grid)| {
        case.set(case.get() + 1);
        let id = format!("edge-{}", case.get());
        let zkey = format!("tgzset:{{{id}}}:p:sl");
        let win_us = window_s * 1_000_000;
        let mut now = real_now_us();
        for (i, (e, (kind, q))) in evs.iter().zip(&grid).enumerate() {
            now += match kind {
                0 => 0,
                1 => win_us / q,
                2 => win_us / q + 1,
                3 => (win_us / q).saturating_sub(1),
                _ => win_us / (q * e.limit),
            };
            let l = sliding_log(e.limit, window_s * 1000);
            let ring = env.ring(&id, &l, e.cost, now);
            let zset = env.zset(&zkey, &l, e.cost, now);
            prop_assert_eq!(ring, zset, "event {} of {:?}", i, evs);
        }
    });
}

#[test]
fn redis_and_memory_agree_when_the_clock_steps_back() {
    clock_steps_back(30, 64);
}

#[test]
fn large_rings_agree_when_the_clock_steps_back() {
    clock_steps_back(600, 24);
}

fn clock_steps_back(max_limit: u64, cases: u32) {
    let env = Env::start();
    let case = Cell::new(0u64);
    let backs = prop::collection::vec(0u64..=2000, 150);
    proptest!(config(cases), |(window_s in 10u64..60, evs in events(max_limit), backs in backs)| {
        case.set(case.get() + 1);
        let id = format!("back-{max_limit}-{}", case.get());
        let window_ms = window_s * 1000;
        let win_us = window_ms * 1000;
        let mut now = real_now_us();
        // (clamped admission time, units, limit in force) of every admitted request.
        let mut admitted: Vec<(u64, u64, u64)> = Vec::new();
        let mut newest = 0u64;
        for (e, back) in evs.iter().zip(&backs) {
            // One step in four goes back, by up to twice the window.
            now = if e.step % 4 == 0 {
                now.saturating_sub(back * win_us / 1000)
            } else {
                now + forward_us(e, window_ms)
            };
            let l = sliding_log(e.limit, window_ms);
            let (allowed, remaining, retry, _) = env.ring(&id, &l, e.cost, now);
            if !allowed {
                prop_assert!(retry > 0, "a denial says when to retry");
                continue;
            }
            // The ring records an admission at the clock clamped to its newest slot...
            newest = newest.max(now);
            admitted.push((newest, e.cost, e.limit));
            // ...and then holds at most the limit in force in the window that ends there.
            let in_window: u64 = admitted
                .iter()
                .filter(|(t, _, _)| *t + win_us > newest)
                .map(|(_, c, _)| c)
                .sum();
            prop_assert!(in_window <= e.limit, "{in_window} in one window, limit {}", e.limit);
            prop_assert_eq!(remaining, e.limit - in_window);
        }
    });
}

#[test]
fn a_clock_step_back_is_clamped_to_the_newest_admission() {
    let env = Env::start();
    let t = real_now_us();
    let (s, w) = (1_000_000u64, 60_000u64);
    let l = sliding_log(3, w);
    assert_eq!(env.ring("step", &l, 1, t + 10 * s), (true, 2, 0, 60_000));
    // 5 s back (a failover to a replica whose clock is behind): counted from the newest slot.
    assert_eq!(env.ring("step", &l, 1, t + 5 * s), (true, 1, 0, 65_000));
    assert_eq!(env.ring("step", &l, 1, t + 5 * s), (true, 0, 0, 65_000));
    // Full: the oldest slot (written at t + 10 s) leaves at t + 70 s, real time.
    assert_eq!(
        env.ring("step", &l, 1, t + 6 * s),
        (false, 0, 64_000, 64_000)
    );
    assert!(!env.ring("step", &l, 1, t + 70 * s - 1).0);
    assert_eq!(env.ring("step", &l, 3, t + 70 * s), (true, 0, 0, 60_000));
}

#[test]
fn a_limit_change_grows_or_shrinks_the_ring_keeping_the_newest() {
    let env = Env::start();
    let t = real_now_us();
    let (ms, w) = (1_000u64, 60_000u64);
    for i in 0..3 {
        assert!(env.ring("resize", &sliding_log(3, w), 1, t + i * ms).0);
    }
    // Raised to 5: two more fit; the three earlier admissions still count.
    assert_eq!(
        env.ring("resize", &sliding_log(5, w), 2, t + 3 * ms),
        (true, 0, 0, 59_997)
    );
    // Lowered to 2 with 5 in the window: the 4th oldest must leave before one more fits.
    assert_eq!(
        env.ring("resize", &sliding_log(2, w), 1, t + 4 * ms),
        (false, 0, 59_999, 59_996)
    );
    // Once the three oldest left, the two newest (kept by the shrink) still count.
    assert_eq!(
        env.ring("resize", &sliding_log(2, w), 1, t + w * ms + 2 * ms),
        (false, 0, 1, 1)
    );
    assert_eq!(
        env.ring("resize", &sliding_log(2, w), 2, t + w * ms + 3 * ms),
        (true, 0, 0, 60_000)
    );
}
