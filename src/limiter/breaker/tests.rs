//! The breaker's state machine, driven by a hand-set clock (no sleeps).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

#[derive(Clone, Default)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl BreakerClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Seen = Arc<Mutex<Vec<Transition>>>;

fn breaker(at: u64) -> (Breaker<ManualClock>, ManualClock, Seen) {
    let clock = ManualClock::default();
    clock.set(at);
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let observer: Observer = Box::new(move |t| log.lock().unwrap().push(t));
    let settings = BreakerSettings {
        open_max: Duration::from_secs(1),
        ..BreakerSettings::default()
    };
    let b = Breaker::with_clock(settings, clock.clone(), Some(observer))
        .with_call_budget(Duration::from_millis(50));
    (b, clock, seen)
}

/// `n` calls that start at `at` and all fail (or succeed), as a store pause does.
fn burst(b: &Breaker<ManualClock>, clock: &ManualClock, at: u64, n: usize, failed: bool) {
    clock.set(at);
    let permits: Vec<_> = (0..n).map(|_| b.permit()).collect();
    clock.set(at + if failed { 50 } else { 1 });
    for p in permits {
        b.record(p, failed);
    }
}

/// 32 clients against a store that stops answering at `from` and until `to` (timeouts of 50 ms,
/// each client calling again at once), with healthy traffic around it.
fn pause(b: &Breaker<ManualClock>, clock: &ManualClock, from: u64, to: u64) {
    for at in (from.saturating_sub(300)..from).step_by(5) {
        burst(b, clock, at, 32, false);
    }
    let mut at = from;
    while at < to {
        burst(b, clock, at, 32, true);
        at += 50;
    }
}

fn opened(b: &Breaker<ManualClock>) -> bool {
    b.state() != BreakerState::Closed
}

#[test]
fn a_blip_never_opens() {
    let (b, clock, seen) = breaker(1000);
    for start in [1000, 2000, 3000] {
        pause(&b, &clock, start, start + 80);
        assert!(!opened(&b), "an 80 ms pause opened the breaker");
        for at in (start + 130..start + 400).step_by(5) {
            burst(&b, &clock, at, 32, false);
        }
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn an_outage_opens_within_250_ms() {
    let (b, clock, seen) = breaker(1000);
    pause(&b, &clock, 2000, 2250);
    assert!(opened(&b), "250 ms of failures did not open the breaker");
    assert!(matches!(b.permit(), Permit::Reject));
    assert_eq!(
        seen.lock().unwrap()[0],
        Transition {
            to: BreakerState::Open,
            open_for: None
        }
    );
}

/// A breaker that opened just now (the clock stands at the instant it opened).
fn open_at(at: u64) -> (Breaker<ManualClock>, ManualClock, Seen) {
    let (b, clock, seen) = breaker(at);
    pause(&b, &clock, at, at);
    let mut t = at;
    while !opened(&b) {
        assert!(t < at + 1000, "never opened");
        burst(&b, &clock, t, 32, true);
        t += 50;
    }
    assert_eq!(b.state(), BreakerState::Open);
    (b, clock, seen)
}

#[test]
fn probes_soon_then_closes_on_first_success() {
    let (b, clock, seen) = open_at(1000);
    let opened_at = clock.now_ms();
    clock.set(opened_at + 99);
    assert!(matches!(b.permit(), Permit::Reject), "still open");
    clock.set(opened_at + 100);
    let probes: Vec<_> = (0..3).map(|_| b.permit()).collect();
    assert!(probes.iter().all(|p| matches!(p, Permit::Probe(_))));
    assert!(matches!(b.permit(), Permit::Reject), "three probes at most");
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let mut probes = probes.into_iter();
    b.record(probes.next().unwrap(), false);
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(matches!(b.permit(), Permit::Call { .. }));
    let states: Vec<BreakerState> = seen.lock().unwrap().iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]
    );
    let closed = *seen.lock().unwrap().last().unwrap();
    assert_eq!(closed.open_for, Some(Duration::from_millis(100)));
}

#[test]
fn failed_probes_back_off_up_to_open_max() {
    let (b, clock, _) = open_at(1000);
    let mut now = clock.now_ms();
    let mut waits = Vec::new();
    for _ in 0..6 {
        let mut wait = 0;
        while matches!(b.permit(), Permit::Reject) {
            wait += 10;
            now += 10;
            clock.set(now);
        }
        waits.push(wait);
        // The probe just taken and two more fail together: one reopening, not three.
        let more: Vec<_> = (0..2).map(|_| b.permit()).collect();
        now += 50;
        clock.set(now);
        for p in more {
            b.record(p, true);
        }
        b.record(Permit::Reject, true);
    }
    // (The probe permit the loop's condition took was dropped at once: its slot came back.)
    assert_eq!(waits[0], 100);
    assert_eq!(&waits[1..], [200, 400, 800, 1000, 1000]);
}

#[test]
fn a_cancelled_probe_gives_its_slot_back() {
    let (b, clock, _) = open_at(1000);
    clock.set(clock.now_ms() + 100);
    for _ in 0..10 {
        // The probing request goes away mid-call: the permit is dropped, never recorded.
        let probes: Vec<_> = (0..3).map(|_| b.permit()).collect();
        assert!(probes.iter().all(|p| matches!(p, Permit::Probe(_))));
        drop(probes);
    }
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let p = b.permit();
    assert!(matches!(p, Permit::Probe(_)));
    b.record(p, false);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn a_late_answer_ends_the_open_period() {
    let (b, clock, _) = open_at(1000);
    clock.set(clock.now_ms() + 10);
    assert_eq!(b.state(), BreakerState::Open);
    b.late_answer();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let p = b.permit();
    assert!(matches!(p, Permit::Probe(_)));
    b.record(p, false);
    assert_eq!(b.state(), BreakerState::Closed);
    // The window was cleared: the old failures do not reopen it.
    burst(&b, &clock, clock.now_ms(), 1, true);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn disabled_never_opens() {
    let b = Breaker::disabled();
    for _ in 0..10_000 {
        let p = b.permit();
        b.record(p, true);
    }
    assert!(!b.is_open());
}

#[test]
fn failures_noticed_long_after_their_budget_do_not_count() {
    // A descheduled process notices its calls' timeouts late, all at once: not the store's
    // fault, and not counted.
    let (b, clock, _) = breaker(1000);
    let mut at = 2000;
    while at < 3000 {
        clock.set(at);
        let permits: Vec<_> = (0..32).map(|_| b.permit()).collect();
        clock.set(at + 150);
        for p in permits {
            b.record(p, true);
        }
        at += 150;
    }
    assert_eq!(b.state(), BreakerState::Closed);
}
