//! tollgate's own refusals as gRPC answers.
//!
//! A gRPC client cannot read an HTTP error status, so a gRPC request over HTTP/2 gets the same
//! answer as a trailers-only response instead: HTTP 200 and `grpc-status` / `grpc-message` in
//! one HEADERS frame that ends the stream, with the same extra headers (RateLimit,
//! Retry-After, X-Request-Id).

use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use pingora::Result;

use super::responses::Problem;

/// A gRPC call: HTTP/2 with `application/grpc` or `application/grpc+<codec>` (not grpc-web,
/// whose clients read HTTP statuses).
pub fn is_grpc(session: &Session) -> bool {
    session.is_http2()
        && session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| is_grpc_content_type(v.as_bytes()))
}

fn is_grpc_content_type(v: &[u8]) -> bool {
    const BASE: &[u8] = b"application/grpc";
    let Some(head) = v.get(..BASE.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(BASE) && matches!(v.get(BASE.len()), None | Some(b'+') | Some(b';'))
}

/// The trailers-only form of `problem`.
pub fn header(problem: &Problem<'_>) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(5 + problem.headers.len()))?;
    resp.insert_header("Content-Type", "application/grpc")?;
    resp.insert_header("grpc-status", status(problem.status))?;
    resp.insert_header("grpc-message", message(&problem.detail))?;
    if let Some(id) = problem.request_id {
        resp.insert_header("X-Request-Id", id.clone())?;
    }
    for (k, v) in &problem.headers {
        resp.insert_header(*k, v.clone())?;
    }
    Ok(resp)
}

/// Writes `problem` as a trailers-only answer that ends the stream.
pub async fn send(problem: &Problem<'_>, session: &mut Session) -> Result<bool> {
    let header = header(problem)?;
    // `Session::write_response_header` would leave the stream open (Pingora drops its
    // end-of-stream flag); the task form ends it with the HEADERS frame.
    let tasks = vec![HttpTask::Header(Box::new(header), true)];
    session
        .downstream_session
        .response_duplex_vec(tasks)
        .await?;
    Ok(true)
}

/// The gRPC status code for an HTTP status tollgate answers with: the contract's mapping
/// (limited 8, unauthenticated 16, store down 14, no route 12), and gRPC's own
/// HTTP-to-gRPC table (doc/http-grpc-status-mapping.md) for the rest.
pub fn status(http_status: u16) -> u32 {
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
fn message(detail: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(status(429), 8);
        assert_eq!(status(401), 16);
        assert_eq!(status(503), 14);
        assert_eq!(status(404), 12);
        assert_eq!(message("50% of\n"), "50%25 of%0A");
    }

    #[test]
    fn content_types_of_grpc_but_not_grpc_web() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"Application/GRPC;charset=utf-8"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/grpcx"));
        assert!(!is_grpc_content_type(b"application/json"));
    }
}
