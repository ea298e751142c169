//! Per-request state carried through the Pingora phases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use super::ratelimit_headers::Headline;
use crate::config::{Caller, Route};
use crate::metrics::Decision;
use crate::state::Generation;

pub struct RequestCtx {
    pub started: Instant,
    /// The configuration this request is judged by, from start to end.
    pub generation: Option<Arc<Generation>>,
    /// Index into `generation.snapshot.routes`.
    pub route: Option<usize>,
    pub identity: Option<Caller>,
    pub request_id: HeaderValue,
    pub traceparent: Option<HeaderValue>,
    /// The `decision` label of the rate-limit metrics, once decided.
    pub decision: Option<Decision>,
    /// The limit whose headers the response carries.
    pub headline: Option<Headline>,
    pub peer: Option<SocketAddr>,
    /// The client address as judged (`identity.trusted_proxies`), for `by: ip` policies.
    pub client_ip: Option<std::net::IpAddr>,
    /// Peers that refused a connection for this request, skipped on retry.
    pub failed_peers: Vec<SocketAddr>,
    pub upstream_started: Option<Instant>,
    pub upstream_took: Option<Duration>,
    /// The status `fail_to_proxy` chose, for logging when nothing else was written.
    pub error_status: Option<u16>,
    /// The concurrency slot this request holds, given back when it is dropped.
    pub slot: Option<super::slot::Slot>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            started: Instant::now(),
            generation: None,
            route: None,
            identity: None,
            request_id: HeaderValue::from_static("-"),
            traceparent: None,
            decision: None,
            headline: None,
            peer: None,
            client_ip: None,
            failed_peers: Vec::new(),
            upstream_started: None,
            upstream_took: None,
            error_status: None,
            slot: None,
        }
    }
}

impl RequestCtx {
    pub fn route(&self) -> Option<&Route> {
        Some(&self.generation.as_ref()?.snapshot.routes[self.route?])
    }

    /// The `route` label: the route's name (by default its prefix), or `unmatched`.
    pub fn route_label(&self) -> &str {
        self.route().map_or("unmatched", |r| &r.name)
    }

    pub fn tier_label(&self) -> &str {
        self.identity.as_ref().map_or("none", |i| &i.tier().name)
    }
}
