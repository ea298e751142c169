//! Concurrency slots in process: the twin of `scripts/redis/concurrency.lua`. Each identity
//! holds the tokens of its in-flight requests with the instant their lease runs out; expired
//! leases are dropped before counting, and an identity whose last lease goes leaves nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::limiter::store::Lease;

/// (token, lease end in µs) of each in-flight request of one identity: at most
/// `concurrency` long.
type Held = Vec<(u64, u64)>;

#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<Box<str>, Held>>,
}

impl Leases {
    pub(super) fn acquire(
        &self,
        identity: &str,
        token: u64,
        max: u64,
        lease_us: u64,
        now_us: u64,
    ) -> Lease {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let list = held.entry(identity.into()).or_default();
        list.retain(|&(_, until)| until > now_us);
        if list.len() as u64 >= max {
            let first = list.iter().map(|&(_, until)| until).min().unwrap_or(now_us);
            let retry_ms = (first.saturating_sub(now_us) / 1000).max(1);
            return Lease::Full { retry_ms };
        }
        list.push((token, now_us + lease_us));
        Lease::Granted
    }

    pub(super) fn release(&self, identity: &str, token: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = held.get_mut(identity) {
            list.retain(|&(t, _)| t != token);
            if list.is_empty() {
                held.remove(identity);
            }
        }
    }

    /// Drops expired leases and the identities left with none (the store's sweeper).
    pub(super) fn sweep(&self, now_us: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, list| {
            list.retain(|&(_, until)| until > now_us);
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_held_released_and_expire() {
        let l = Leases::default();
        assert_eq!(l.acquire("a", 1, 2, 1_000_000, 0), Lease::Granted);
        assert_eq!(l.acquire("a", 2, 2, 1_000_000, 10), Lease::Granted);
        assert_eq!(
            l.acquire("a", 3, 2, 1_000_000, 20),
            Lease::Full { retry_ms: 999 }
        );
        assert_eq!(l.acquire("b", 4, 2, 1_000_000, 20), Lease::Granted);
        l.release("a", 1);
        assert_eq!(l.acquire("a", 5, 2, 1_000_000, 30), Lease::Granted);
        // Token 2's lease runs out at 1_000_010: a dead holder frees its slot by then.
        assert_eq!(l.acquire("a", 6, 2, 1_000_000, 1_000_010), Lease::Granted);
        l.sweep(5_000_000);
        assert!(l.held.lock().unwrap().is_empty());
    }
}
