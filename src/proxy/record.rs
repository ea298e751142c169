//! The `logging` phase's work: metrics and the access log line, once per request.

use std::time::{SystemTime, UNIX_EPOCH};

use pingora::proxy::Session;
use serde_json::json;

use super::RequestCtx;
use crate::{access_log, metrics};

pub fn record(session: &Session, ctx: &RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.error_status)
        .unwrap_or(0);
    let took = ctx.started.elapsed();
    metrics::request(ctx.route_label(), ctx.tier_label(), status, took);
    if let Some(identity) = &ctx.identity {
        metrics::key_request(identity.key_id(), ctx.decision.unwrap_or("unlimited"));
    }

    let Some(generation) = &ctx.generation else {
        return;
    };
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
    let line = json!({
        "ts": rfc3339_now(),
        "request_id": ctx.request_id.to_str().unwrap_or("-"),
        "traceparent": ctx.traceparent.as_ref().and_then(|t| t.to_str().ok()),
        "method": req.method.as_str(),
        // The path without its query: queries can carry tokens.
        "path": truncate(req.uri.path(), 256),
        "route": ctx.route_label(),
        "status": status,
        "key_id": ctx.identity.as_ref().map(|i| i.key_id()),
        "tier": ctx.identity.as_ref().map(|i| i.tier().name.as_ref()),
        "decision": ctx.decision,
        "remaining": remaining,
        "upstream": ctx.route().map(|r| r.upstream.as_str()),
        "peer": ctx.peer.map(|p| p.to_string()),
        "upstream_ms": ctx.upstream_took.map(|d| d.as_secs_f64() * 1000.0),
        "total_ms": took.as_secs_f64() * 1000.0,
    });
    access_log::write(line.to_string());
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

/// UTC time as `2026-11-28T01:02:03.456Z`, without a date-time dependency.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
