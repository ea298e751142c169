//! Answers tollgate writes itself, as RFC 9457 `application/problem+json`.
//!
//! Every answer carries `Content-Length`, so the client connection stays open after it (a 429
//! must not cost the client its connection), and `X-Request-Id`.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Value};

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

    pub fn body(&self) -> Bytes {
        let mut body = json!({
            "type": self.kind.unwrap_or("about:blank"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        if let Some(map) = body.as_object_mut() {
            for (k, v) in &self.extra {
                map.insert((*k).to_string(), v.clone());
            }
        }
        Bytes::from(body.to_string())
    }

    pub fn header(&self) -> Result<ResponseHeader> {
        let body_len = self.body().len();
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
        let header = self.header()?;
        let body = self.body();
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

pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";
