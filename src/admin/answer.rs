//! The admin API's responses: JSON bodies, problem+json errors and plain text for the probes.

use http::Response;
use serde_json::{json, Value};

pub fn json(status: u16, body: &Value) -> Response<Vec<u8>> {
    respond(status, "application/json", body.to_string().into_bytes())
}

/// An RFC 9457 problem, like every error tollgate writes.
pub fn problem(status: u16, title: &str, detail: &str) -> Response<Vec<u8>> {
    let body = json!({ "type": "about:blank", "title": title, "status": status, "detail": detail });
    respond(
        status,
        "application/problem+json",
        body.to_string().into_bytes(),
    )
}

pub fn text(status: u16, body: String) -> Response<Vec<u8>> {
    respond(status, "text/plain; charset=utf-8", body.into_bytes())
}

pub fn no_content() -> Response<Vec<u8>> {
    respond(204, "text/plain; charset=utf-8", Vec::new())
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut b = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-store");
    if status != 204 {
        b = b.header(http::header::CONTENT_LENGTH, body.len());
    }
    b.body(body).unwrap_or_default()
}
