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
//! * [`identity`]: what the request presents: the API key reduced to a digest, the client IP,
//!   and the [`identity::StoreIdentity`] its counters are kept under. Imports nothing else.
//! * [`config`]: the YAML schema, validation into an immutable [`config::Snapshot`] (routes,
//!   tiers, keys, [`config::Caller`] resolution), and hot reload (SIGHUP and file edits).
//! * [`limiter`]: budgets and limits in, a verdict out: the algorithms, the
//!   [`limiter::Store`] trait with `store/redis` (Lua scripts in `scripts/redis/`) and
//!   `store/memory` (one file per algorithm, like the scripts), and the failure policy. Imports
//!   nothing from config, identity, proxy or admin: config converts into its settings types.
//! * [`keys_redis`]: keys unknown to the snapshot's tables, looked up in a Redis hash and
//!   cached per replica (lock-free slots).
//! * [`upstream`]: peer pools with health state.
//! * [`tls`]: certificate files loaded and checked, the per-listener SNI resolver whose
//!   certificates swap without a restart, the ClientHello check behind `min_version: "1.3"`.
//! * [`state`]: the [`state::Generation`] in force (snapshot, pools, limiter), swapped with
//!   `arc-swap`; read by the proxy and the admin service.
//! * [`proxy`]: the Pingora `ProxyHttp` implementation and the answers it writes.
//! * [`admin`], [`metrics`], [`access_log`], [`request_id`]: observability.
//! * [`listener`]: the per-IP connection rate decided at accept time, and the HTTP/1 wire
//!   guards under Pingora's parser.
//! * [`app`]: the composition root (builds generations, wires the services and the plain, h2c
//!   and TLS listeners, rotates certificates); [`cli`]: the command line; [`log_redact`]: the
//!   logger, which withholds secret header values at every level.

// A panic on the request path takes a worker down with every request it holds: fallible steps
// return errors instead. Tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod identity;
pub mod keys_redis;
pub mod limiter;
pub mod listener;
pub mod log_redact;
pub mod metrics;
pub mod proxy;
pub mod request_id;
pub mod state;
pub mod tls;
pub mod top_limited;
pub mod upstream;
