//! The in-process store: rate limiting without Redis (single instance, tests, local fallback).
//!
//! It implements the arithmetic of `scripts/redis/*.lua` (specified in `scripts/redis/README.md`)
//! step for step, in integers, so that for the same sequence of calls it gives exactly the
//! verdicts Redis gives. All limits of one identity live in one shard, like the Redis hash tag,
//! so one short lock makes check-then-commit atomic; the lock is never held across an `.await`.
//! Entries carry the time their data stops mattering and are swept lazily as shards grow.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Algorithm, KeyBuilder, Limit, LimitOutcome, Store, StoreError, Verdict};

mod sliding_log;
use sliding_log::Ring;

const SHARDS: usize = 64;
/// A shard is swept once it has taken this many new keys, or as many as it held after its last
/// sweep if that is more, so sweeping costs O(1) amortised per insert and a shard holds at most
/// about twice its live keys plus this.
const MIN_SWEEP: usize = 256;

/// Counters kept in memory, sharded by identity. See the module docs.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    keys: KeyBuilder,
}

struct Shard {
    map: HashMap<Box<str>, Entry, ahash::RandomState>,
    inserts: usize,
    next_sweep: usize,
}

struct Entry {
    /// µs after which the data is equivalent to an absent key (the Lua scripts' TTL).
    expires_us: u64,
    data: Data,
}

enum Data {
    /// The last admission times (sliding_log).
    Log(Ring),
    /// Window index and count (fixed_window).
    Fixed { w: i128, k: i128 },
    /// Window index, current and previous counts (sliding_window).
    Sliding { w: i128, k: i128, p: i128 },
    /// Theoretical arrival time in µs (token_bucket).
    Tat(i128),
}

/// What a check hands to the commit, as in the Lua `state`.
enum Pending {
    Log(sliding_log::Seen),
    Fixed { idx: i128, k: i128, reset_ms: i128 },
    Sliding { idx: i128, k: i128, p: i128 },
    Tat(i128),
}

impl MemoryStore {
    pub fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(ahash::RandomState::new()),
                    inserts: 0,
                    next_sweep: MIN_SWEEP,
                })
            })
            .collect();
        MemoryStore {
            shards,
            hasher: ahash::RandomState::new(),
            keys: KeyBuilder::new("mem"),
        }
    }

    /// Entries currently held, expired or not (they go at the next sweep of their shard).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Store::check`] without the future, for callers that cannot await (the local fallback).
    pub fn check_sync(
        &self,
        identity: &str,
        limits: &[Limit],
        cost: u64,
        now_us: Option<u64>,
    ) -> Verdict {
        if limits.is_empty() {
            return Verdict {
                allowed: true,
                outcomes: Vec::new(),
            };
        }
        let now = now_us.unwrap_or_else(system_now_us);
        let cost = i128::from(cost.max(1));

        // Keys are built before taking the lock: one buffer, one allocation per request.
        let mut buf = String::with_capacity(64 * limits.len());
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(limits.len());
        for l in limits {
            let start = buf.len();
            self.keys.write_key(&mut buf, identity, l);
            ranges.push(start..buf.len());
        }

        let shard_idx = (self.hasher.hash_one(identity) as usize) % self.shards.len();
        let mut shard = lock(&self.shards[shard_idx]);

        let mut outcomes = Vec::with_capacity(limits.len());
        let mut pending = Vec::with_capacity(limits.len());
        let mut allowed = true;
        for (l, r) in limits.iter().zip(&ranges) {
            let p = LimitParams::new(l, cost, now);
            let entry = shard.map.get_mut(&buf[r.clone()]);
            let (outcome, state) = match l.algorithm {
                Algorithm::SlidingLog => sliding_log_check(entry, &p),
                Algorithm::SlidingWindow => sliding_window_check(entry, &p),
                Algorithm::FixedWindow => fixed_window_check(entry, &p),
                Algorithm::TokenBucket => token_bucket_check(entry, &p),
            };
            allowed &= outcome.allowed;
            outcomes.push(outcome);
            pending.push(state);
        }

        if allowed {
            for ((l, r), state) in limits.iter().zip(&ranges).zip(pending) {
                let p = LimitParams::new(l, cost, now);
                shard.commit(
                    &buf[r.clone()],
                    &p,
                    state.expect("allowed limits have a state"),
                );
            }
            shard.maybe_sweep(now);
        }
        Verdict { allowed, outcomes }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn check(
        &self,
        identity: &str,
        limits: &[Limit],
        cost: u64,
        now_us: Option<u64>,
    ) -> Result<Verdict, StoreError> {
        Ok(self.check_sync(identity, limits, cost, now_us))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// A poisoned shard still holds consistent counters (every update is a single assignment or
/// push), so keep serving it rather than failing every identity that hashes there.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn system_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One limit's inputs after the dispatcher's clamping, as i128 so no product can overflow.
struct LimitParams {
    limit: i128,
    window_ms: i128,
    cost: i128,
    now_us: i128,
}

impl LimitParams {
    fn new(l: &Limit, cost: i128, now_us: u64) -> Self {
        LimitParams {
            limit: i128::from(l.requests),
            window_ms: i128::from(l.window_ms.max(1)),
            cost,
            now_us: i128::from(now_us),
        }
    }
}

/// `floor(a / b)` for `b > 0` (Lua's `math.floor(a / b)`).
fn floor_div(a: i128, b: i128) -> i128 {
    a.div_euclid(b)
}

/// `ceil(a / b)` for `b > 0` (Lua's `math.ceil(a / b)`).
fn ceil_div(a: i128, b: i128) -> i128 {
    -(-a).div_euclid(b)
}

fn to_u64(v: i128) -> u64 {
    v.clamp(0, i128::from(u64::MAX)) as u64
}

fn to_us(v: i128) -> u64 {
    to_u64(v)
}

fn outcome(allowed: bool, remaining: i128, retry_ms: i128, reset_ms: i128) -> LimitOutcome {
    LimitOutcome {
        allowed,
        remaining: to_u64(remaining),
        retry_after_ms: to_u64(retry_ms),
        reset_ms: to_u64(reset_ms),
    }
}

type Checked = (LimitOutcome, Option<Pending>);

fn sliding_log_check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let ring = match entry {
        Some(Entry {
            data: Data::Log(ring),
            ..
        }) => Some(&*ring),
        _ => None,
    };
    let (outcome, seen) = sliding_log::check(ring, p);
    (outcome, seen.map(Pending::Log))
}

fn fixed_window_check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let now_ms = floor_div(p.now_us, 1000);
    let idx = floor_div(now_ms, p.window_ms);
    let n = match entry {
        Some(Entry {
            data: Data::Fixed { w, k },
            ..
        }) if *w == idx => *k,
        _ => 0,
    };
    let reset = (idx + 1) * p.window_ms - now_ms;
    if n + p.cost <= p.limit {
        let state = Pending::Fixed {
            idx,
            k: n + p.cost,
            reset_ms: reset,
        };
        return (outcome(true, p.limit - n - p.cost, 0, reset), Some(state));
    }
    let retry = if p.cost > p.limit { p.window_ms } else { reset };
    (outcome(false, (p.limit - n).max(0), retry, reset), None)
}

fn sliding_window_check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let w_ms = p.window_ms;
    let (l, c) = (p.limit, p.cost);
    let now_ms = floor_div(p.now_us, 1000);
    let idx = floor_div(now_ms, w_ms);
    let e = now_ms - idx * w_ms;
    let (cur, prev) = match entry {
        Some(Entry {
            data: Data::Sliding { w, k, p },
            ..
        }) => {
            if *w == idx {
                (*k, *p)
            } else if *w == idx - 1 {
                (0, *k)
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    };
    let reset = w_ms - e;
    let used = prev * (w_ms - e) + (cur + c) * w_ms;
    if used <= l * w_ms {
        let state = Pending::Sliding {
            idx,
            k: cur + c,
            p: prev,
        };
        let remaining = floor_div(l * w_ms - used, w_ms);
        return (outcome(true, remaining, 0, reset), Some(state));
    }
    let remaining = floor_div(l * w_ms - prev * (w_ms - e) - cur * w_ms, w_ms).max(0);
    let retry = if c > l {
        w_ms
    } else {
        // Later in this window, once prev's weight has shrunk enough...
        let this_window = if l - cur - c >= 0 && prev > 0 {
            let e2 = w_ms - floor_div((l - cur - c) * w_ms, prev);
            (e2 < w_ms).then_some(e2 - e)
        } else {
            None
        };
        // ...or in the next one, where this window's count becomes the weighted previous one.
        this_window.unwrap_or_else(|| {
            if cur == 0 {
                w_ms - e
            } else {
                let e3 = (w_ms - floor_div((l - c) * w_ms, cur)).max(0);
                (w_ms - e) + e3
            }
        })
    };
    (outcome(false, remaining, retry, reset), None)
}

fn token_bucket_check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let t = floor_div(p.window_ms * 1000, p.limit.max(1)).max(1);
    let tau = t * p.limit;
    let stored = match entry {
        Some(Entry {
            data: Data::Tat(tat),
            ..
        }) => *tat,
        _ => 0,
    };
    let tat = stored.max(p.now_us);
    let new = tat + p.cost * t;
    if new - p.now_us <= tau {
        let remaining = floor_div(tau - (new - p.now_us), t);
        let reset = ceil_div(new - p.now_us, 1000);
        return (outcome(true, remaining, 0, reset), Some(Pending::Tat(new)));
    }
    let retry = if p.cost > p.limit {
        p.window_ms
    } else {
        ceil_div(new - tau - p.now_us, 1000)
    };
    let remaining = floor_div(tau - (tat - p.now_us), t).max(0);
    let reset = ceil_div(tat - p.now_us, 1000);
    (outcome(false, remaining, retry, reset), None)
}

impl Shard {
    fn commit(&mut self, key: &str, p: &LimitParams, state: Pending) {
        let (data, expires_us) = match state {
            Pending::Log(seen) => {
                let expires_us = to_us(Ring::expires_us(&seen, p));
                if let Some(Entry {
                    data: Data::Log(ring),
                    expires_us: exp,
                }) = self.map.get_mut(key)
                {
                    ring.commit(&seen, p);
                    *exp = expires_us;
                    return;
                }
                (Data::Log(Ring::build(None, &seen, p)), expires_us)
            }
            Pending::Fixed { idx, k, reset_ms } => {
                (Data::Fixed { w: idx, k }, to_us(p.now_us + reset_ms * 1000))
            }
            Pending::Sliding { idx, k, p: prev } => (
                Data::Sliding { w: idx, k, p: prev },
                to_us(p.now_us + 2 * p.window_ms * 1000),
            ),
            Pending::Tat(new) => (Data::Tat(new), to_us(new)),
        };
        let entry = Entry { expires_us, data };
        match self.map.get_mut(key) {
            Some(e) => *e = entry,
            None => {
                self.map.insert(Box::from(key), entry);
                self.inserts += 1;
            }
        }
    }

    fn maybe_sweep(&mut self, now_us: u64) {
        if self.inserts < self.next_sweep {
            return;
        }
        self.map.retain(|_, e| e.expires_us > now_us);
        self.inserts = 0;
        self.next_sweep = self.map.len().max(MIN_SWEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn one(s: &MemoryStore, id: &str, l: &Limit, cost: u64, now: u64) -> (bool, u64, u64, u64) {
        let v = s.check_sync(id, std::slice::from_ref(l), cost, Some(now));
        let o = v.outcomes[0];
        assert_eq!(v.allowed, o.allowed);
        (o.allowed, o.remaining, o.retry_after_ms, o.reset_ms)
    }

    #[test]
    fn sliding_log_is_exact_at_the_boundary() {
        let s = MemoryStore::new();
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
        let s = MemoryStore::new();
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
        let s = MemoryStore::new();
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
        let s = MemoryStore::new();
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
        let s = MemoryStore::new();
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
            let s = MemoryStore::new();
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
        let s = MemoryStore::new();
        let limits = [
            lim("a", Algorithm::SlidingLog, 2, 60_000),
            lim("b", Algorithm::FixedWindow, 5, 60_000),
            lim("c", Algorithm::TokenBucket, 10, 60_000),
            lim("d", Algorithm::SlidingWindow, 10, 60_000),
        ];
        assert!(s.check_sync("x", &limits, 1, Some(B)).allowed);
        assert!(s.check_sync("x", &limits, 1, Some(B + MS)).allowed);
        let v = s.check_sync("x", &limits, 1, Some(B + 2 * MS));
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
            let o = s.check_sync("x", std::slice::from_ref(l), 1, Some(B + 2 * MS));
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
        assert!(!s.check_sync("y", &two, 3, Some(B)).allowed);
        assert_eq!(one(&s, "y", &two[0], 1, B), (true, 9, 0, 60_000));
    }

    #[test]
    fn empty_tier_is_allowed_and_stores_nothing() {
        let s = MemoryStore::default();
        let v = s.check_sync("a", &[], 1, None);
        assert!(v.allowed && v.outcomes.is_empty());
        assert!(s.is_empty());
        assert_eq!(s.kind(), "memory");
    }

    #[test]
    fn none_uses_the_system_clock() {
        let s = MemoryStore::new();
        let l = lim("m", Algorithm::FixedWindow, 1, 3_600_000);
        let now = system_now_us();
        assert!(s.check_sync("a", std::slice::from_ref(&l), 1, None).allowed);
        // Same hour (unless it just turned): the explicit clock sees the request.
        let v = s.check_sync("a", std::slice::from_ref(&l), 1, Some(now));
        let crossed = (system_now_us() / 3_600_000_000) != now / 3_600_000_000;
        assert!(crossed || !v.allowed);
    }

    #[test]
    fn expired_entries_are_evicted() {
        let s = MemoryStore::new();
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
                assert!(s.check_sync(&id, &limits, 1, Some(now)).allowed);
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
        let s = MemoryStore::new();
        let l = [lim("m", Algorithm::SlidingLog, 1, 1_000)];
        assert!(s.check("a", &l, 1, Some(B)).await.unwrap().allowed);
        assert!(!s.check("a", &l, 1, Some(B)).await.unwrap().allowed);
        assert!(s.ping().await.is_ok());
    }
}
