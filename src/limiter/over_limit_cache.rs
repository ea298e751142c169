//! Remembers, per replica, which identities Redis has said are over a limit, for which cost,
//! and until when.
//!
//! A key hammering far above its limit is then rejected locally until its slot frees, without a
//! Redis round trip. A cached denial answers only a request that Redis would refuse too:
//!
//! * its cost is at least the cost Redis refused. Every limit that refused had fewer units left
//!   than that cost; usage only grows until the refusal's retry time (other requests, other
//!   replicas), and a larger cost needs at least as long to fit, so Redis refuses it too, at
//!   least until then. A cheaper request (a `cost: 1` route after a `cost: 3` refusal) goes to
//!   Redis, which may still have a unit for it;
//! * it comes before the retry time Redis named, on the store's clock;
//! * it was made under the same configuration generation (a reload that raises a limit is
//!   honoured at once) and after the last reset of this cache.
//!
//! So the cache can never admit anything, and never refuses what Redis would admit.
//!
//! No lock on the request path: the table is a fixed array of slots, each an atomically
//! swapped pointer to an immutable entry ([`ArcSwapOption`]). A lookup is one atomic load; a
//! denial replaces its slot's entry (an identity whose slot another one took simply asks Redis
//! again). Every worker thread sees every denial, including one that came back late
//! (`decide.rs`). [`OverLimitCache::clear`] bumps an epoch that every entry is checked against.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;

use super::{Clock, Verdict};

/// Slots of the table (a power of two): bounds memory under a flood of distinct identities.
const SLOTS: usize = 16 * 1024;

struct Entry {
    /// The full hash of identity, scope and generation: tells the slot's owner apart.
    key: u64,
    /// The store clock's time (µs) until which Redis refuses `cost` or more.
    until_us: u64,
    cost: u64,
    epoch: u64,
    verdict: Verdict,
}

pub struct OverLimitCache {
    hasher: ahash::RandomState,
    slots: Box<[ArcSwapOption<Entry>]>,
    /// Bumped by `clear`; older entries are ignored.
    epoch: AtomicU64,
    /// The store's clock (a manual one in tests); the local monotonic clock stands in for
    /// Redis `TIME`, which only the durations Redis answers are measured against.
    clock: Clock,
    started: Instant,
}

impl Default for OverLimitCache {
    fn default() -> Self {
        Self::new(Clock::Store)
    }
}

impl OverLimitCache {
    pub fn new(clock: Clock) -> Self {
        OverLimitCache {
            hasher: ahash::RandomState::new(),
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            epoch: AtomicU64::new(0),
            clock,
            started: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        self.clock
            .fixed_us()
            .unwrap_or_else(|| self.started.elapsed().as_micros() as u64)
    }

    /// Every identity of the request takes part: a denial by a policy's shared budget (an IP,
    /// a header value, `global`) must not be replayed for the same caller with other budgets.
    fn key<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        scope: &str,
        generation: u64,
    ) -> u64 {
        let mut h = self.hasher.build_hasher();
        for identity in identities {
            identity.hash(&mut h);
        }
        scope.hash(&mut h);
        generation.hash(&mut h);
        h.finish()
    }

    fn slot(&self, key: u64) -> &ArcSwapOption<Entry> {
        &self.slots[key as usize & (SLOTS - 1)]
    }

    /// A cached denial for a request of `cost`, with its retry time counted down to now, when
    /// Redis would refuse that request too (see the module docs).
    pub fn get<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        scope: &str,
        generation: u64,
        cost: u64,
    ) -> Option<Verdict> {
        let k = self.key(identities, scope, generation);
        let guard = self.slot(k).load();
        let e = guard.as_ref()?;
        let now = self.now_us();
        if e.key != k
            || e.until_us <= now
            || e.epoch != self.epoch.load(Ordering::Relaxed)
            || cost < e.cost
        {
            return None;
        }
        let left_ms = (e.until_us - now).div_ceil(1000);
        let mut v = e.verdict.clone();
        for o in v.outcomes.iter_mut().filter(|o| !o.allowed) {
            o.retry_after_ms = o.retry_after_ms.min(left_ms).max(1);
        }
        Some(v)
    }

    /// Records a denial of a request of `cost`; it holds until the earliest moment Redis could
    /// admit that cost again. A newer denial replaces an older one.
    pub fn put<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        (scope, generation): (&str, u64),
        cost: u64,
        verdict: &Verdict,
    ) {
        let wait_ms = verdict.retry_after_ms();
        if verdict.allowed || wait_ms == 0 {
            return;
        }
        let key = self.key(identities, scope, generation);
        let entry = Entry {
            key,
            until_us: self.now_us() + wait_ms * 1000,
            cost,
            epoch: self.epoch.load(Ordering::Relaxed),
            verdict: verdict.clone(),
        };
        self.slot(key).store(Some(Arc::new(entry)));
    }

    /// Forgets every denial (an operator reset a budget).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::LimitOutcome;

    fn denied(ms: u64, remaining: u64) -> Verdict {
        Verdict {
            allowed: false,
            outcomes: vec![LimitOutcome {
                allowed: false,
                remaining,
                retry_after_ms: ms,
                reset_ms: ms,
            }],
        }
    }

    #[test]
    fn holds_until_redis_said_then_forgets() {
        let clock = Clock::manual(1_000_000);
        let c = OverLimitCache::new(clock.clone());
        c.put(["k:1"], ("free", 1), 1, &denied(40, 0));
        assert!(c.get(["k:1"], "free", 1, 1).is_some());
        assert!(
            c.get(["k:1"], "free", 2, 1).is_none(),
            "a reload invalidates"
        );
        assert!(c.get(["k:2"], "free", 1, 1).is_none());
        clock.advance_us(39_000);
        assert_eq!(c.get(["k:1"], "free", 1, 1).unwrap().retry_after_ms(), 1);
        clock.advance_us(1_000);
        assert!(c.get(["k:1"], "free", 1, 1).is_none());
    }

    #[test]
    fn a_cheaper_request_goes_to_redis() {
        // Limit 10, three cost-3 requests admitted, the fourth refused with 1 unit left.
        let c = OverLimitCache::new(Clock::manual(5_000_000));
        c.put(["k:1"], ("t", 1), 3, &denied(60_000, 1));
        assert!(
            c.get(["k:1"], "t", 1, 1).is_none(),
            "Redis has a unit for cost 1"
        );
        assert!(c.get(["k:1"], "t", 1, 2).is_none());
        assert!(c.get(["k:1"], "t", 1, 3).is_some());
        assert!(c.get(["k:1"], "t", 1, 7).is_some());
    }

    #[test]
    fn every_thread_sees_a_denial_and_clear_forgets_it() {
        let c = OverLimitCache::new(Clock::manual(1));
        let other = OverLimitCache::new(Clock::manual(1));
        c.put(["k:1"], ("t", 1), 1, &denied(1000, 0));
        assert!(other.get(["k:1"], "t", 1, 1).is_none(), "caches are apart");
        std::thread::scope(|s| {
            s.spawn(|| assert!(c.get(["k:1"], "t", 1, 1).is_some(), "shared by threads"));
        });
        c.clear();
        assert!(c.get(["k:1"], "t", 1, 1).is_none());
    }
}
