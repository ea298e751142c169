//! The rate-limit headers: IETF draft-11 `RateLimit-Policy`/`RateLimit` and the legacy
//! `X-RateLimit-*` trio, for the most restrictive limit of the request.

use std::sync::Arc;

use http::HeaderValue;

use crate::config::LimitHeaders;
use crate::limiter::{LimitOutcome, Verdict};

/// The limit whose headers a response carries (a tier's own, or `<policy>.<limit>`), and its
/// state.
#[derive(Debug, Clone)]
pub struct Headline {
    pub name: Arc<str>,
    pub pre: LimitHeaders,
    pub outcome: LimitOutcome,
}

/// The position in the verdict of the limit a response's headers describe, and its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    pub index: usize,
    pub outcome: LimitOutcome,
}

/// Denied: the violated limit that frees last. Allowed: the one with the least left (the
/// later reset on a tie): that is the limit a client should pace itself by.
pub fn headline(verdict: &Verdict) -> Option<Pick> {
    let pick = if verdict.allowed {
        verdict
            .outcomes
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                a.remaining
                    .cmp(&b.remaining)
                    .then(b.reset_ms.cmp(&a.reset_ms))
            })
    } else {
        verdict
            .outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.allowed)
            .max_by_key(|(_, o)| o.retry_after_ms)
    };
    pick.map(|(index, o)| Pick { index, outcome: *o })
}

/// Whole seconds, rounded up, at least 1 (`Retry-After` must not invite an instant retry).
pub fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// The five header name/value pairs for `headline`.
pub fn header_pairs(h: &Headline) -> [(&'static str, HeaderValue); 5] {
    let name = &h.name;
    let pre = &h.pre;
    let remaining = if h.outcome.allowed {
        h.outcome.remaining
    } else {
        0
    };
    let t = h.outcome.reset_ms.div_ceil(1000);
    let mut b1 = itoa::Buffer::new();
    let mut b2 = itoa::Buffer::new();
    let state = format!("\"{name}\";r={};t={}", b1.format(remaining), b2.format(t));
    [
        ("RateLimit-Policy", pre.policy.clone()),
        (
            "RateLimit",
            HeaderValue::from_str(&state).unwrap_or_else(|_| HeaderValue::from_static("")),
        ),
        ("X-RateLimit-Limit", pre.limit.clone()),
        ("X-RateLimit-Remaining", HeaderValue::from(remaining)),
        ("X-RateLimit-Reset", HeaderValue::from(t)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(allowed: bool, remaining: u64, retry: u64, reset: u64) -> LimitOutcome {
        LimitOutcome {
            allowed,
            remaining,
            retry_after_ms: retry,
            reset_ms: reset,
        }
    }

    #[test]
    fn picks_least_remaining_when_allowed() {
        let v = Verdict {
            allowed: true,
            outcomes: vec![o(true, 19, 0, 1000), o(true, 5, 0, 60000)],
        };
        assert_eq!(headline(&v).unwrap().index, 1);
    }

    #[test]
    fn picks_longest_wait_when_denied() {
        let v = Verdict {
            allowed: false,
            outcomes: vec![
                o(false, 0, 50, 1000),
                o(false, 0, 9000, 60000),
                o(true, 3, 0, 5),
            ],
        };
        assert_eq!(headline(&v).unwrap().index, 1);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(ceil_secs(0), 1);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1001), 2);
    }
}
