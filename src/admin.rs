//! The admin listener: `/metrics` (delegated to pingora-prometheus), `/healthz` and `/readyz`.
//!
//! One Pingora HTTP service on `admin_listen`, kept off the proxy listeners so that probes and
//! scrapes are never rate limited and never reachable from the public port.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::PrometheusHttpApp;

use crate::state::SharedState;

pub struct AdminApp {
    state: Arc<SharedState>,
}

impl AdminApp {
    pub fn new(state: Arc<SharedState>) -> Self {
        AdminApp { state }
    }
}

fn text(status: u16, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => PrometheusHttpApp.response(session).await,
            "/healthz" => text(200, "ok\n".into()),
            "/readyz" => {
                let generation = self.state.load();
                match generation.limiter.ready().await {
                    Ok(()) => text(
                        200,
                        format!(
                            "ready: config generation {}, store {} reachable\n",
                            generation.number,
                            generation.limiter.store_kind()
                        ),
                    ),
                    Err(e) => text(
                        503,
                        format!(
                            "not ready: store {} unreachable: {e}\n",
                            generation.limiter.store_kind()
                        ),
                    ),
                }
            }
            _ => text(404, "not found: try /metrics, /healthz or /readyz\n".into()),
        }
    }
}
