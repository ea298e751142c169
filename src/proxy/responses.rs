//! Answers tollgate writes itself, as RFC 9457 `application/problem+json`.
//!
//! Every answer carries `Content-Length`, so the client connection stays open after it (a 429
//! must not cost the client its connection), and `X-Request-Id`. A request body of up to
//! 64 KiB that the client is still sending is read and dropped first (bounded in time), so that
//! the connection survives the refusal; a larger one closes it after the answer. A gRPC call
//! gets the same answer in gRPC's trailers-only form instead ([`super::grpc`]).

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::Value;

/// The largest request body read and dropped to keep the connection after a refusal.
pub const MAX_DRAINED_BODY: usize = 64 * 1024;
/// How long a client may take to finish sending such a body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// One problem answer.
pub struct Problem<'a> {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
    /// `type` URI; `about:blank` when None.
    pub kind: Option<&'static str>,
    /// Extra members of the JSON body.
    pub extra: Vec<(&'static str, Value)>,
    /// Extra response headers.
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub request_id: Option<&'a HeaderValue>,
}

impl<'a> Problem<'a> {
    pub fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
            kind: None,
            extra: Vec::new(),
            headers: Vec::new(),
            request_id: None,
        }
    }

    /// The JSON body, rendered once per answer.
    pub fn body(&self) -> Bytes {
        let mut out = String::with_capacity(160 + self.detail.len());
        out.push_str("{\"type\":");
        push_json_str(&mut out, self.kind.unwrap_or("about:blank"));
        out.push_str(",\"title\":");
        push_json_str(&mut out, self.title);
        out.push_str(",\"status\":");
        out.push_str(itoa::Buffer::new().format(self.status));
        out.push_str(",\"detail\":");
        push_json_str(&mut out, &self.detail);
        for (k, v) in &self.extra {
            out.push(',');
            push_json_str(&mut out, k);
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
        Bytes::from(out)
    }

    pub fn header(&self, body_len: usize) -> Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(self.status, Some(6 + self.headers.len()))?;
        resp.insert_header("Content-Type", "application/problem+json")?;
        resp.insert_header("Content-Length", body_len)?;
        resp.insert_header("Cache-Control", "no-store")?;
        if let Some(id) = self.request_id {
            resp.insert_header("X-Request-Id", id.clone())?;
        }
        for (k, v) in &self.headers {
            resp.insert_header(*k, v.clone())?;
        }
        Ok(resp)
    }

    /// Writes the answer; returns `Ok(true)` for `request_filter` ("response already sent").
    pub async fn send(self, session: &mut Session) -> Result<bool> {
        if super::grpc::is_grpc(session) {
            return super::grpc::send(&self, session).await;
        }
        let body = self.body();
        let header = self.header(body.len())?;
        let head_only = session.req_header().method == http::Method::HEAD;
        drain_small_body(session).await;
        session
            .write_response_header(Box::new(header), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }
}

/// Reads and drops what is left of a small request body, or marks the connection for closing
/// when the body is too large, too slow, or not sent yet (`Expect: 100-continue`).
async fn drain_small_body(session: &mut Session) {
    if session.is_http2() || session.get_keepalive().is_none() || session.is_body_done() {
        return;
    }
    let headers = &session.req_header().headers;
    let too_large = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_DRAINED_BODY as u64);
    let awaits_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if too_large || awaits_continue {
        session.set_keepalive(None);
        return;
    }
    let drained = async {
        let mut total = 0usize;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    if total > MAX_DRAINED_BODY {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    };
    let complete = tokio::time::timeout(DRAIN_TIMEOUT, drained)
        .await
        .unwrap_or(false);
    if !complete {
        session.set_keepalive(None);
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_is_valid_json_with_extras() {
        let mut p = Problem::new(429, "Too Many Requests", "limit \"x\" of tier y\n");
        p.kind = Some(QUOTA_EXCEEDED);
        p.extra.push(("violated-policies", json!(["per_minute"])));
        p.extra.push(("retry_after_ms", json!(1234)));
        let v: Value = serde_json::from_slice(&p.body()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["detail"], "limit \"x\" of tier y\n");
        assert_eq!(v["violated-policies"][0], "per_minute");
        assert_eq!(v["retry_after_ms"], 1234);
        assert_eq!(v["type"], QUOTA_EXCEEDED);
    }
}
