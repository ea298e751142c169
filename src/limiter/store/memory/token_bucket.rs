//! `token_bucket`: GCRA, one theoretical arrival time per key.
//!
//! The twin of `scripts/redis/token_bucket.lua`: the same steps in the same order, in integers, so that
//! both stores give the same answer to the same sequence of calls.

use super::params::{ceil_div, floor_div, outcome, Checked, LimitParams};
use super::{Data, Entry, Pending};

pub(super) fn check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let t = floor_div(p.window_ms * 1000, p.limit.max(1)).max(1);
    let tau = t * p.limit;
    let stored = match entry {
        Some(Entry {
            data: Data::Tat(tat),
            ..
        }) => *tat,
        _ => 0,
    };
    let tat = stored.max(p.now_us);
    let new = tat + p.cost * t;
    if new - p.now_us <= tau {
        let remaining = floor_div(tau - (new - p.now_us), t);
        let reset = ceil_div(new - p.now_us, 1000);
        return (outcome(true, remaining, 0, reset), Some(Pending::Tat(new)));
    }
    let retry = if p.cost > p.limit {
        p.window_ms
    } else {
        ceil_div(new - tau - p.now_us, 1000)
    };
    let remaining = floor_div(tau - (tat - p.now_us), t).max(0);
    let reset = ceil_div(tat - p.now_us, 1000);
    (outcome(false, remaining, retry, reset), None)
}
