//! The seam between the limiter and its backends: Redis (single or cluster) or in-process memory.
//!
//! The two implementations mirror each other file for file: `memory/<algorithm>.rs` is the Rust
//! twin of `scripts/redis/<algorithm>.lua`, and both are driven by the same dispatcher shape
//! (check every limit, then commit all or none).

use async_trait::async_trait;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{Budget, Usage, Verdict};

mod keys;
pub mod memory;
pub mod redis;

pub use keys::{KeyBuilder, KeySet};

/// Why a store could not decide. Never carries a raw API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The call did not finish within its budget.
    Timeout,
    /// No connection could be made or the connection broke.
    Unavailable(String),
    /// The store answered something we did not expect (a script error, a wrong type).
    Protocol(String),
    /// The circuit breaker is open: the store was not asked.
    CircuitOpen,
}

impl StoreError {
    /// A short label for `tollgate_store_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Protocol(_) => "protocol",
            StoreError::CircuitOpen => "circuit_open",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("store call timed out"),
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Protocol(m) => write!(f, "store protocol error: {m}"),
            StoreError::CircuitOpen => f.write_str("store circuit breaker open"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A store call that ran out of its budget but is still under way: awaiting it gives the
/// store's answer when it comes (bounded by the store's own late-answer horizon).
pub type LateAnswer = Pin<Box<dyn Future<Output = Result<Verdict, StoreError>> + Send + 'static>>;

/// The answer to a request for a concurrency slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The slot is the request's until it is released or the lease runs out.
    Granted,
    /// Every slot is held; the earliest lease runs out in `retry_ms` at the latest.
    Full { retry_ms: u64 },
}

/// A backend that decides a request against all of its budgets atomically.
///
/// Contract shared by every implementation (the Lua scripts and [`memory::MemoryStore`]):
/// every limit of every budget is checked first; only if all admit `cost` is `cost` recorded in
/// all of them. A denied request changes no counter. The verdict has one outcome per limit, in
/// budget order. Time comes from the [`super::Clock`] the store was built with. Callers never
/// pass an empty list (the limiter answers those itself).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn check(&self, budgets: &[Budget<'_>], cost: u64) -> Result<Verdict, StoreError>;

    /// As [`Store::check`], but a call that times out hands back
    /// the call itself, still running, so that its late answer is not wasted. Stores that
    /// cannot time out keep this default.
    async fn check_keeping_late(
        &self,
        budgets: &[Budget<'_>],
        cost: u64,
    ) -> Result<Verdict, (StoreError, Option<LateAnswer>)> {
        self.check(budgets, cost).await.map_err(|e| (e, None))
    }

    /// The usage of every limit of `budgets`, in order, without charging or recording anything.
    async fn peek(&self, budgets: &[Budget<'_>]) -> Result<Vec<Usage>, StoreError>;

    /// Forgets every counter of `budgets`: the next request finds them empty.
    async fn reset(&self, budgets: &[Budget<'_>]) -> Result<(), StoreError>;

    /// Takes one of `max` concurrency slots of `identity` for the in-flight request `token`
    /// (unique per request), held until [`Store::release`] or until `lease` passes.
    async fn acquire(
        &self,
        identity: &str,
        token: u64,
        max: u64,
        lease: Duration,
    ) -> Result<Lease, StoreError>;

    /// Gives the slot of `token` back (nothing when its lease already ran out).
    async fn release(&self, identity: &str, token: u64) -> Result<(), StoreError>;

    /// A cheap liveness probe (Redis PING) for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// `HGET hash field`: the `keys_redis` lookup of a key digest. Stores without a hash
    /// (the in-process one) know no key.
    async fn hget(&self, _hash: &str, _field: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// `redis`, `redis_cluster` or `memory`, for logs and metrics.
    fn kind(&self) -> &'static str;
}
