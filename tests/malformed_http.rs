//! Malformed HTTP from a client gets a 4xx (or the connection closed) and never a 5xx, and the
//! process keeps serving afterwards.
pub mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "internal-demo-key";

/// Sends `bytes` and checks the outcome: a 4xx, or the connection closed without an answer.
/// Never a 5xx, never a 2xx (nothing malformed may reach the upstream as if it were fine).
fn rejected(tg: &Tollgate, what: &str, bytes: &[u8]) -> Option<u16> {
    let out = raw_exchange(tg.port, bytes, Duration::from_secs(5)).expect("connect");
    let status = parse_response(&out).map(|r| r.status);
    eprintln!(
        "{what}: {} -> {}",
        bytes.len(),
        match status {
            Some(s) => format!("status {s}"),
            None if out.is_empty() => "closed without an answer".to_string(),
            None => format!("non-HTTP answer {:?}", String::from_utf8_lossy(&out)),
        }
    );
    match status {
        Some(s) => assert!((400..500).contains(&s), "{what}: answered {s}"),
        None => assert!(out.is_empty(), "{what}: answered garbage"),
    }
    status
}

/// The process is alive and a valid request still succeeds, on a fresh connection.
fn still_serving(tg: &mut Tollgate, after: &str) {
    assert!(tg.is_alive(), "tollgate died after {after}");
    let r = raw_request(
        tg.port,
        format!(
            "GET /proxy/ok HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap_or_else(|| panic!("no answer after {after}"));
    assert_eq!(r.status, 200, "after {after}");
    let r = client()
        .get(tg.url("/proxy/ok2"))
        .header("x-api-key", KEY)
        .send()
        .expect("request");
    assert_eq!(r.status(), 200, "after {after}");
}

fn start() -> (Echo, Tollgate) {
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    (echo, tg)
}

#[test]
fn malformed_request_lines() {
    let (_echo, mut tg) = start();
    let cases: &[(&str, &[u8])] = &[
        ("no version", b"GET /proxy/x\r\nHost: x\r\n\r\n"),
        ("nonsense line", b"HELLO THERE\r\n\r\n"),
        (
            "too many parts",
            b"GET /proxy/x HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        ),
        ("bad version", b"GET /proxy/x HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("empty method", b" /proxy/x HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (what, bytes) in cases {
        rejected(&tg, what, bytes);
        still_serving(&mut tg, what);
    }
}

#[test]
fn illegal_characters_in_the_target_are_rejected_never_repaired() {
    // Pingora percent-encodes a space, a control character, '<', '>' and '"' in the request
    // target and would forward the result; RFC 9112 §3.2 says such a request line must not be
    // autocorrected. tollgate answers 400 with a problem+json body instead.
    let (_echo, mut tg) = start();
    let cases: &[(&str, &str)] = &[
        ("space in path", "/proxy/a b"),
        ("control char in path", "/proxy/\x01x"),
        ("angle brackets and quote", "/proxy/<x>\""),
    ];
    for (what, target) in cases {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n"
        );
        let out = raw_exchange(tg.port, req.as_bytes(), Duration::from_secs(5)).expect("connect");
        let r = parse_response(&out).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        still_serving(&mut tg, what);
    }
}

#[test]
fn malformed_headers() {
    let (_echo, mut tg) = start();
    let cases: &[(&str, &[u8])] = &[
        (
            "header without a colon",
            b"GET /proxy/x HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
        ),
        (
            "space before colon",
            b"GET /proxy/x HTTP/1.1\r\nHost: x\r\nX-Bad : 1\r\n\r\n",
        ),
        (
            "non-numeric content-length",
            b"POST /proxy/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello",
        ),
        (
            "conflicting content-lengths",
            b"POST /proxy/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "bad chunk size",
            b"POST /proxy/x HTTP/1.1\r\nHost: x\r\nx-api-key: internal-demo-key\r\n\
              Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (what, bytes) in cases {
        rejected(&tg, what, bytes);
        still_serving(&mut tg, what);
    }
}

#[test]
fn one_64_kb_header() {
    let (_echo, mut tg) = start();
    // A large but ordinary head (big cookies, a JWT) still passes.
    let r = raw_request(
        tg.port,
        format!(
            "GET /proxy/x HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nCookie: {}\r\n\
             Connection: close\r\n\r\n",
            "c".repeat(16 * 1024)
        )
        .as_bytes(),
    )
    .expect("an answer");
    assert_eq!(r.status, 200);

    let big = "a".repeat(64 * 1024);
    let one = format!(
        "GET /proxy/x HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    );
    rejected(&tg, "one 64 KB header", one.as_bytes());
    still_serving(&mut tg, "one 64 KB header");
}

#[test]
fn too_many_headers() {
    let (_echo, mut tg) = start();
    let many: String = (0..2048)
        .map(|i| format!("X-Many-{i}: {}\r\n", "b".repeat(40)))
        .collect();
    let many = format!(
        "GET /proxy/x HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n{many}Connection: close\r\n\r\n"
    );
    rejected(&tg, "2048 headers (~100 KB)", many.as_bytes());
    still_serving(&mut tg, "2048 headers");
}

#[test]
fn garbage_bytes() {
    let (_echo, mut tg) = start();
    // A fixed pseudo-random sequence (xorshift), so a failure can be replayed.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = Vec::with_capacity(8192);
    for _ in 0..8192 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push((x >> 24) as u8);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", noise.clone()),
        ("NUL bytes", vec![0u8; 1024]),
        (
            "a TLS ClientHello on the plain port",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x00, 0x01, 0x02,
                0x03,
            ],
        ),
        (
            "an HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("a valid line then noise", {
            let mut v = b"GET /proxy/x HTTP/1.1\r\n".to_vec();
            v.extend_from_slice(&noise[..2048]);
            v
        }),
    ];
    for (what, bytes) in &cases {
        rejected(&tg, what, bytes);
        still_serving(&mut tg, what);
    }
}

#[test]
fn keeps_serving_while_a_client_sends_nothing() {
    // A half-open client (connects, sends a partial head, stalls) must not block others.
    let (_echo, mut tg) = start();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tg.port)).expect("connect");
        use std::io::Write;
        let _ = s.write_all(b"GET /proxy/x HTTP/1.1\r\nHost: x\r\n");
        stalled.push(s);
    }
    still_serving(&mut tg, "20 stalled clients");
    drop(stalled);
    still_serving(&mut tg, "20 stalled clients hung up");
}
