//! The `logging` phase's work: metrics and the access log line, once per request.
//!
//! The line is serialised straight into the access log's per-thread buffer (no `Value` tree,
//! no intermediate `String`), and its timestamp is formatted on the stack.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::proxy::Session;
use serde::Serialize;

use super::RequestCtx;
use crate::access_log;
use crate::metrics::{self, Decision};

/// One access log line. Field order is the line's order; `ts` must stay first (the writer
/// orders lines of different threads by it).
#[derive(Serialize)]
struct Line<'a> {
    ts: &'a str,
    request_id: &'a str,
    traceparent: Option<&'a str>,
    method: &'a str,
    /// The path without its query: queries can carry tokens.
    path: &'a str,
    route: &'a str,
    status: u16,
    key_id: Option<&'a str>,
    tier: Option<&'a str>,
    decision: Option<&'a str>,
    remaining: Option<u64>,
    upstream: Option<&'a str>,
    peer: Option<SocketAddr>,
    upstream_ms: Option<f64>,
    total_ms: f64,
}

pub fn record(session: &Session, ctx: &RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.error_status)
        .unwrap_or(0);
    let took = ctx.started.elapsed();
    let Some(generation) = &ctx.generation else {
        // Answered before a configuration was loaded for it (Pingora's own 4xx): rare.
        metrics::requests_counter("unmatched", "none", status).inc();
        metrics::request_duration("unmatched").observe(took.as_secs_f64());
        return;
    };
    let handles = &generation.metrics;
    handles.request(
        ctx.route,
        ctx.identity.as_ref().map(|i| &**i.tier()),
        status,
        took,
    );
    if let Some(identity) = &ctx.identity {
        handles.key_request(identity, ctx.decision.unwrap_or(Decision::Unlimited));
    }

    let settings = &generation.snapshot.access_log;
    if !access_log::wanted(settings, status) {
        return;
    }
    let req = session.req_header();
    let remaining = ctx.headline.as_ref().map(|h| {
        if h.outcome.allowed {
            h.outcome.remaining
        } else {
            0
        }
    });
    let ts = Timestamp::now();
    let line = Line {
        ts: ts.as_str(),
        request_id: ctx.request_id.to_str().unwrap_or("-"),
        traceparent: ctx.traceparent.as_ref().and_then(|t| t.to_str().ok()),
        method: req.method.as_str(),
        path: truncate(req.uri.path(), 256),
        route: ctx.route_label(),
        status,
        key_id: ctx.identity.as_ref().map(|i| i.key_id()),
        tier: ctx.identity.as_ref().map(|i| i.tier().name.as_ref()),
        decision: ctx.decision.map(Decision::as_str),
        remaining,
        upstream: ctx.route().map(|r| r.upstream.as_str()),
        peer: ctx.peer,
        upstream_ms: ctx.upstream_took.map(|d| d.as_secs_f64() * 1000.0),
        total_ms: took.as_secs_f64() * 1000.0,
    };
    access_log::write_with(|buf| {
        let start = buf.len();
        if serde_json::to_writer(&mut *buf, &line).is_err() {
            // Cannot happen for these field types; never leave half a line behind.
            buf.truncate(start);
        }
    });
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// UTC time as `2026-11-28T01:02:03.456789Z` (RFC 3339, microseconds), formatted on the stack.
pub struct Timestamp([u8; 27]);

impl Timestamp {
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::at(d.as_secs(), d.subsec_micros())
    }

    fn at(secs: u64, micros: u32) -> Self {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's civil_from_days.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year.clamp(0, 9999) as u64);
        put(5, 2, month as u64);
        put(8, 2, day as u64);
        put(11, 2, rem / 3600);
        put(14, 2, (rem % 3600) / 60);
        put(17, 2, rem % 60);
        put(20, 6, u64::from(micros));
        Timestamp(b)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn timestamp_shape() {
        let t = Timestamp::now();
        let t = t.as_str();
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }

    #[test]
    fn timestamp_of_a_known_instant() {
        // 2026-11-28T01:02:03Z is 1795827723 s after the epoch.
        assert_eq!(
            Timestamp::at(1_795_827_723, 456_789).as_str(),
            "2026-11-28T01:02:03.456789Z"
        );
        assert_eq!(Timestamp::at(0, 0).as_str(), "1970-01-01T00:00:00.000000Z");
    }
}
