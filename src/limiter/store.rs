//! The seam between the limiter and its backends: Redis (single or cluster) or in-process memory.

use async_trait::async_trait;
use std::fmt;

use super::{Limit, Verdict};

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

/// A backend that decides a request against several limits atomically.
///
/// Contract shared by every implementation (the Lua scripts and [`super::MemoryStore`]):
/// every limit is checked first; only if all admit `cost` is `cost` recorded in all of them.
/// A denied request changes no counter. `now_us` (microseconds since the epoch) overrides the
/// store's clock, for tests; `None` means the store's own time (Redis `TIME`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `identity` is already a digest or `ip:<addr>`, never a raw key.
    async fn check(
        &self,
        identity: &str,
        limits: &[Limit],
        cost: u64,
        now_us: Option<u64>,
    ) -> Result<Verdict, StoreError>;

    /// A cheap liveness probe (Redis PING) for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// `redis`, `redis_cluster` or `memory`, for logs and metrics.
    fn kind(&self) -> &'static str;
}
