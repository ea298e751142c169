//! `sliding_log`: exact; the admission timestamps of the last window, oldest first.
//!
//! The twin of `scripts/redis/sliding_log.lua`: the same steps in the same order, in integers, so that
//! both stores give the same answer to the same sequence of calls.

use std::collections::VecDeque;

use super::params::{ceil_div, outcome, Checked, LimitParams};
use super::{Data, Entry, Pending};

pub(super) fn check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let win_us = p.window_ms * 1000;
    let cutoff = p.now_us - win_us;
    let empty = VecDeque::new();
    let log = match entry {
        Some(Entry {
            data: Data::Log(log),
            ..
        }) => {
            // ZREMRANGEBYSCORE -inf cutoff (inclusive).
            while log.front().is_some_and(|&t| i128::from(t) <= cutoff) {
                log.pop_front();
            }
            &*log
        }
        _ => &empty,
    };
    let n = log.len() as i128;
    let oldest = log.front().map(|&t| i128::from(t));
    if n + p.cost <= p.limit {
        let oldest = oldest.map_or(p.now_us, |o| o.min(p.now_us));
        let reset = ceil_div(oldest + win_us - p.now_us, 1000);
        return (
            outcome(true, p.limit - n - p.cost, 0, reset),
            Some(Pending::Log),
        );
    }
    let reset = oldest.map_or(0, |o| ceil_div(o + win_us - p.now_us, 1000));
    let retry = if p.cost > p.limit {
        p.window_ms
    } else {
        let k = n + p.cost - p.limit;
        let s = i128::from(log[(k - 1) as usize]);
        ceil_div(s + win_us - p.now_us, 1000)
    };
    (outcome(false, (p.limit - n).max(0), retry, reset), None)
}

/// Records `cost` admissions at now. `None` when there is no log yet (the caller stores a new
/// entry from [`fresh`]).
pub(super) fn append(entry: Option<&mut Entry>, p: &LimitParams) -> Option<()> {
    let Some(Entry {
        data: Data::Log(log),
        expires_us,
    }) = entry
    else {
        return None;
    };
    let now = to_us(p.now_us);
    // Sorted like the ZSET even if the clock stepped back.
    let at = log.partition_point(|&t| t <= now);
    for _ in 0..p.cost {
        log.insert(at, now);
    }
    *expires_us = (*expires_us).max(to_us(p.now_us + p.window_ms * 1000));
    Some(())
}

/// A new log holding `cost` admissions at now.
pub(super) fn fresh(p: &LimitParams) -> Entry {
    let now = to_us(p.now_us);
    Entry {
        expires_us: to_us(p.now_us + p.window_ms * 1000),
        data: Data::Log(std::iter::repeat_n(now, p.cost as usize).collect()),
    }
}

fn to_us(v: i128) -> u64 {
    super::params::to_u64(v)
}
