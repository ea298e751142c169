//! How many identities the in-process store holds, and the cap on them (`memory_max_identities`).
//!
//! Every shard keeps, per identity, how many of its keys it holds; the identity counts once
//! across the store while it has a key. A new identity takes a place *before* it is checked
//! (a compare-and-swap below the cap), so concurrent requests can never push the store past the
//! cap; a request that is then refused gives its place back. When no place is left, the
//! identity's budgets are counted in its tier's shared overflow bucket instead (see
//! [`overflow_identity`]): judged by the same limits, never admitted without limit.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default `memory_max_identities`.
pub const DEFAULT_MAX_IDENTITIES: usize = 1_000_000;

/// The identity count and its cap, shared by every shard.
#[derive(Debug)]
pub(super) struct Capacity {
    held: AtomicUsize,
    max: AtomicUsize,
}

impl Capacity {
    pub fn new() -> Self {
        Capacity {
            held: AtomicUsize::new(0),
            max: AtomicUsize::new(DEFAULT_MAX_IDENTITIES),
        }
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes a place for a new identity; false when the store is full.
    pub fn try_reserve(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back `n` places (refused requests, identities whose last key expired).
    pub fn release(&self, n: usize) {
        if n > 0 {
            let _ = self
                .held
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |h| {
                    Some(h.saturating_sub(n))
                });
        }
    }
}

/// The identity a budget is counted under when the store is full: one per overflow scope (the
/// caller's tier). `~` cannot start any other identity, so it never meets a real one.
pub(super) fn overflow_identity(scope: &str) -> String {
    format!("~overflow:{scope}")
}

/// The identity inside a key `mem:{<identity>}:<limit>:<suffix>`.
pub(super) fn identity_of(key: &str) -> &str {
    let start = key.find('{').map_or(0, |i| i + 1);
    let end = key.rfind("}:").unwrap_or(key.len());
    key.get(start..end).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_cap_and_come_back() {
        let c = Capacity::new();
        c.set_max(2);
        assert!(c.try_reserve() && c.try_reserve());
        assert!(!c.try_reserve());
        c.release(1);
        assert!(c.try_reserve());
        assert_eq!(c.held(), 2);
    }

    #[test]
    fn the_identity_of_a_key_is_inside_its_hash_tag() {
        assert_eq!(identity_of("mem:{ip:1.2.3.4}:login.0:sl"), "ip:1.2.3.4");
        assert_eq!(identity_of("mem:{h:x-t:ab}:t.0:tb"), "h:x-t:ab");
    }
}
