//! The limiter: decides whether a request fits every limit of every budget it draws on.
//!
//! The proxy hands a [`Limiter`] the request's [`Budget`]s (each an identity in store form with
//! its limits) and a cost; the limiter asks a [`Store`] (Redis through the Lua scripts in
//! `scripts/redis/`, or in-process memory) for an atomic verdict and applies the failure policy
//! (circuit breaker, `on_error`) when the store cannot answer in time. Nothing here knows about
//! HTTP, the configuration file or how callers are identified: its inputs are its own types
//! ([`RedisSettings`], [`Limit`], [`Budget`]).

mod algorithm;
mod breaker;
mod budget;
pub mod clock;
mod decide;
mod limit;
mod over_limit_cache;
mod settings;
pub mod store;
mod verdict;

pub use algorithm::Algorithm;
pub use breaker::{
    Breaker, BreakerClock, BreakerSettings, BreakerState, MonotonicClock, Observer, Permit,
    ProbeGuard, Transition,
};
pub use budget::{limit_count, Budget};
pub use clock::Clock;
pub use decide::{Limiter, Outcome, SlotOutcome, Source, MAX_LATE_CALLS};
pub use limit::Limit;
pub use over_limit_cache::OverLimitCache;
pub use settings::{OnError, RedisSettings, RedisTarget, DEFAULT_CONCURRENCY_LEASE};
pub use store::memory::MemoryStore;
pub use store::redis::{RedisStore, RATELIMIT_LUA};
pub use store::{KeyBuilder, LateAnswer, Lease, Store, StoreError};
pub use verdict::{LimitOutcome, Usage, Verdict};
