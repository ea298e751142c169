//! The RFC 9112 checks that Pingora leaves to the application, made before anything else
//! looks at a request: an HTTP/1.1 request needs `Host` (§3.2), and a request target holds no
//! whitespace or control character (§3.2), also when Pingora repaired one by percent-encoding
//! it (see `listener::request_line`). Such a request gets 400, never a rewrite.

use http::header::HOST;
use http::Version;
use pingora::proxy::Session;

use crate::listener::GuardedStream;

/// Why `session`'s request must be refused, if it must.
pub fn violation(session: &Session) -> Option<&'static str> {
    let req = session.req_header();
    if req.version == Version::HTTP_11 && !req.headers.contains_key(HOST) {
        return Some("an HTTP/1.1 request needs a Host header");
    }
    let target = req.raw_path();
    let bad_target = "the request target holds whitespace or a control character";
    if target.iter().any(|b| *b <= b' ' || *b == 0x7f) {
        return Some(bad_target);
    }
    let method = req.method.as_str().as_bytes();
    if GuardedStream::of(session.stream()).is_some_and(|g| g.target_was_repaired(method, target)) {
        return Some(bad_target);
    }
    None
}
