//! A circuit breaker in front of the store, so an outage costs the fallback's latency rather
//! than `timeout_ms` on every request.
//!
//! Closed: every call goes through. After `threshold` consecutive failures it opens for
//! `open_for`; then exactly one caller is let through as a probe. A successful probe closes it,
//! a failed one opens it again. Lock-free: three atomics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the breaker is open; 0 = closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

/// What the caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Call the store.
    Call,
    /// Call the store as the single probe of a half-open breaker.
    Probe,
    /// Do not call the store.
    Reject,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    pub fn permit(&self) -> Permit {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Permit::Call;
        }
        if self.now_ms() < until {
            return Permit::Reject;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Permit::Probe,
            Err(_) => Permit::Reject,
        }
    }

    pub fn on_success(&self, permit: Permit) {
        self.failures.store(0, Ordering::Relaxed);
        if permit == Permit::Probe || self.is_open() {
            self.open_until_ms.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            if permit == Permit::Probe {
                log::warn!("store answered again: circuit breaker closed");
            }
        }
    }

    pub fn on_failure(&self, permit: Permit) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if permit == Permit::Probe || n >= self.threshold {
            let reopen = self.now_ms() + self.open_for.as_millis() as u64;
            let was_open = self.open_until_ms.swap(reopen.max(1), Ordering::AcqRel) != 0;
            self.probing.store(false, Ordering::Release);
            if !was_open {
                log::warn!(
                    "store failed {n} times in a row: circuit breaker open for {:?}",
                    self.open_for
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let b = Breaker::new(2, Duration::from_millis(30));
        assert_eq!(b.permit(), Permit::Call);
        b.on_failure(Permit::Call);
        assert_eq!(b.permit(), Permit::Call);
        b.on_failure(Permit::Call);
        assert_eq!(b.permit(), Permit::Reject);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Reject, "only one probe at a time");
        b.on_success(Permit::Probe);
        assert_eq!(b.permit(), Permit::Call);
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_millis(20));
        b.on_failure(Permit::Call);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.permit(), Permit::Probe);
        b.on_failure(Permit::Probe);
        assert_eq!(b.permit(), Permit::Reject);
    }
}
