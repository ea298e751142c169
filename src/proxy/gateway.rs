//! [`Gateway`]: the `ProxyHttp` implementation. Each phase is a few lines that call into the
//! modules doing the work (identity, limiter, headers, responses, record).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::headers::{self, Forwarding};
use super::ratelimit_headers::header_pairs;
use super::responses::Problem;
use super::{conformance, enforce, identify, record, RequestCtx};
use crate::config::Caller;
use crate::listener::GuardedStream;
use crate::state::SharedState;
use crate::{identity, metrics, request_id};

pub struct Gateway {
    state: Arc<SharedState>,
}

impl Gateway {
    pub fn new(state: Arc<SharedState>) -> Self {
        Gateway { state }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(guard) = GuardedStream::of(session.stream()) {
            guard.begin_request();
        }
        // Pipelined requests are answered in order, each through every phase on its own.
        session.set_pipelining_enabled(true);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let generation = self.state.load();
        ctx.generation = Some(generation.clone());
        let snapshot = &generation.snapshot;
        let req = session.req_header();
        ctx.request_id = request_id::request_id(&req.headers);
        ctx.traceparent = Some(request_id::traceparent(&req.headers));
        if let Some(why) = conformance::violation(session) {
            session.set_keepalive(None);
            let mut p = Problem::new(400, "Bad Request", why);
            p.request_id = Some(&ctx.request_id);
            return p.send(session).await;
        }
        let req = session.req_header();
        if headers::head_size(req) > headers::MAX_REQUEST_HEAD {
            let detail = format!(
                "the request line and headers exceed {} bytes",
                headers::MAX_REQUEST_HEAD
            );
            let mut p = Problem::new(431, "Request Header Fields Too Large", detail);
            p.request_id = Some(&ctx.request_id);
            return p.send(session).await;
        }
        ctx.route = snapshot.route_for(req.uri.path(), &req.method);
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client = identity::client_ip(peer_ip, &req.headers, &snapshot.trusted_proxies);
        let key = req.headers.get(&snapshot.key_header).map(|v| v.as_bytes());
        let resolved = snapshot.resolve(key, client);
        ctx.client_ip = client;

        if ctx.route.is_none() {
            let mut p = Problem::new(404, "Not Found", "no route matches this path");
            p.request_id = Some(&ctx.request_id);
            return p.send(session).await;
        }
        match identify::caller(&generation, resolved, client).await {
            Ok(id) => ctx.identity = Some(id),
            Err(why) => return enforce::unauthorized(session, ctx, why).await,
        }
        enforce::enforce(session, ctx).await
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let generation = ctx
            .generation
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no configuration"))?;
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let pool = generation
            .upstreams
            .get(&route.upstream)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route names no upstream"))?;
        let backend = pool.select(&ctx.failed_peers).ok_or_else(|| {
            metrics::upstream_error(&route.upstream, "no_healthy_peer");
            Error::explain(ErrorType::ConnectNoRoute, "no healthy peer").into_up()
        })?;
        ctx.peer = backend.addr.as_inet().copied();
        ctx.upstream_started.get_or_insert_with(Instant::now);
        Ok(Box::new(pool.peer(&backend)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(route) = ctx.route().cloned() else {
            return e;
        };
        metrics::upstream_error(&route.upstream, "connect");
        let pool = ctx
            .generation
            .as_ref()
            .and_then(|g| g.upstreams.get(&route.upstream))
            .cloned();
        if let Some(p) = ctx.peer.take() {
            if let Some(pool) = &pool {
                pool.mark_failed(&p);
            }
            ctx.failed_peers.push(p);
        }
        let (retries, peers) = pool
            .as_ref()
            .map_or((0, 0), |p| (p.settings.retries as usize, p.peer_count()));
        // Nothing was sent yet, so any method may go to the next peer.
        if ctx.failed_peers.len() <= retries && ctx.failed_peers.len() < peers {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(generation) = ctx.generation.clone() else {
            return Ok(());
        };
        let Some(route) = ctx.route() else {
            return Ok(());
        };
        let empty = http::HeaderValue::from_static("");
        let pool = generation.upstreams.get(&route.upstream);
        let host = pool.map_or(&empty, |p| &p.host_header);
        let h2_upstream = pool.is_some_and(|p| p.settings.http2);
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical().to_string());
        let f = Forwarding {
            route,
            upstream_host: host,
            key_header: &generation.snapshot.key_header,
            peer_ip,
            request_id: &ctx.request_id,
            traceparent: ctx.traceparent.as_ref(),
            key_id: match &ctx.identity {
                Some(Caller::Key(k)) => Some(&k.id_header),
                _ => None,
            },
            tier: ctx.identity.as_ref().map(|i| i.tier().name.as_ref()),
            https: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
            te_trailers: h2_upstream && headers::accepts_trailers(session.req_header()),
        };
        headers::rewrite(upstream_request, &f)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(start), Some(g), Some(route)) =
            (ctx.upstream_started, &ctx.generation, ctx.route)
        {
            let took = start.elapsed();
            g.metrics.upstream(route, took);
            ctx.upstream_took = Some(took);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header("X-Request-Id", ctx.request_id.clone())?;
        if let Some(h) = &ctx.headline {
            for (name, value) in header_pairs(h) {
                resp.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream = ctx.route().map(|r| r.upstream.clone());
        let (code, title, detail, kind) = classify(e, upstream.as_deref());
        if let (Some(u), Some(kind)) = (&upstream, kind) {
            if kind != "connect" {
                metrics::upstream_error(u, kind);
            }
        }
        ctx.error_status = Some(code);
        if code > 0 && session.response_written().is_none() {
            // The connection is not reused after a proxy failure: say so, so that a client's
            // pool does not send its next request into a closing socket.
            session.set_keepalive(None);
            let mut p = Problem::new(code, title, detail);
            p.request_id = Some(&ctx.request_id);
            if let Err(err) = p.send(session).await {
                log::debug!("request {:?}: could not send {code}: {err}", ctx.request_id);
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(guard) = GuardedStream::of(session.stream()) {
            guard.end_request();
        }
        if let Some(e) = e {
            if e.esource() != &ErrorSource::Downstream {
                log::warn!(
                    "request {} on route {}: {e}",
                    ctx.request_id.to_str().unwrap_or("-"),
                    ctx.route_label()
                );
            }
        }
        record::record(session, ctx);
        // The request is over: its concurrency slot goes back now, not when Pingora gets to
        // dropping the context.
        ctx.slot = None;
    }
}

/// Status, title, detail and the `kind` label for a proxy failure.
fn classify(
    e: &Error,
    upstream: Option<&str>,
) -> (u16, &'static str, String, Option<&'static str>) {
    use ErrorType::*;
    let up = upstream.unwrap_or("upstream");
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => (*code, "Error", format!("status {code}"), None),
        (
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
            | TLSHandshakeTimedout | InvalidCert | HandshakeError,
            _,
        ) => (
            502,
            "Bad Gateway",
            format!("upstream {up} is unreachable"),
            Some("connect"),
        ),
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => (
            504,
            "Gateway Timeout",
            format!("upstream {up} did not answer in time"),
            Some("timeout"),
        ),
        (_, ErrorSource::Upstream) => (
            502,
            "Bad Gateway",
            format!("upstream {up} failed"),
            Some(if matches!(e.etype(), ConnectionClosed) {
                "closed"
            } else {
                "other"
            }),
        ),
        (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => {
            (0, "", String::new(), None)
        }
        (ReadTimedout | WriteTimedout, ErrorSource::Downstream) => (
            408,
            "Request Timeout",
            "the client was too slow".into(),
            None,
        ),
        (_, ErrorSource::Downstream) => (400, "Bad Request", "malformed request".into(), None),
        _ => (500, "Internal Server Error", "internal error".into(), None),
    }
}
