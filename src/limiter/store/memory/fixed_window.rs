//! `fixed_window`: one counter per aligned window (INCR + expiry).
//!
//! The twin of `scripts/redis/fixed_window.lua`: the same steps in the same order, in integers, so that
//! both stores give the same answer to the same sequence of calls.

use super::params::{floor_div, outcome, Checked, LimitParams};
use super::{Data, Entry, Pending};

pub(super) fn check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let now_ms = floor_div(p.now_us, 1000);
    let idx = floor_div(now_ms, p.window_ms);
    let n = match entry {
        Some(Entry {
            data: Data::Fixed { w, k },
            ..
        }) if *w == idx => *k,
        _ => 0,
    };
    let reset = (idx + 1) * p.window_ms - now_ms;
    if n + p.cost <= p.limit {
        let state = Pending::Fixed {
            idx,
            k: n + p.cost,
            reset_ms: reset,
        };
        return (outcome(true, p.limit - n - p.cost, 0, reset), Some(state));
    }
    let retry = if p.cost > p.limit { p.window_ms } else { reset };
    (outcome(false, (p.limit - n).max(0), retry, reset), None)
}
