//! The in-process store: rate limiting without Redis (single instance, tests, local fallback).
//!
//! It implements the arithmetic of `scripts/redis/*.lua` (specified in `scripts/redis/README.md`)
//! step for step, in integers, one file per algorithm like the scripts, so that for the same
//! sequence of calls it gives exactly the verdicts Redis gives. All limits of one identity live
//! in one shard, like the Redis hash tag; a request locks the shards of its budgets in index
//! order (never two requests in opposite orders), so check-then-commit is atomic across budgets.
//! No lock is held across an `.await`. Entries carry the time their data stops mattering and are
//! swept lazily as shards grow.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{KeyBuilder, Store, StoreError};
use crate::limiter::{Algorithm, Budget, Clock, Usage, Verdict};

mod fixed_window;
mod params;
mod sliding_log;
mod sliding_window;
#[cfg(test)]
mod tests;
mod token_bucket;

use params::LimitParams;

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
    clock: Clock,
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
    Log(sliding_log::Ring),
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
    /// A store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::Store)
    }

    pub fn with_clock(clock: Clock) -> Self {
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
            clock,
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
    pub fn check_sync(&self, budgets: &[Budget<'_>], cost: u64) -> Verdict {
        self.run(budgets, i128::from(cost.max(1)), true)
    }

    /// [`Store::peek`] without the future: every check at cost 0, and no commit.
    pub fn peek_sync(&self, budgets: &[Budget<'_>]) -> Vec<Usage> {
        let v = self.run(budgets, 0, false);
        let limits = budgets.iter().flat_map(|b| b.limits);
        v.outcomes
            .iter()
            .zip(limits)
            .map(|(o, l)| Usage::new(l, o.remaining, o.reset_ms))
            .collect()
    }

    /// [`Store::reset`] without the future.
    pub fn reset_sync(&self, budgets: &[Budget<'_>]) {
        let keys = self.keys.keys(budgets);
        let mut k = 0;
        for b in budgets {
            let mut shard = lock(&self.shards[self.shard_index(b.identity)]);
            for _ in b.limits {
                shard.map.remove(keys.get(k));
                k += 1;
            }
        }
    }

    /// Checks every limit at `cost`, then commits all of them when all admit and `commit` holds.
    fn run(&self, budgets: &[Budget<'_>], cost: i128, commit: bool) -> Verdict {
        let now = self.clock.now_us();
        // Keys are built before taking any lock.
        let keys = self.keys.keys(budgets);
        let shard_of: Vec<usize> = budgets
            .iter()
            .map(|b| self.shard_index(b.identity))
            .collect();
        let mut order = shard_of.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<MutexGuard<'_, Shard>> =
            order.iter().map(|&i| lock(&self.shards[i])).collect();
        let guard_of = |budget: usize| order.binary_search(&shard_of[budget]).unwrap_or(0);

        let mut outcomes = Vec::with_capacity(keys.len());
        let mut pending = Vec::with_capacity(keys.len());
        let mut allowed = true;
        let mut k = 0;
        for (bi, b) in budgets.iter().enumerate() {
            let shard = &mut guards[guard_of(bi)];
            for l in b.limits {
                let p = LimitParams::new(l, cost, now);
                let entry = shard.map.get_mut(keys.get(k));
                let (outcome, state) = match l.algorithm {
                    Algorithm::SlidingLog => sliding_log::check(entry, &p),
                    Algorithm::SlidingWindow => sliding_window::check(entry, &p),
                    Algorithm::FixedWindow => fixed_window::check(entry, &p),
                    Algorithm::TokenBucket => token_bucket::check(entry, &p),
                };
                allowed &= outcome.allowed;
                outcomes.push(outcome);
                pending.push(state);
                k += 1;
            }
        }
        if allowed && commit {
            let mut pending = pending.into_iter();
            let mut k = 0;
            for (bi, b) in budgets.iter().enumerate() {
                let shard = &mut guards[guard_of(bi)];
                for l in b.limits {
                    let p = LimitParams::new(l, cost, now);
                    if let Some(Some(state)) = pending.next() {
                        shard.commit(keys.get(k), &p, state);
                    }
                    k += 1;
                }
            }
            for g in &mut guards {
                g.maybe_sweep(now);
            }
        }
        Verdict { allowed, outcomes }
    }

    fn shard_index(&self, identity: &str) -> usize {
        (self.hasher.hash_one(identity) as usize) % self.shards.len()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn check(&self, budgets: &[Budget<'_>], cost: u64) -> Result<Verdict, StoreError> {
        Ok(self.check_sync(budgets, cost))
    }

    async fn peek(&self, budgets: &[Budget<'_>]) -> Result<Vec<Usage>, StoreError> {
        Ok(self.peek_sync(budgets))
    }

    async fn reset(&self, budgets: &[Budget<'_>]) -> Result<(), StoreError> {
        self.reset_sync(budgets);
        Ok(())
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

impl Shard {
    fn commit(&mut self, key: &str, p: &LimitParams, state: Pending) {
        let to_us = params::to_u64;
        let entry = match state {
            Pending::Log(seen) => match sliding_log::append(self.map.get_mut(key), &seen, p) {
                Some(()) => return,
                None => sliding_log::fresh(&seen, p),
            },
            Pending::Fixed { idx, k, reset_ms } => Entry {
                data: Data::Fixed { w: idx, k },
                expires_us: to_us(p.now_us + reset_ms * 1000),
            },
            Pending::Sliding { idx, k, p: prev } => Entry {
                data: Data::Sliding { w: idx, k, p: prev },
                expires_us: to_us(p.now_us + 2 * p.window_ms * 1000),
            },
            Pending::Tat(new) => Entry {
                data: Data::Tat(new),
                expires_us: to_us(new),
            },
        };
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
