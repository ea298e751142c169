//! What a store answers: one outcome per limit and the overall decision.

/// The state of one limit after a check.
///
/// Times are milliseconds from "now", rounded up, so a client that waits `retry_after_ms` is
/// admitted (unless someone else took the slot first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitOutcome {
    /// This limit alone would admit the request.
    pub allowed: bool,
    /// Units left after this request when it was admitted; units left before it when denied.
    pub remaining: u64,
    /// When denied: time until this limit could admit the request's cost. 0 when allowed.
    pub retry_after_ms: u64,
    /// Time until the limit's usage next goes down (the `t` of the RateLimit header).
    pub reset_ms: u64,
}

/// The store's decision for one request against every limit of its tier.
///
/// `allowed` is true only when every outcome is allowed; then, and only then, the request was
/// recorded in every limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub allowed: bool,
    pub outcomes: Vec<LimitOutcome>,
}

impl Verdict {
    /// The longest wait among the violated limits (0 when allowed).
    pub fn retry_after_ms(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|o| !o.allowed)
            .map(|o| o.retry_after_ms)
            .max()
            .unwrap_or(0)
    }
}

/// How much of one limit is in use, read without charging anything (the admin API's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// Until the window frees what is used, as `X-RateLimit-Reset` reports it.
    pub reset_ms: u64,
}

impl Usage {
    /// From what a check of cost 0 answers: everything not remaining is used.
    pub fn new(limit: &super::Limit, remaining: u64, reset_ms: u64) -> Self {
        let remaining = remaining.min(limit.requests);
        Usage {
            limit: limit.requests,
            used: limit.requests - remaining,
            remaining,
            reset_ms,
        }
    }
}
