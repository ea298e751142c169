//! Who is being limited right now: a bounded-memory heavy-hitter sketch of limited requests,
//! kept on this replica, behind `GET /v1/top` and the `tollgate_top_limited` gauge.
//!
//! Time is cut into slices of [`SLICE`]; each slice keeps a Space-Saving summary of at most
//! [`CAPACITY`] identities (Metwally et al.): a new identity arriving at a full summary takes
//! the place of the smallest count and inherits it, plus one. So an identity limited more than
//! `1/CAPACITY` of a slice's total is always present and its count is over-estimated by at most
//! that smallest count: exact order for the heavy hitters, approximate counts, and fixed memory
//! however many distinct callers there are (a flood of a million IPs churns the tail of each
//! summary and grows nothing). A query merges the slices of its window.
//!
//! Recording happens only for limited requests. Each worker thread writes to its own shard, so
//! the mutex it takes is almost never contended; a query visits every shard.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Length of one time slice.
pub const SLICE: Duration = Duration::from_secs(5);
/// The longest window a query may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(300);
/// Identities per slice summary.
pub const CAPACITY: usize = 64;
const SLICES: usize = (MAX_WINDOW.as_secs() / SLICE.as_secs()) as usize + 1;
const SHARDS: usize = 8;

pub struct TopLimited {
    epoch: Instant,
    shards: Box<[Mutex<Ring>]>,
}

/// The slices of one shard, indexed by slice number modulo [`SLICES`].
struct Ring {
    slices: Vec<Summary>,
}

#[derive(Default)]
struct Summary {
    /// The slice number this summary counts (a stale one is cleared before reuse).
    slice: u64,
    counts: Vec<(Box<str>, u64)>,
    index: HashMap<Box<str>, usize, ahash::RandomState>,
}

impl Summary {
    fn add(&mut self, identity: &str) {
        if let Some(&i) = self.index.get(identity) {
            self.counts[i].1 += 1;
            return;
        }
        if self.counts.len() < CAPACITY {
            self.index.insert(identity.into(), self.counts.len());
            self.counts.push((identity.into(), 1));
            return;
        }
        let Some((i, _)) = self.counts.iter().enumerate().min_by_key(|(_, c)| c.1) else {
            return;
        };
        let (old, min) = std::mem::replace(&mut self.counts[i], (identity.into(), 0));
        self.index.remove(&old);
        self.index.insert(identity.into(), i);
        self.counts[i].1 = min + 1;
    }

    fn clear(&mut self, slice: u64) {
        self.slice = slice;
        self.counts.clear();
        self.index.clear();
    }
}

impl Default for TopLimited {
    fn default() -> Self {
        Self::new()
    }
}

impl TopLimited {
    pub fn new() -> Self {
        let ring = || Ring {
            slices: (0..SLICES).map(|_| Summary::default()).collect(),
        };
        TopLimited {
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(ring())).collect(),
        }
    }

    fn slice_now(&self) -> u64 {
        self.epoch.elapsed().as_secs() / SLICE.as_secs() + 1
    }

    /// Counts one limited request of `identity` (a key id or `ip:<addr>`, never a raw key).
    pub fn record(&self, identity: &str) {
        let slice = self.slice_now();
        let mut ring = lock(&self.shards[thread_shard()]);
        let s = &mut ring.slices[(slice % SLICES as u64) as usize];
        if s.slice != slice {
            s.clear(slice);
        }
        s.add(identity);
    }

    /// The `n` identities limited most over the last `window` (at most [`MAX_WINDOW`]), most
    /// limited first, with their approximate counts.
    pub fn top(&self, n: usize, window: Duration) -> Vec<(String, u64)> {
        let now = self.slice_now();
        let span = window
            .min(MAX_WINDOW)
            .as_secs()
            .div_ceil(SLICE.as_secs())
            .max(1);
        let oldest = now.saturating_sub(span - 1);
        let mut merged: HashMap<String, u64> = HashMap::new();
        for shard in self.shards.iter() {
            let ring = lock(shard);
            for s in ring
                .slices
                .iter()
                .filter(|s| s.slice >= oldest && s.slice <= now)
            {
                for (id, c) in &s.counts {
                    *merged.entry(id.to_string()).or_default() += c;
                }
            }
        }
        let mut top: Vec<(String, u64)> = merged.into_iter().collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    // Counts stay consistent whatever a panicking holder was doing: keep serving them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A shard per thread, handed out round robin on first use.
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SHARD.with(|s| {
        *s.get()
            .get_or_insert_with(|| NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_a_flood_of_distinct_callers() {
        let t = TopLimited::new();
        for i in 0..200_000u32 {
            if i % 4 == 0 {
                t.record("abuser");
            }
            if i % 10 == 0 {
                t.record("ip:10.0.0.9");
            }
            t.record(&format!("ip:192.0.{}.{}", i >> 8 & 255, i & 255));
        }
        let top = t.top(3, Duration::from_secs(60));
        assert_eq!(top[0].0, "abuser");
        assert_eq!(top[1].0, "ip:10.0.0.9");
        // Over-estimated by at most the summary's smallest count, never under.
        assert!(top[0].1 >= 50_000, "{top:?}");
        let held: usize = t
            .shards
            .iter()
            .map(|s| lock(s).slices.iter().map(|x| x.counts.len()).sum::<usize>())
            .sum();
        assert!(held <= SHARDS * SLICES * CAPACITY);
    }

    #[test]
    fn an_exact_order_for_a_few_identities() {
        let t = TopLimited::new();
        for (id, n) in [("a", 5), ("b", 9), ("c", 1)] {
            for _ in 0..n {
                t.record(id);
            }
        }
        let top = t.top(10, Duration::from_secs(60));
        assert_eq!(
            top,
            [("b".into(), 9), ("a".into(), 5), ("c".into(), 1)].to_vec()
        );
        assert_eq!(t.top(1, Duration::from_secs(1)).len(), 1);
    }
}
