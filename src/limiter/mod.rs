//! The limiter: decides whether a request fits every limit of its tier.
//!
//! The proxy hands a [`Limiter`] an identity, the tier's limits and a cost; the limiter asks a
//! [`Store`] (Redis through the Lua scripts in `scripts/redis/`, or in-process memory) for an
//! atomic verdict and applies the failure policy (circuit breaker, `on_error`) when the store
//! cannot answer in time. Nothing here knows about HTTP.

mod algorithm;
mod breaker;
mod keys;
mod limit;
mod memory;
mod over_limit_cache;
mod policy;
mod redis_store;
mod store;
mod verdict;

pub use algorithm::Algorithm;
pub use breaker::{Breaker, Permit};
pub use keys::KeyBuilder;
pub use limit::Limit;
pub use memory::MemoryStore;
pub use over_limit_cache::OverLimitCache;
pub use policy::{Limiter, Outcome, Source};
pub use redis_store::{RedisStore, RedisTarget, RATELIMIT_LUA};
pub use store::{Store, StoreError};
pub use verdict::{LimitOutcome, Verdict};
