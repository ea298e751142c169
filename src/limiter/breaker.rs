//! A circuit breaker in front of the store that tells a blip from an outage.
//!
//! The breaker exists to spare requests from waiting on a store that is down, not on one that
//! hiccups. So it opens on *sustained* failure only ([`window`]): enough calls, enough of them
//! failing, and failures spread over longer than one burst. A pause of the store that times
//! out every call in flight at once is one event and never opens it.
//!
//! Open: no call goes to the store. After `half_open_after` the breaker is half-open and lets
//! up to `probes` calls through; the first success closes it, a failed probe opens it again for
//! twice as long, up to `open_max`. A late answer (a call that had timed out, answered after
//! all) ends the open period at once, so the next request probes. Each probe holds a
//! [`ProbeGuard`] that gives its slot back when dropped, so a probe whose request is cancelled
//! cannot leave the breaker half-open with no probe slot free.
//!
//! Everything is atomics; the closed path (every request while the store is healthy) is one
//! load, one clock read and one compare-and-swap in the window. Time comes from a [`BreakerClock`], so
//! the tests drive it by hand.

mod window;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use window::{Thresholds, Window};

/// The breaker's tuning; the README's configuration reference explains each trade-off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// How far back the failure rate is judged.
    pub window: Duration,
    /// Calls needed within the stretch judged before the breaker may open.
    pub min_calls: u32,
    /// Share of those calls that must have failed (0 < ratio <= 1).
    pub failure_ratio: f64,
    /// How far apart (by start time) the first and last failure of the stretch must be.
    pub failure_spread: Duration,
    /// How long the breaker stays open before the first probes.
    pub half_open_after: Duration,
    /// Probe calls let through at once while half-open.
    pub probes: u32,
    /// The longest open period: failed probes double it up to this.
    pub open_max: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window: Duration::from_millis(500),
            min_calls: 20,
            failure_ratio: 0.5,
            failure_spread: Duration::from_millis(150),
            half_open_after: Duration::from_millis(100),
            probes: 3,
            open_max: Duration::from_millis(200),
        }
    }
}

impl BreakerSettings {
    /// How long a timed-out call is worth waiting for: as long as two probe rounds may be
    /// apart, so that a store that resumes always has a pending call to answer.
    pub fn late_answer_horizon(&self) -> Duration {
        (self.open_max * 2).max(Duration::from_secs(2))
    }
}

/// Milliseconds on some monotonic scale, never 0.
pub trait BreakerClock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The process's monotonic clock.
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl BreakerClock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

/// As exported by `tollgate_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// A change of state, for metrics. `open_for`: on closing, how long the breaker was not closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: BreakerState,
    pub open_for: Option<Duration>,
}

pub type Observer = Box<dyn Fn(Transition) + Send + Sync>;

/// What the caller may do; hand it back through [`Breaker::record`].
pub enum Permit<'a> {
    /// Call the store (the breaker is closed).
    Call { started_ms: u64 },
    /// Call the store as one of the probes of a half-open breaker.
    Probe(ProbeGuard<'a>),
    /// Do not call the store.
    Reject,
}

/// One probe slot, given back on drop (however the probing request ends).
pub struct ProbeGuard<'a> {
    slots_taken: &'a AtomicU32,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.slots_taken.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Breaker<C: BreakerClock = MonotonicClock> {
    settings: BreakerSettings,
    thresholds: Thresholds,
    clock: C,
    window: Window,
    /// 0: closed. Otherwise the instant the open period ends (then half-open).
    open_until_ms: AtomicU64,
    /// When the breaker last opened from closed.
    opened_at_ms: AtomicU64,
    /// The length of the current open period.
    backoff_ms: AtomicU64,
    probes_in_flight: AtomicU32,
    /// A failure noticed later than this after its call started is not counted (see
    /// [`Breaker::with_call_budget`]); `u64::MAX`: every failure counts.
    noticed_late_ms: u64,
    /// The state last reported to the observer (so each transition is reported once).
    reported: AtomicU8,
    observer: Option<Observer>,
}

impl Breaker<MonotonicClock> {
    pub fn new(settings: BreakerSettings, observer: Option<Observer>) -> Self {
        Self::with_clock(settings, MonotonicClock::default(), observer)
    }

    /// A breaker that never opens (the in-process store cannot time out).
    pub fn disabled() -> Self {
        let settings = BreakerSettings {
            min_calls: u32::MAX,
            ..BreakerSettings::default()
        };
        Self::new(settings, None)
    }
}

impl<C: BreakerClock> Breaker<C> {
    pub fn with_clock(settings: BreakerSettings, clock: C, observer: Option<Observer>) -> Self {
        let ms = |d: Duration| (d.as_millis() as u64).max(1);
        Breaker {
            thresholds: Thresholds {
                min_calls: u64::from(settings.min_calls.max(1)),
                failure_ratio: settings.failure_ratio,
                spread_ms: settings.failure_spread.as_millis() as u64,
            },
            window: Window::new(ms(settings.window)),
            clock,
            open_until_ms: AtomicU64::new(0),
            opened_at_ms: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(ms(settings.half_open_after)),
            probes_in_flight: AtomicU32::new(0),
            noticed_late_ms: u64::MAX,
            reported: AtomicU8::new(BreakerState::Closed as u8),
            observer,
            settings,
        }
    }

    /// The budget of one store call. A failure noticed more than twice the budget after its
    /// call started says more about this process than about the store: the budget's timer
    /// fired that late because the host was busy or the thread descheduled (one of the blips
    /// the breaker must ride out), so such a failure is not counted towards opening.
    pub fn with_call_budget(mut self, budget: Duration) -> Self {
        self.noticed_late_ms = (budget.as_millis() as u64).max(1) * 2;
        self
    }

    pub fn state(&self) -> BreakerState {
        match self.open_until_ms.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if self.clock.now_ms() < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state() != BreakerState::Closed
    }

    pub fn permit(&self) -> Permit<'_> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        let now = self.clock.now_ms();
        if until == 0 {
            return Permit::Call { started_ms: now };
        }
        if now < until {
            return Permit::Reject;
        }
        let max = self.settings.probes.max(1);
        let took = self
            .probes_in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if took.is_err() {
            return Permit::Reject;
        }
        self.report(BreakerState::HalfOpen, None);
        Permit::Probe(ProbeGuard {
            slots_taken: &self.probes_in_flight,
        })
    }

    /// The outcome of a permitted call. `failed`: the store did not answer in time (or at all).
    pub fn record(&self, permit: Permit<'_>, failed: bool) {
        match (permit, failed) {
            (Permit::Reject, _) => {}
            (Permit::Call { started_ms }, true) => self.call_failed(started_ms),
            (Permit::Call { started_ms }, false) => {
                self.window.record(started_ms, false);
                if self.open_until_ms.load(Ordering::Acquire) != 0 {
                    self.close();
                }
            }
            (Permit::Probe(guard), false) => {
                drop(guard);
                self.close();
            }
            (Permit::Probe(guard), true) => {
                drop(guard);
                self.reopen();
            }
        }
    }

    /// A call that had timed out was answered after all: the store is alive again, so end the
    /// open period now and let the next request probe (a slow store fails that probe).
    pub fn late_answer(&self) {
        let now = self.clock.now_ms();
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until > now {
            let _ = self.open_until_ms.compare_exchange(
                until,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn call_failed(&self, started_ms: u64) {
        let now = self.clock.now_ms();
        if now.saturating_sub(started_ms) > self.noticed_late_ms {
            return;
        }
        self.window.record(started_ms, true);
        if self.open_until_ms.load(Ordering::Acquire) != 0
            || !self.window.sustained(now, &self.thresholds)
        {
            return;
        }
        let first = (self.settings.half_open_after.as_millis() as u64).max(1);
        if self
            .open_until_ms
            .compare_exchange(0, now + first, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.opened_at_ms.store(now, Ordering::Release);
            self.backoff_ms.store(first, Ordering::Release);
            log::warn!(
                "rate-limit store failing steadily: circuit breaker open, first probe in {first} ms"
            );
            self.report(BreakerState::Open, None);
        }
    }

    /// A probe failed: open again, for twice as long as last time (up to `open_max`). Several
    /// probes failing together reopen once.
    fn reopen(&self) {
        let now = self.clock.now_ms();
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 || until > now {
            return;
        }
        let max = (self.settings.open_max.as_millis() as u64).max(1);
        let next = (self.backoff_ms.load(Ordering::Acquire) * 2).min(max);
        if self
            .open_until_ms
            .compare_exchange(until, now + next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.backoff_ms.store(next, Ordering::Release);
            self.report(BreakerState::Open, None);
        }
    }

    fn close(&self) {
        if self.open_until_ms.swap(0, Ordering::AcqRel) == 0 {
            return;
        }
        self.window.clear();
        let first = (self.settings.half_open_after.as_millis() as u64).max(1);
        self.backoff_ms.store(first, Ordering::Release);
        let open_for = self
            .clock
            .now_ms()
            .saturating_sub(self.opened_at_ms.load(Ordering::Acquire));
        log::warn!("store answered again: circuit breaker closed after {open_for} ms");
        self.report(BreakerState::Closed, Some(Duration::from_millis(open_for)));
    }

    fn report(&self, to: BreakerState, open_for: Option<Duration>) {
        if self.reported.swap(to as u8, Ordering::AcqRel) == to as u8 {
            return;
        }
        if let Some(observe) = &self.observer {
            observe(Transition { to, open_for });
        }
    }
}

#[cfg(test)]
#[path = "breaker/tests.rs"]
mod tests;
