//! The arithmetic every in-process algorithm shares, mirroring the Lua dispatcher's clamping
//! and its integer helpers, in i128 so that no product can overflow.

use crate::limiter::{Limit, LimitOutcome};

use super::Pending;

/// One limit's inputs after the dispatcher's clamping.
pub(super) struct LimitParams {
    pub limit: i128,
    pub window_ms: i128,
    pub cost: i128,
    pub now_us: i128,
}

impl LimitParams {
    pub fn new(l: &Limit, cost: i128, now_us: u64) -> Self {
        LimitParams {
            limit: i128::from(l.requests),
            window_ms: i128::from(l.window_ms.max(1)),
            cost,
            now_us: i128::from(now_us),
        }
    }
}

/// What a check answers, and what it hands to the commit (the Lua `state`) when it admits.
pub(super) type Checked = (LimitOutcome, Option<Pending>);

/// `floor(a / b)` for `b > 0` (Lua's `math.floor(a / b)`).
pub(super) fn floor_div(a: i128, b: i128) -> i128 {
    a.div_euclid(b)
}

/// `ceil(a / b)` for `b > 0` (Lua's `math.ceil(a / b)`).
pub(super) fn ceil_div(a: i128, b: i128) -> i128 {
    -(-a).div_euclid(b)
}

pub(super) fn to_u64(v: i128) -> u64 {
    v.clamp(0, i128::from(u64::MAX)) as u64
}

pub(super) fn outcome(
    allowed: bool,
    remaining: i128,
    retry_ms: i128,
    reset_ms: i128,
) -> LimitOutcome {
    LimitOutcome {
        allowed,
        remaining: to_u64(remaining),
        retry_after_ms: to_u64(retry_ms),
        reset_ms: to_u64(reset_ms),
    }
}
