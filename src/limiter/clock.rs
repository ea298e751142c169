//! The time a store decides at, chosen when the store is built.
//!
//! In production every decision uses the store's own clock: Redis `TIME` inside the script, so
//! all replicas agree whatever their own clocks say, and the system clock in the in-process
//! store. Tests build stores with a [`Clock::manual`] clock instead, and step it, so boundaries
//! and retry times are checked to the microsecond without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The store's own time (Redis `TIME`; the system clock in memory).
    #[default]
    Store,
    /// A time set by hand, in microseconds since the epoch, shared by every clone.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn manual(start_us: u64) -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(start_us)))
    }

    /// Sets a manual clock (no effect on the store's clock).
    pub fn set_us(&self, now_us: u64) {
        if let Clock::Manual(t) = self {
            t.store(now_us, Ordering::Relaxed);
        }
    }

    /// Moves a manual clock by `delta_us` (no effect on the store's clock).
    pub fn advance_us(&self, delta_us: u64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(delta_us, Ordering::Relaxed);
        }
    }

    /// The fixed time of a manual clock; `None` means "ask the store's own clock".
    pub fn fixed_us(&self) -> Option<u64> {
        match self {
            Clock::Store => None,
            Clock::Manual(t) => Some(t.load(Ordering::Relaxed)),
        }
    }

    /// Now, in microseconds: the manual time, or the system clock.
    pub fn now_us(&self) -> u64 {
        self.fixed_us().unwrap_or_else(system_now_us)
    }
}

pub fn system_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
