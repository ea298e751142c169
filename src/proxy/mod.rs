//! The proxy: a Pingora `ProxyHttp` service and everything it writes on the wire.
//!
//! [`Gateway`] runs the phases: identify and limit in `request_filter`, pick a healthy peer in
//! `upstream_peer`, rewrite headers for the upstream, add rate-limit headers to the response,
//! and record metrics and the access log in `logging`. The work itself lives in the sibling
//! modules; the phase methods only call into them.

mod conformance;
mod ctx;
mod enforce;
mod gateway;
mod grpc;
pub mod headers;
mod identify;
pub mod ratelimit_headers;
mod record;
pub mod responses;
mod slot;

pub use ctx::RequestCtx;
pub use gateway::Gateway;
