//! Request tracing: `X-Request-Id` and W3C `traceparent`.
//!
//! A client's request id is kept when it is sane (1 to 128 visible ASCII characters), so ids
//! join up across hops; anything else is replaced, so a hostile id cannot inject into logs.
//! New ids come from a per-thread generator (wyrand, seeded from the OS) and are formatted on
//! the stack: ids must be unique, not secret, and this costs a few nanoseconds instead of a
//! ChaCha block and a `format!`.

use std::cell::Cell;

use http::{HeaderMap, HeaderValue};

const MAX_ID_LEN: usize = 128;
const HEX: &[u8; 16] = b"0123456789abcdef";

thread_local! {
    static RNG: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

/// 64 random bits (wyrand: passes BigCrush; plenty for ids).
fn next_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    })
}

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The client's id if sane, else a new UUID v4.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= MAX_ID_LEN && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    new_uuid()
}

/// A UUID v4 (RFC 9562: version nibble 4, variant bits 10), lower-case and hyphenated.
fn new_uuid() -> HeaderValue {
    let (hi, lo) = (next_u64(), next_u64());
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & !(0xc << 60)) | (0x8 << 60);
    let mut b = *b"00000000-0000-0000-0000-000000000000";
    put_hex(&mut b[0..8], hi >> 32);
    put_hex(&mut b[9..13], (hi >> 16) & 0xffff);
    put_hex(&mut b[14..18], hi & 0xffff);
    put_hex(&mut b[19..23], lo >> 48);
    put_hex(&mut b[24..36], lo & 0xffff_ffff_ffff);
    HeaderValue::from_bytes(&b).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The client's `traceparent` when valid, else a new sampled trace.
pub fn traceparent(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("traceparent") {
        if valid_traceparent(v.as_bytes()) {
            return v.clone();
        }
    }
    let mut b = *b"00-00000000000000000000000000000000-0000000000000000-01";
    // `| 1`: an all-zero trace or span id is invalid.
    put_hex(&mut b[3..19], next_u64());
    put_hex(&mut b[19..35], next_u64() | 1);
    put_hex(&mut b[36..52], next_u64() | 1);
    HeaderValue::from_bytes(&b).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `00-<32 hex, not all zero>-<16 hex, not all zero>-<2 hex>` (W3C Trace Context, version 00),
/// surrounding whitespace allowed.
fn valid_traceparent(s: &[u8]) -> bool {
    let s = s.trim_ascii();
    let hex = |p: &[u8]| {
        p.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let nonzero = |p: &[u8]| p.iter().any(|c| *c != b'0');
    s.len() == 55
        && s[2] == b'-'
        && s[35] == b'-'
        && s[52] == b'-'
        && hex(&s[0..2])
        && &s[0..2] != b"ff"
        && hex(&s[3..35])
        && nonzero(&s[3..35])
        && hex(&s[36..52])
        && nonzero(&s[36..52])
        && hex(&s[53..55])
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
    fn new_ids_are_uuid_v4_and_distinct() {
        let a = new_uuid();
        let b = new_uuid();
        assert_ne!(a, b);
        let u = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn traceparent_passes_valid_and_starts_new() {
        let mut h = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(tp));
        assert_eq!(traceparent(&h), tp);
        for bad in [
            "00-zz-00-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            h.insert("traceparent", HeaderValue::from_static(bad));
            let new = traceparent(&h);
            assert_ne!(new, bad);
            assert!(valid_traceparent(new.as_bytes()), "{new:?}");
        }
    }
}
