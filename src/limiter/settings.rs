//! The limiter's own settings types. The config module converts its validated YAML into these,
//! so the limiter never depends on how a configuration is written.

use std::time::Duration;

pub use super::breaker::BreakerSettings;

/// What a request gets when the store cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Admit, unlimited.
    #[default]
    FailOpen,
    /// Refuse with 503.
    FailClosed,
    /// Decide with the in-process store: limits per replica instead of shared.
    Local,
}

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// A Redis store and what to do when it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    pub target: RedisTarget,
    /// The budget of one decision, connecting included.
    pub timeout: Duration,
    pub on_error: OnError,
    pub key_prefix: String,
    pub breaker: BreakerSettings,
    pub over_limit_cache: bool,
    /// The expiry of a concurrency slot: a replica that dies holding slots leaks them no longer.
    pub concurrency_lease: Duration,
}

/// `redis.concurrency_lease` when not set, and the lease of the in-process store.
pub const DEFAULT_CONCURRENCY_LEASE: Duration = Duration::from_secs(60);
