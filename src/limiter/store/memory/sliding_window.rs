//! `sliding_window`: the current and previous windows' counters, the previous one weighted by its overlap (Cloudflare's estimate).
//!
//! The twin of `scripts/redis/sliding_window.lua`: the same steps in the same order, in integers, so that
//! both stores give the same answer to the same sequence of calls.

use super::params::{floor_div, outcome, Checked, LimitParams};
use super::{Data, Entry, Pending};

pub(super) fn check(entry: Option<&mut Entry>, p: &LimitParams) -> Checked {
    let w_ms = p.window_ms;
    let (l, c) = (p.limit, p.cost);
    let now_ms = floor_div(p.now_us, 1000);
    let idx = floor_div(now_ms, w_ms);
    let e = now_ms - idx * w_ms;
    let (cur, prev) = match entry {
        Some(Entry {
            data: Data::Sliding { w, k, p },
            ..
        }) => {
            if *w == idx {
                (*k, *p)
            } else if *w == idx - 1 {
                (0, *k)
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    };
    let reset = w_ms - e;
    let used = prev * (w_ms - e) + (cur + c) * w_ms;
    if used <= l * w_ms {
        let state = Pending::Sliding {
            idx,
            k: cur + c,
            p: prev,
        };
        let remaining = floor_div(l * w_ms - used, w_ms);
        return (outcome(true, remaining, 0, reset), Some(state));
    }
    let remaining = floor_div(l * w_ms - prev * (w_ms - e) - cur * w_ms, w_ms).max(0);
    let retry = if c > l {
        w_ms
    } else {
        // Later in this window, once prev's weight has shrunk enough...
        let this_window = if l - cur - c >= 0 && prev > 0 {
            let e2 = w_ms - floor_div((l - cur - c) * w_ms, prev);
            (e2 < w_ms).then_some(e2 - e)
        } else {
            None
        };
        // ...or in the next one, where this window's count becomes the weighted previous one.
        this_window.unwrap_or_else(|| {
            if cur == 0 {
                w_ms - e
            } else {
                let e3 = (w_ms - floor_div((l - c) * w_ms, cur)).max(0);
                (w_ms - e) + e3
            }
        })
    };
    (outcome(false, remaining, retry, reset), None)
}
