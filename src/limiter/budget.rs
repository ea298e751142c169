//! What a request draws on: one or more budgets, each an identity with the limits that apply to it.
//!
//! A request has the budget of its caller (an API key's id, or an anonymous client IP), and one
//! more per matching policy (the caller's again, a per-IP, a global or a per-header bucket).
//! Every budget of a request is decided together: in one call by the in-process store and by a
//! single Redis, in one call per hash slot on Redis Cluster (with a refund when the slots
//! disagree, see `store::redis::cluster_split`).

use super::Limit;

/// `limits` counted against `identity`.
///
/// `identity` is already in its store form (a digest, `ip:<addr>`, ...), never a raw key; it
/// becomes the hash tag of every key of this budget.
///
/// `overflow` names the shared bucket (one per tier) the in-process store counts this budget in
/// when it is full and `identity` is new to it (`memory_max_identities`).
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    pub identity: &'a str,
    pub limits: &'a [Limit],
    pub overflow: &'a str,
}

impl<'a> Budget<'a> {
    pub fn new(identity: &'a str, limits: &'a [Limit]) -> Self {
        Budget {
            identity,
            limits,
            overflow: "",
        }
    }

    /// The same budget, counted in the overflow bucket `scope` when the in-process store is full.
    pub fn with_overflow(mut self, scope: &'a str) -> Self {
        self.overflow = scope;
        self
    }
}

/// The number of limits over all `budgets`: the length of a verdict's outcomes.
pub fn limit_count(budgets: &[Budget<'_>]) -> usize {
    budgets.iter().map(|b| b.limits.len()).sum()
}
