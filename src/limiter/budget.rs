//! What a request draws on: one or more budgets, each an identity with the limits that apply to it.
//!
//! Today a request has the budget of its caller (an API key's id, or an anonymous client IP).
//! Policies add more (a per-IP, a global or a per-header bucket), and every budget of a request
//! is decided in one store call per Redis hash slot, so the stores take a list from the start.

use super::Limit;

/// `limits` counted against `identity`.
///
/// `identity` is already in its store form (a digest, `ip:<addr>`, ...), never a raw key; it
/// becomes the hash tag of every key of this budget.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    pub identity: &'a str,
    pub limits: &'a [Limit],
}

impl<'a> Budget<'a> {
    pub fn new(identity: &'a str, limits: &'a [Limit]) -> Self {
        Budget { identity, limits }
    }
}

/// The number of limits over all `budgets`: the length of a verdict's outcomes.
pub fn limit_count(budgets: &[Budget<'_>]) -> usize {
    budgets.iter().map(|b| b.limits.len()).sum()
}
