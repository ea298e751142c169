//! Answers tollgate writes itself, as RFC 9457 `application/problem+json`.
//!
//! Every answer carries `Content-Length`, so the client connection stays open after it (a 429
//! must not cost the client its connection), and `X-Request-Id`.
//!
//! A gRPC client cannot read an HTTP error status, so a gRPC request over HTTP/2 gets the same
//! answer as a trailers-only response instead: HTTP 200 and `grpc-status` / `grpc-message` in
//! one HEADERS frame that ends the stream, with the same extra headers ([`grpc_status`]).

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::Value;

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

    /// The trailers-only gRPC form of this answer.
    pub fn grpc_header(&self) -> Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(200, Some(5 + self.headers.len()))?;
        resp.insert_header("Content-Type", "application/grpc")?;
        resp.insert_header("grpc-status", grpc_status(self.status))?;
        resp.insert_header("grpc-message", grpc_message(&self.detail))?;
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
        if is_grpc(session) {
            let header = self.grpc_header()?;
            // `Session::write_response_header` would leave the stream open (Pingora drops its
            // end-of-stream flag); the task form ends it with the HEADERS frame.
            let tasks = vec![HttpTask::Header(Box::new(header), true)];
            session
                .downstream_session
                .response_duplex_vec(tasks)
                .await?;
            return Ok(true);
        }
        let body = self.body();
        let header = self.header(body.len())?;
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(header), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }
}

/// A gRPC call: HTTP/2 with `application/grpc` or `application/grpc+<codec>` (not grpc-web,
/// whose clients read HTTP statuses).
pub fn is_grpc(session: &Session) -> bool {
    session.is_http2()
        && session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                let v = v.as_bytes();
                v.eq_ignore_ascii_case(b"application/grpc")
                    || (v.len() > 17 && v[..17].eq_ignore_ascii_case(b"application/grpc+"))
                    || (v.len() > 17 && v[..17].eq_ignore_ascii_case(b"application/grpc;"))
            })
}

/// The gRPC status code for an HTTP status tollgate answers with: the contract's mapping
/// (limited 8, unauthenticated 16, store down 14, no route 12), and gRPC's own
/// HTTP-to-gRPC table (doc/http-grpc-status-mapping.md) for the rest.
pub fn grpc_status(http_status: u16) -> u32 {
    match http_status {
        429 | 431 => 8,  // RESOURCE_EXHAUSTED
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 12,       // UNIMPLEMENTED
        400 => 13,       // INTERNAL
        502..=504 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself.
fn grpc_message(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    for b in detail.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn grpc_statuses_follow_the_contract() {
        assert_eq!(grpc_status(429), 8);
        assert_eq!(grpc_status(401), 16);
        assert_eq!(grpc_status(503), 14);
        assert_eq!(grpc_status(404), 12);
        assert_eq!(grpc_message("50% of\n"), "50%25 of%0A");
    }

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
