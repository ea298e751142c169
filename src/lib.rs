//! tollgate: an edge proxy on Pingora that puts per-API-key rate limits in front of any HTTP
//! service, decided atomically in Redis so that any number of replicas share one exact count.
//!
//! # Layout
//!
//! The modules follow a request:
//!
//! ```text
//! request → identity → tier lookup (config snapshot) → limiter (store: Redis | memory)
//!         → upstream → response headers → logging and metrics
//! ```
//!
//! * [`config`]: the YAML schema, validation into an immutable [`config::Snapshot`], and hot
//!   reload (SIGHUP and file edits) through `arc-swap`.
//! * [`identity`]: API key or client IP → identity and tier.
//! * [`limiter`]: the algorithms, the [`limiter::Store`] trait with its Redis (Lua scripts in
//!   `scripts/redis/`) and in-process implementations, and the failure policy.
//! * [`proxy`]: the Pingora `ProxyHttp` implementation and the answers it writes.
//! * [`admin`], [`metrics`], [`access_log`], [`request_id`]: observability.
//! * [`app`] and [`cli`]: wiring and the command line.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod identity;
pub mod limiter;
pub mod listeners;
pub mod metrics;
pub mod proxy;
pub mod request_id;
pub mod tls;
