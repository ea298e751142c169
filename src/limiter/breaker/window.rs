//! The breaker's sliding window: how many store calls failed, by the instant they started.
//!
//! The window is a ring of [`SLOTS`] time slices, each one `AtomicU64` packing the slice's
//! number with its call and failure counts, so recording is one compare-and-swap and the hot
//! path takes no lock. A call is counted in the slice it *started* in: a timeout then marks
//! when the store stopped answering, not `timeout_ms` later, and the spread between failures
//! is measured on the store's clock rather than on the timer's.
//!
//! [`Window::sustained`] answers "is this an outage?": is there a stretch ending now in which
//! at least `min_calls` calls were made, at least `failure_ratio` of them failed, and whose
//! failures lie at least `spread` apart. Calls that failed together in one burst (a pause of
//! the store times out every call in flight at once) can never span `spread`, however many
//! they are: a burst is one event.

use std::sync::atomic::{AtomicU64, Ordering};

/// Time slices in the window; `window / SLOTS` is the resolution of the spread.
pub const SLOTS: usize = 50;

const COUNT_BITS: u32 = 16;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// A slice's word: slice number (32 bits) | calls (16 bits) | failures (16 bits).
fn pack(slice: u32, calls: u64, failures: u64) -> u64 {
    (u64::from(slice) << 32) | (calls.min(COUNT_MAX) << COUNT_BITS) | failures.min(COUNT_MAX)
}

fn unpack(word: u64) -> (u32, u64, u64) {
    (
        (word >> 32) as u32,
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

/// What opens the breaker; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub min_calls: u64,
    pub failure_ratio: f64,
    pub spread_ms: u64,
}

pub struct Window {
    slice_ms: u64,
    /// Slice numbers start at 1 so that a zeroed slot is never mistaken for a live slice.
    slots: [AtomicU64; SLOTS],
}

impl Window {
    pub fn new(window_ms: u64) -> Self {
        Window {
            slice_ms: (window_ms / SLOTS as u64).max(1),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn slice_of(&self, at_ms: u64) -> u32 {
        (at_ms / self.slice_ms + 1) as u32
    }

    /// Counts one call that started at `started_ms`. A slice that has already been reused for a
    /// later one is not written (the call is older than the whole window).
    pub fn record(&self, started_ms: u64, failed: bool) {
        let slice = self.slice_of(started_ms);
        let slot = &self.slots[slice as usize % SLOTS];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (tag, calls, failures) = unpack(current);
            let next = if tag == slice {
                pack(slice, calls + 1, failures + u64::from(failed))
            } else if (tag.wrapping_sub(slice) as i32) > 0 {
                return;
            } else {
                pack(slice, 1, u64::from(failed))
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether the failures up to `now_ms` look sustained (see the module docs). Walks back from
    /// the newest slice; called on failures only, never on the success path.
    pub fn sustained(&self, now_ms: u64, t: &Thresholds) -> bool {
        let newest = self.slice_of(now_ms);
        let (mut calls, mut failures) = (0u64, 0u64);
        let mut newest_failure: Option<u32> = None;
        for back in 0..SLOTS as u32 {
            let slice = newest.wrapping_sub(back);
            let (tag, c, f) = unpack(self.slots[slice as usize % SLOTS].load(Ordering::Relaxed));
            if tag != slice || c == 0 {
                continue;
            }
            calls += c;
            failures += f;
            if f == 0 {
                continue;
            }
            let latest = *newest_failure.get_or_insert(slice);
            let spread_ms = u64::from(latest - slice) * self.slice_ms;
            if calls >= t.min_calls
                && failures as f64 >= t.failure_ratio * calls as f64
                && spread_ms >= t.spread_ms
            {
                return true;
            }
        }
        false
    }

    /// Forgets everything (the breaker closed: the outage that filled the window is over).
    pub fn clear(&self) {
        for s in &self.slots {
            s.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        min_calls: 20,
        failure_ratio: 0.5,
        spread_ms: 150,
    };

    /// `n` calls starting at each ms in `from..to` (step `every`).
    fn calls(w: &Window, from: u64, to: u64, every: u64, failed: bool) {
        for at in (from..to).step_by(every as usize) {
            w.record(at, failed);
        }
    }

    #[test]
    fn a_burst_of_failures_is_one_event() {
        let w = Window::new(500);
        calls(&w, 1000, 1100, 1, false);
        // 80 ms during which every call fails: many failures, one burst.
        calls(&w, 1100, 1180, 1, true);
        assert!(!w.sustained(1230, &T));
        calls(&w, 1180, 1400, 1, false);
        assert!(!w.sustained(1400, &T));
    }

    #[test]
    fn failures_spread_over_the_threshold_open() {
        let w = Window::new(500);
        calls(&w, 1000, 1300, 1, false);
        calls(&w, 1300, 1440, 2, true);
        assert!(!w.sustained(1490, &T), "140 ms of failures is still a blip");
        calls(&w, 1440, 1460, 2, true);
        assert!(w.sustained(1510, &T), "160 ms of failures is an outage");
    }

    #[test]
    fn needs_volume_and_ratio() {
        let w = Window::new(500);
        // Two failures 300 ms apart with nothing else: too few calls.
        w.record(1000, true);
        w.record(1300, true);
        assert!(!w.sustained(1350, &T));
        // A third of the calls failing, steadily (one shard of three down): stays closed.
        let w = Window::new(500);
        for at in 2000..2500 {
            w.record(at, at % 3 == 0);
        }
        assert!(!w.sustained(2500, &T));
    }

    #[test]
    fn old_slices_fall_out_and_clear_forgets() {
        let w = Window::new(500);
        calls(&w, 1000, 1200, 1, true);
        assert!(w.sustained(1200, &T));
        assert!(!w.sustained(1800, &T), "older than the window");
        calls(&w, 2000, 2200, 1, true);
        w.clear();
        assert!(!w.sustained(2200, &T));
        // A call that started before its slot was reused is dropped, not misfiled.
        w.record(2700, false);
        w.record(2200, true);
        assert!(!w.sustained(2700, &T));
    }
}
