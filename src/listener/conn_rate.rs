//! [`ConnectionRateFilter`]: at most `per_ip` new connections per `window` from one client
//! address, decided when the TCP connection is accepted, before any TLS handshake (Pingora's
//! `connection_filter`), as nginx `limit_conn` / HAProxy `conn_rate` do.
//!
//! The counts live in a fixed table of atomics (1 MiB, allocated once), so a flood from a
//! million addresses cannot grow memory. Each slot packs a 20-bit fingerprint of the address,
//! a 12-bit window number and the counts of the current and previous window; the estimate is
//! the sliding-window approximation `previous * (1 - elapsed fraction) + current`. An address
//! probes 8 slots; slots whose window is over are reused. When all 8 hold other live
//! addresses the connection is admitted untracked (counted in a metric): refusing it would let
//! a large botnet lock every newcomer out, and per-IP limits cannot stop such a botnet anyway.
//! Only admitted connections are counted, so a client that keeps being refused recovers as
//! soon as it slows down.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::listeners::ConnectionFilter;

use crate::metrics;

const SLOTS: usize = 1 << 17;
const PROBES: usize = 8;
const WINDOW_BITS: u64 = 12;
const COUNT_MAX: u64 = 0xFFFF;

/// The limit in force: `(per_ip, window)`, or None when there is none. Read on every accept,
/// so a reload applies at once.
pub type RateSource = Arc<dyn Fn() -> Option<(u32, Duration)> + Send + Sync>;

pub struct ConnectionRateFilter {
    table: Box<[AtomicU64]>,
    source: RateSource,
    epoch: Instant,
    hasher: ahash::RandomState,
}

impl std::fmt::Debug for ConnectionRateFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRateFilter")
            .field("slots", &self.table.len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    fingerprint: u64,
    window: u64,
    previous: u64,
    current: u64,
}

impl Slot {
    fn unpack(v: u64) -> Slot {
        Slot {
            fingerprint: v >> 44,
            window: (v >> 32) & ((1 << WINDOW_BITS) - 1),
            previous: (v >> 16) & COUNT_MAX,
            current: v & COUNT_MAX,
        }
    }

    fn pack(self) -> u64 {
        (self.fingerprint << 44)
            | (self.window << 32)
            | (self.previous.min(COUNT_MAX) << 16)
            | self.current.min(COUNT_MAX)
    }

    /// This slot's counts moved to window `now` (`previous`, `current`).
    fn counts_at(self, now: u64) -> (u64, u64) {
        let before = (now + (1 << WINDOW_BITS) - 1) & ((1 << WINDOW_BITS) - 1);
        if self.window == now {
            (self.previous, self.current)
        } else if self.window == before {
            (self.current, 0)
        } else {
            (0, 0)
        }
    }
}

/// What one accept decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    Refused,
    Untracked,
}

impl ConnectionRateFilter {
    pub fn new(source: RateSource) -> Self {
        ConnectionRateFilter {
            table: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            source,
            epoch: Instant::now(),
            hasher: ahash::RandomState::new(),
        }
    }

    /// Decides for a connection from `ip` at `elapsed` since the filter was made.
    pub fn decide(&self, ip: IpAddr, per_ip: u32, window: Duration, elapsed: Duration) -> Verdict {
        let hash = self.hasher.hash_one(bucket(ip));
        let fingerprint = (hash >> 44).max(1);
        let window_ms = window.as_millis().max(1);
        let now_ms = elapsed.as_millis();
        let now = ((now_ms / window_ms) as u64) & ((1 << WINDOW_BITS) - 1);
        let fraction = (now_ms % window_ms) as f64 / window_ms as f64;
        let base = hash as usize;
        // Bounded retries: a lost race re-reads the slot; persistent contention admits.
        for _ in 0..4 {
            let Some(index) = self.find_slot(base, fingerprint, now) else {
                return Verdict::Untracked;
            };
            let cell = &self.table[index];
            let seen = cell.load(Ordering::Acquire);
            let slot = Slot::unpack(seen);
            let (previous, current) = if slot.fingerprint == fingerprint {
                slot.counts_at(now)
            } else {
                (0, 0)
            };
            let estimate = previous as f64 * (1.0 - fraction) + (current + 1) as f64;
            if estimate > f64::from(per_ip) {
                return Verdict::Refused;
            }
            let next = Slot {
                fingerprint,
                window: now,
                previous,
                current: current + 1,
            };
            if cell
                .compare_exchange(seen, next.pack(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Verdict::Admitted;
            }
        }
        Verdict::Admitted
    }

    /// The slot holding `fingerprint`, else the first free or expired one among the probes.
    fn find_slot(&self, base: usize, fingerprint: u64, now: u64) -> Option<usize> {
        let mut free = None;
        for probe in 0..PROBES {
            let index = (base + probe) & (SLOTS - 1);
            let v = self.table[index].load(Ordering::Acquire);
            let slot = Slot::unpack(v);
            if v != 0 && slot.fingerprint == fingerprint {
                return Some(index);
            }
            if free.is_none() && (v == 0 || slot.counts_at(now) == (0, 0)) {
                free = Some(index);
            }
        }
        free
    }
}

/// IPv4 addresses count one by one; IPv6 ones by /64, since one host owns a /64.
fn bucket(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 64) - 1)) | 1,
    }
}

#[async_trait]
impl ConnectionFilter for ConnectionRateFilter {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        let (Some(addr), Some((per_ip, window))) = (addr, (self.source)()) else {
            return true;
        };
        match self.decide(addr.ip(), per_ip, window, self.epoch.elapsed()) {
            Verdict::Admitted => true,
            Verdict::Untracked => {
                metrics::connection_untracked();
                true
            }
            Verdict::Refused => {
                metrics::connection_refused();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> ConnectionRateFilter {
        ConnectionRateFilter::new(Arc::new(|| None))
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn slot_packing_round_trips() {
        let s = Slot {
            fingerprint: 0xABCDE,
            window: 0xFFF,
            previous: 7,
            current: 65535,
        };
        assert_eq!(Slot::unpack(s.pack()), s);
    }

    #[test]
    fn limits_one_address_and_not_another() {
        let f = filter();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t = Duration::from_millis(10_000);
        for _ in 0..5 {
            assert_eq!(f.decide(a, 5, SEC, t), Verdict::Admitted);
        }
        assert_eq!(f.decide(a, 5, SEC, t), Verdict::Refused);
        assert_eq!(f.decide(b, 5, SEC, t), Verdict::Admitted);
        // Two windows later everything has expired.
        assert_eq!(f.decide(a, 5, SEC, t + 2 * SEC), Verdict::Admitted);
    }

    #[test]
    fn previous_window_weighs_in_proportionally() {
        let f = filter();
        let a: IpAddr = "10.0.0.3".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(
                f.decide(a, 10, SEC, Duration::from_millis(5_900)),
                Verdict::Admitted
            );
        }
        // 10% into the next window: 10 * 0.9 = 9 carried over, one more fits.
        let t = Duration::from_millis(6_100);
        assert_eq!(f.decide(a, 10, SEC, t), Verdict::Admitted);
        assert_eq!(f.decide(a, 10, SEC, t), Verdict::Refused);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let f = filter();
        let t = Duration::from_millis(1_000);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(f.decide(one, 1, SEC, t), Verdict::Admitted);
        assert_eq!(f.decide(same64, 1, SEC, t), Verdict::Refused);
        assert_eq!(f.decide(other64, 1, SEC, t), Verdict::Admitted);
    }

    #[test]
    fn a_million_addresses_stay_in_the_fixed_table() {
        let f = filter();
        let t = Duration::from_millis(1_000);
        let mut untracked = 0;
        for i in 0..1_000_000u32 {
            match f.decide(IpAddr::from(i.to_be_bytes()), 50, SEC, t) {
                Verdict::Refused => panic!("a first connection was refused"),
                Verdict::Untracked => untracked += 1,
                Verdict::Admitted => {}
            }
        }
        assert_eq!(f.table.len(), SLOTS);
        eprintln!("1,000,000 addresses in one window: {untracked} admitted untracked");
        assert!(untracked > 0 && untracked < 1_000_000, "{untracked}");
        // A later window reuses the expired slots.
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(f.decide(a, 1, SEC, t + 3 * SEC), Verdict::Admitted);
        assert_eq!(f.decide(a, 1, SEC, t + 3 * SEC), Verdict::Refused);
    }
}
