//! The admin listener: `/metrics` (delegated to pingora-prometheus), `/healthz`, `/readyz`, and
//! the operator API under `/v1/` (key usage, reset, who is being limited, the config in force).
//!
//! One Pingora HTTP service on `admin_listen`, kept off the proxy listeners so that probes and
//! scrapes are never rate limited and never reachable from the public port. `/v1/` is guarded by
//! [`auth`]; the probes and metrics stay open.

mod answer;
mod auth;
mod report;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::PrometheusHttpApp;

use crate::identity::KeyDigest;
use crate::metrics;
use crate::state::SharedState;
use auth::Refusal;

/// The window the `tollgate_top_limited` gauge covers.
const TOP_GAUGE_WINDOW: Duration = Duration::from_secs(60);

pub struct AdminApp {
    state: Arc<SharedState>,
    /// The token from `TOLLGATE_ADMIN_TOKEN`, which wins over the config's digest.
    env_token: Option<KeyDigest>,
}

impl AdminApp {
    pub fn new(state: Arc<SharedState>) -> Self {
        AdminApp {
            state,
            env_token: auth::env_token(),
        }
    }

    async fn v1(&self, session: &ServerSession, path: &str) -> Response<Vec<u8>> {
        let generation = self.state.load();
        let req = session.req_header();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let token = self
            .env_token
            .as_ref()
            .or(generation.snapshot.admin_token_sha256.as_ref());
        match auth::check(token, &req.headers, peer) {
            Ok(()) => {}
            Err(Refusal::Unauthorized) => {
                return answer::problem(
                    401,
                    "Unauthorized",
                    "a valid admin bearer token is required",
                )
            }
            Err(Refusal::Forbidden) => {
                return answer::problem(
                    403,
                    "Forbidden",
                    "no admin token is set, so /v1/ answers only loopback peers",
                )
            }
        }
        let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
        match (&req.method, parts.as_slice()) {
            (&Method::GET, ["keys", id]) => usage::read(&generation, id).await,
            (&Method::DELETE, ["keys", id, "usage"]) => {
                let presented = req.headers.contains_key(http::header::AUTHORIZATION);
                usage::clear(&generation, id, peer, presented).await
            }
            (&Method::GET, ["top"]) => report::top(&generation, req.uri.query()),
            (&Method::GET, ["config"]) => report::config(&generation),
            (_, ["keys", _] | ["keys", _, "usage"] | ["top"] | ["config"]) => {
                answer::problem(405, "Method Not Allowed", "see the admin API in the README")
            }
            _ => answer::problem(404, "Not Found", "no such admin endpoint"),
        }
    }

    async fn ready(&self) -> Response<Vec<u8>> {
        let generation = self.state.load();
        let store = generation.limiter.store_kind();
        match generation.limiter.ready().await {
            Ok(()) => answer::text(
                200,
                format!(
                    "ready: config generation {}, store {store} reachable\n",
                    generation.number
                ),
            ),
            Err(e) => answer::text(503, format!("not ready: store {store} unreachable: {e}\n")),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => {
                // The gauge mirrors the sketch as of this scrape, so it never holds stale series.
                let top = self
                    .state
                    .load()
                    .top
                    .top(metrics::TOP_LIMITED_SERIES, TOP_GAUGE_WINDOW);
                metrics::set_top_limited(&top);
                PrometheusHttpApp.response(session).await
            }
            "/healthz" => answer::text(200, "ok\n".into()),
            "/readyz" => self.ready().await,
            p if p.starts_with("/v1/") => self.v1(session, p).await,
            _ => answer::text(
                404,
                "not found: try /metrics, /healthz, /readyz or /v1/\n".into(),
            ),
        }
    }
}
