//! Remembers, per replica, which identities Redis has said are over a limit and until when.
//!
//! A key hammering far above its limit is then rejected locally until its slot frees, without a
//! Redis round trip. It only ever *rejects*, and only until the moment Redis itself named, so
//! it can never admit more than Redis would. Entries are tied to the config generation: a reload
//! that raises a limit is honoured at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Verdict;

const SHARDS: usize = 32;
/// Bounds memory under a flood of distinct identities.
const MAX_PER_SHARD: usize = 4096;

struct Entry {
    until: Instant,
    verdict: Verdict,
}

pub struct OverLimitCache {
    hasher: ahash::RandomState,
    shards: Vec<Mutex<HashMap<u64, Entry>>>,
}

impl Default for OverLimitCache {
    fn default() -> Self {
        Self::new()
    }
}

impl OverLimitCache {
    pub fn new() -> Self {
        OverLimitCache {
            hasher: ahash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Every identity of the request takes part: a denial by a policy's shared budget (an IP,
    /// a header value, `global`) must not be replayed for the same caller with other budgets.
    fn slot<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        tier: &str,
        generation: u64,
    ) -> (usize, u64) {
        let mut h = self.hasher.build_hasher();
        for identity in identities {
            identity.hash(&mut h);
        }
        tier.hash(&mut h);
        generation.hash(&mut h);
        let k = h.finish();
        ((k as usize) % SHARDS, k)
    }

    /// A cached denial with its retry time counted down to `now`, if one is still running.
    pub fn get<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        tier: &str,
        generation: u64,
    ) -> Option<Verdict> {
        let (s, k) = self.slot(identities, tier, generation);
        let now = Instant::now();
        let mut shard = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(&k)?;
        if e.until <= now {
            shard.remove(&k);
            return None;
        }
        let left = (e.until - now).as_millis() as u64;
        let mut v = e.verdict.clone();
        for o in v.outcomes.iter_mut().filter(|o| !o.allowed) {
            o.retry_after_ms = o.retry_after_ms.min(left).max(1);
        }
        Some(v)
    }

    /// Forgets every cached denial (a reset of some identity's counters makes them stale).
    pub fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Records a denial; the entry lives until the earliest moment Redis could admit again.
    pub fn put<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        tier: &str,
        generation: u64,
        verdict: &Verdict,
    ) {
        let wait = verdict.retry_after_ms();
        if verdict.allowed || wait == 0 {
            return;
        }
        let (s, k) = self.slot(identities, tier, generation);
        let now = Instant::now();
        let mut shard = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= MAX_PER_SHARD {
            shard.retain(|_, e| e.until > now);
            if shard.len() >= MAX_PER_SHARD {
                return;
            }
        }
        shard.insert(
            k,
            Entry {
                until: now + Duration::from_millis(wait),
                verdict: verdict.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::LimitOutcome;

    fn denied(ms: u64) -> Verdict {
        Verdict {
            allowed: false,
            outcomes: vec![LimitOutcome {
                allowed: false,
                remaining: 0,
                retry_after_ms: ms,
                reset_ms: ms,
            }],
        }
    }

    #[test]
    fn holds_until_redis_said_then_forgets() {
        let c = OverLimitCache::new();
        c.put(["k:1"], "free", 1, &denied(40));
        assert!(c.get(["k:1"], "free", 1).is_some());
        assert!(c.get(["k:1"], "free", 2).is_none(), "a reload invalidates");
        assert!(c.get(["k:2"], "free", 1).is_none());
        assert!(c.get(["k:1", "global"], "free", 1).is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert!(c.get(["k:1"], "free", 1).is_none());
    }
}
