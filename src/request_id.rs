//! Request tracing: `X-Request-Id` and W3C `traceparent`.
//!
//! A client's request id is kept when it is sane (1 to 128 visible ASCII characters), so ids
//! join up across hops; anything else is replaced, so a hostile id cannot inject into logs.

use http::{HeaderMap, HeaderValue};

const MAX_ID_LEN: usize = 128;

/// The client's id if sane, else a new UUID v4.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= MAX_ID_LEN && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The client's `traceparent` when valid, else a new sampled trace.
pub fn traceparent(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("traceparent") {
        if v.to_str().is_ok_and(valid_traceparent) {
            return v.clone();
        }
    }
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    let s = format!("00-{trace:032x}-{span:016x}-01");
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `00-<32 hex, not all zero>-<16 hex, not all zero>-<2 hex>` (W3C Trace Context, version 00).
fn valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|c| c != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|c| c != b'0')
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id_and_replaces_a_bad_one() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(request_id(&h).len(), 36);
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(200)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn traceparent_passes_valid_and_starts_new() {
        let mut h = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(tp));
        assert_eq!(traceparent(&h), tp);
        h.insert("traceparent", HeaderValue::from_static("00-zz-00-01"));
        let new = traceparent(&h);
        assert!(valid_traceparent(new.to_str().unwrap()));
    }
}
