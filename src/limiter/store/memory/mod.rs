//! The in-process store: rate limiting without Redis (single instance, tests, local fallback).
//!
//! It implements the arithmetic of `scripts/redis/*.lua` (specified in `scripts/redis/README.md`)
//! step for step, in integers, one file per algorithm like the scripts, so that for the same
//! sequence of calls it gives exactly the verdicts Redis gives. All limits of one identity live
//! in one shard, like the Redis hash tag; a request locks the shards of its budgets in index
//! order (never two requests in opposite orders), so check-then-commit is atomic across budgets.
//! No lock is held across an `.await`. Entries carry the time their data stops mattering; they
//! are swept as shards grow and by a background thread every second ([`MemoryStore::start_sweeper`]).
//! At most `memory_max_identities` identities are held (`capacity.rs`); when full, a new
//! identity is counted in its tier's shared overflow bucket, in a shard of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{KeyBuilder, KeySet, Lease, Store, StoreError};
use crate::limiter::{Algorithm, Budget, Clock, Limit, Usage, Verdict};
use crate::metrics;

mod capacity;
mod fixed_window;
mod leases;
mod params;
mod sliding_log;
mod sliding_window;
#[cfg(test)]
mod tests;
mod token_bucket;

pub use capacity::DEFAULT_MAX_IDENTITIES;
use capacity::{identity_of, overflow_identity, Capacity};
use params::LimitParams;

const SHARDS: usize = 64;
/// A shard is swept once it has taken this many new keys, or as many as it held after its last
/// sweep if that is more, so sweeping costs O(1) amortised per insert and a shard holds at most
/// about twice its live keys plus this.
const MIN_SWEEP: usize = 256;

/// Counters kept in memory, sharded by identity. See the module docs.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    /// The overflow buckets (one identity per tier), outside the identity cap.
    overflow: Mutex<Shard>,
    hasher: ahash::RandomState,
    keys: KeyBuilder,
    clock: Clock,
    capacity: Capacity,
    /// Concurrency slots (`leases.rs`, the twin of `concurrency.lua`).
    leases: leases::Leases,
}

struct Shard {
    map: HashMap<Box<str>, Entry, ahash::RandomState>,
    /// Identity → how many of its keys this shard holds.
    identities: HashMap<Box<str>, u32, ahash::RandomState>,
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
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect();
        MemoryStore {
            shards,
            overflow: Mutex::new(Shard::new()),
            hasher: ahash::RandomState::new(),
            keys: KeyBuilder::new("mem"),
            clock,
            capacity: Capacity::new(),
            leases: leases::Leases::default(),
        }
    }

    /// Caps the identities held (`memory_max_identities`); takes effect for new identities.
    pub fn set_max_identities(&self, max: usize) {
        self.capacity.set_max(max);
    }

    /// Identities currently holding at least one entry (the overflow buckets not counted).
    pub fn identities(&self) -> usize {
        self.capacity.held()
    }

    /// Entries currently held, expired or not (they go at the next sweep of their shard).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum::<usize>()
            + lock(&self.overflow).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees every expired entry now. [`MemoryStore::start_sweeper`] calls it every second, so
    /// memory goes back without waiting for new traffic.
    pub fn sweep(&self) {
        let now = self.clock.now_us();
        for shard in self.shards.iter() {
            let freed = lock(shard).sweep(now);
            self.capacity.release(freed);
        }
        lock(&self.overflow).sweep(now);
        self.leases.sweep(now);
    }

    /// [`Store::acquire`] without the future (the local fallback).
    pub fn acquire_sync(
        &self,
        identity: &str,
        token: u64,
        max: u64,
        lease: std::time::Duration,
    ) -> Lease {
        let now = self.clock.now_us();
        let lease_us = lease.as_micros() as u64;
        self.leases.acquire(identity, token, max, lease_us, now)
    }

    /// [`Store::release`] without the future.
    pub fn release_sync(&self, identity: &str, token: u64) {
        self.leases.release(identity, token);
    }

    /// A background thread that sweeps every `every` for as long as the store lives.
    pub fn start_sweeper(self: &Arc<Self>, every: std::time::Duration) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("tollgate-mem-sweep".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(store) => store.sweep(),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            log::warn!("in-process store: no sweeper thread ({e}); expired entries go on traffic");
        }
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
                let freed = shard.remove(keys.get(k));
                self.capacity.release(freed);
                k += 1;
            }
        }
    }

    /// Checks every limit at `cost`, then commits all of them when all admit and `commit` holds
    /// (a peek never takes a place for a new identity, nor reads an overflow bucket for it).
    fn run(&self, budgets: &[Budget<'_>], cost: i128, commit: bool) -> Verdict {
        let now = self.clock.now_us();
        // Keys are built before taking any lock.
        let mut keys = self.keys.keys(budgets);
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

        let holds = |bi: usize| guards[guard_of(bi)].holds(budgets[bi].identity);
        let (reserved, spill) = match commit {
            true => self.make_room(budgets, holds),
            false => (0, vec![false; budgets.len()]),
        };
        // The overflow shard is locked after every other one, so the lock order stays global.
        let mut overflow = None;
        if spill.iter().any(|&s| s) {
            overflow = Some(lock(&self.overflow));
            metrics::store_overflow();
            keys = self.spilled_keys(budgets, &spill);
        }

        let mut outcomes = Vec::with_capacity(keys.len());
        let mut pending = Vec::with_capacity(keys.len());
        let mut allowed = true;
        let mut k = 0;
        for (bi, b) in budgets.iter().enumerate() {
            let shard = match (&mut overflow, spill[bi]) {
                (Some(o), true) => &mut **o,
                _ => &mut *guards[guard_of(bi)],
            };
            for l in b.limits {
                let p = LimitParams::new(l, cost, now);
                let (outcome, state) = check_one(shard.map.get_mut(keys.get(k)), l, &p);
                allowed &= outcome.allowed;
                outcomes.push(outcome);
                pending.push(state);
                k += 1;
            }
        }
        if !(allowed && commit) {
            self.capacity.release(reserved);
            return Verdict { allowed, outcomes };
        }
        let mut pending = pending.into_iter();
        let mut k = 0;
        for (bi, b) in budgets.iter().enumerate() {
            let shard = match (&mut overflow, spill[bi]) {
                (Some(o), true) => &mut **o,
                _ => &mut *guards[guard_of(bi)],
            };
            for l in b.limits {
                let p = LimitParams::new(l, cost, now);
                if let Some(Some(state)) = pending.next() {
                    shard.commit(keys.get(k), &p, state);
                }
                k += 1;
            }
        }
        for g in &mut guards {
            let freed = g.maybe_sweep(now);
            self.capacity.release(freed);
        }
        Verdict { allowed, outcomes }
    }

    /// New identities take a place first; those that find none count in the overflow bucket
    /// (`spill`). Returns the places taken, to give back if the request is refused.
    fn make_room(
        &self,
        budgets: &[Budget<'_>],
        holds: impl Fn(usize) -> bool,
    ) -> (usize, Vec<bool>) {
        let mut reserved = 0;
        let mut spill = vec![false; budgets.len()];
        for (bi, b) in budgets.iter().enumerate() {
            if b.limits.is_empty() || holds(bi) {
                continue;
            }
            // Two budgets of one request may share a new identity: one place for both.
            match budgets[..bi]
                .iter()
                .position(|o| o.identity == b.identity && !o.limits.is_empty())
            {
                Some(first) => spill[bi] = spill[first],
                None if self.capacity.try_reserve() => reserved += 1,
                None => spill[bi] = true,
            }
        }
        (reserved, spill)
    }

    /// The keys of `budgets`, the spilled ones under their overflow bucket's identity.
    fn spilled_keys(&self, budgets: &[Budget<'_>], spill: &[bool]) -> KeySet {
        let names: Vec<String> = budgets
            .iter()
            .map(|b| overflow_identity(b.overflow))
            .collect();
        let spilled: Vec<Budget<'_>> = budgets
            .iter()
            .zip(&names)
            .zip(spill)
            .map(|((b, name), &s)| if s { Budget::new(name, b.limits) } else { *b })
            .collect();
        self.keys.keys(&spilled)
    }

    fn shard_index(&self, identity: &str) -> usize {
        (self.hasher.hash_one(identity) as usize) % self.shards.len()
    }
}

fn check_one(entry: Option<&mut Entry>, l: &Limit, p: &LimitParams) -> params::Checked {
    match l.algorithm {
        Algorithm::SlidingLog => sliding_log::check(entry, p),
        Algorithm::SlidingWindow => sliding_window::check(entry, p),
        Algorithm::FixedWindow => fixed_window::check(entry, p),
        Algorithm::TokenBucket => token_bucket::check(entry, p),
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

    async fn acquire(
        &self,
        identity: &str,
        token: u64,
        max: u64,
        lease: std::time::Duration,
    ) -> Result<Lease, StoreError> {
        Ok(self.acquire_sync(identity, token, max, lease))
    }

    async fn release(&self, identity: &str, token: u64) -> Result<(), StoreError> {
        self.release_sync(identity, token);
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
    fn new() -> Self {
        Shard {
            map: HashMap::with_hasher(ahash::RandomState::new()),
            identities: HashMap::with_hasher(ahash::RandomState::new()),
            inserts: 0,
            next_sweep: MIN_SWEEP,
        }
    }

    fn holds(&self, identity: &str) -> bool {
        self.identities.contains_key(identity)
    }

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
                let identity = identity_of(key);
                match self.identities.get_mut(identity) {
                    Some(n) => *n += 1,
                    None => {
                        self.identities.insert(Box::from(identity), 1);
                    }
                }
                self.inserts += 1;
            }
        }
    }

    /// Removes one key; returns 1 when that was its identity's last.
    fn remove(&mut self, key: &str) -> usize {
        if self.map.remove(key).is_none() {
            return 0;
        }
        let identity = identity_of(key);
        match self.identities.get_mut(identity) {
            Some(n) if *n > 1 => {
                *n -= 1;
                0
            }
            Some(_) => {
                self.identities.remove(identity);
                1
            }
            None => 0,
        }
    }

    /// Sweeps when enough keys arrived since the last sweep; returns the identities freed.
    fn maybe_sweep(&mut self, now_us: u64) -> usize {
        if self.inserts < self.next_sweep {
            return 0;
        }
        self.sweep(now_us)
    }

    /// Drops every expired entry; returns how many identities lost their last key.
    fn sweep(&mut self, now_us: u64) -> usize {
        let mut freed = 0;
        let identities = &mut self.identities;
        self.map.retain(|key, e| {
            if e.expires_us > now_us {
                return true;
            }
            if let Some(n) = identities.get_mut(identity_of(key)) {
                *n -= 1;
                if *n == 0 {
                    identities.remove(identity_of(key));
                    freed += 1;
                }
            }
            false
        });
        self.inserts = 0;
        self.next_sweep = self.map.len().max(MIN_SWEEP);
        freed
    }
}
