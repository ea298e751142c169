//! HTTP/1.1 conformance over real sockets: pipelining, `Host`, request targets, problem+json
//! on every 4xx tollgate writes (Pingora's protocol-level ones included), and bodies drained
//! before a refusal so that the connection survives it.
pub mod common;

use std::time::{Duration, Instant};

use common::*;

const KEY: &str = "free-demo-key";

fn start() -> (Echo, Tollgate) {
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    (echo, tg)
}

fn assert_problem(r: &Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{r:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {r:?}"));
    assert_eq!(v["status"], status, "{v}");
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    v
}

fn get(path: &str, key: Option<&str>) -> String {
    let key = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{key}\r\n")
}

fn echo_path(r: &Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("echo JSON");
    v["path"].as_str().unwrap_or_default().to_string()
}

#[test]
fn pipelined_requests_are_answered_in_order_and_each_is_limited() {
    let (_echo, tg) = start();
    let mut c = Conn::open(tg.port);
    // Seven anonymous requests in one write; the anonymous tier allows 5 per minute.
    let all: String = (0..7).map(|i| get(&format!("/proxy/p{i}"), None)).collect();
    c.send(all.as_bytes());
    for i in 0..7 {
        let r = c
            .response()
            .unwrap_or_else(|| panic!("no answer to request {i}"));
        if i < 5 {
            assert_eq!(r.status, 200, "request {i}: {r:?}");
            assert_eq!(echo_path(&r), format!("/p{i}"));
        } else {
            let v = assert_problem(&r, 429);
            assert_eq!(v["violated-policies"][0], "per_minute", "{v}");
        }
    }
    // Still open: a key's request on the same connection goes through.
    c.send(get("/proxy/after", Some(KEY)).as_bytes());
    let r = c.response().expect("answer after the pipeline");
    assert_eq!((r.status, echo_path(&r)), (200, "/after".to_string()));
}

#[test]
fn a_pipelined_body_never_becomes_a_request() {
    let (_echo, tg) = start();
    let mut c = Conn::open(tg.port);
    let smuggled = "GET /proxy/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let post = format!(
        "POST /proxy/upload HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    c.send(format!("{post}{}", get("/proxy/next", Some(KEY))).as_bytes());
    let first = c.response().expect("answer to the POST");
    assert_eq!(first.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(v["path"], "/upload");
    assert_eq!(v["body_len"], smuggled.len());
    let second = c.response().expect("answer to the next request");
    assert_eq!(echo_path(&second), "/next");
    // Nothing else: the body's text was not answered as a request.
    c.send(get("/proxy/last", Some(KEY)).as_bytes());
    assert_eq!(echo_path(&c.response().expect("last")), "/last");
}

#[test]
fn http11_without_host_is_400_and_http10_without_host_is_served() {
    let (_echo, tg) = start();
    let r = raw_request(
        tg.port,
        format!("GET /proxy/x HTTP/1.1\r\nx-api-key: {KEY}\r\n\r\n").as_bytes(),
    )
    .expect("answer");
    let v = assert_problem(&r, 400);
    assert!(
        v["detail"].as_str().unwrap_or_default().contains("Host"),
        "{v}"
    );
    let r = raw_request(
        tg.port,
        format!("GET /proxy/x HTTP/1.0\r\nx-api-key: {KEY}\r\n\r\n").as_bytes(),
    )
    .expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn whitespace_or_control_characters_in_the_target_are_400_never_forwarded() {
    let (_echo, tg) = start();
    for target in ["/proxy/a b", "/proxy/\x01x", "/proxy/a\tb", "/proxy/\x7f"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n\r\n");
        let r = raw_request(tg.port, req.as_bytes()).expect("answer");
        let v = assert_problem(&r, 400);
        assert!(
            v["detail"].as_str().unwrap_or_default().contains("target"),
            "{target:?}: {v}"
        );
    }
    // The same path percent-encoded by the client is fine, also pipelined after a repaired one.
    let mut c = Conn::open(tg.port);
    c.send(
        format!(
            "GET /proxy/a b HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: keep-alive\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_problem(&c.response().expect("400"), 400);
    let r = raw_request(
        tg.port,
        format!(
            "GET /proxy/a%20b HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("answer");
    assert_eq!((r.status, echo_path(&r)), (200, "/a%20b".to_string()));

    // An uploaded access log quotes request lines with spaces; later requests on the same
    // connection with percent-encoded targets are still served.
    let log: String = (0..40)
        .map(|i| format!("10.0.0.{i} - - [01/Dec/2026] \"GET /a b{i} HTTP/1.1\" 200 5\n"))
        .collect();
    let mut c = Conn::open(tg.port);
    c.send(
        format!(
            "POST /proxy/logs HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nContent-Length: {}\r\n\r\n{log}",
            log.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.response().expect("upload").status, 200);
    c.send(get("/proxy/q%20x", Some(KEY)).as_bytes());
    let r = c.response().expect("answer");
    assert_eq!((r.status, echo_path(&r)), (200, "/q%20x".to_string()));
}

#[test]
fn pingoras_own_protocol_errors_carry_problem_json() {
    let (_echo, tg) = start();
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "bad header line",
            b"GET /proxy/x HTTP/1.1\r\nHost: x\r\nNo Colon\r\n\r\n",
            400,
        ),
        ("no version", b"GET /proxy/x\r\nHost: x\r\n\r\n", 400),
        ("nonsense request line", b"HELLO THERE\r\n\r\n", 400),
        (
            "too many parts",
            b"GET /proxy/x HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "bad version",
            b"GET /proxy/x HTTP/9.9\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "bad content-length",
            b"POST /proxy/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            400,
        ),
        (
            "CONNECT",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            405,
        ),
    ];
    for (what, bytes, status) in cases {
        let r = raw_request(tg.port, bytes).unwrap_or_else(|| panic!("{what}: no answer"));
        eprintln!("{what}: {}", r.status);
        assert_problem(&r, *status);
        assert_eq!(r.header("connection"), Some("close"), "{what}");
    }
    assert!(
        tg.metric("tollgate_requests_total{code=\"400\",route=\"unmatched\",tier=\"none\"}") >= 3.0,
        "{}",
        tg.metrics()
    );
    // The same after a good request on a kept-alive connection.
    let mut c = Conn::open(tg.port);
    c.send(get("/proxy/ok", Some(KEY)).as_bytes());
    assert_eq!(c.response().expect("200").status, 200);
    c.send(b"GET /proxy/x HTTP/1.1\r\nHost: x\r\nNo Colon\r\n\r\n");
    assert_problem(&c.response().expect("400"), 400);
    // An upstream's own empty 400 passes through untouched (only Pingora's are rewritten).
    let r = raw_request(
        tg.port,
        format!("GET /proxy/x?status=400&bytes=0 HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("answer");
    assert_eq!(r.status, 400);
    assert_ne!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{r:?}"
    );
}

fn refused_post(key: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    let mut req =
        format!("POST /proxy/up HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n").into_bytes();
    if chunked {
        req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for part in body.chunks(7000) {
            req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            req.extend_from_slice(part);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
    } else {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
    }
    req
}

#[test]
fn a_refused_request_with_a_small_body_keeps_the_connection() {
    let (_echo, tg) = start();
    let body = vec![b'z'; 64 * 1024];
    for chunked in [false, true] {
        let mut c = Conn::open(tg.port);
        // 401: unknown key, with a body the client sends right behind the head.
        c.send(&refused_post("no-such-key", &body, chunked));
        assert_problem(&c.response().expect("401"), 401);
        c.send(get("/proxy/after-401", Some(KEY)).as_bytes());
        let r = c.response().expect("answer after the 401");
        assert_eq!(
            (r.status, echo_path(&r)),
            (200, "/after-401".to_string()),
            "chunked={chunked}"
        );
    }
    // 429: exhaust the anonymous tier, then refused uploads keep the connection.
    let mut c = Conn::open(tg.port);
    for _ in 0..5 {
        c.send(get("/proxy/spend", None).as_bytes());
        assert_eq!(c.response().expect("200").status, 200);
    }
    let mut anon = refused_post("", &body[..1000], false);
    anon = String::from_utf8(anon)
        .expect("ascii")
        .replace("x-api-key: \r\n", "")
        .into_bytes();
    c.send(&anon);
    assert_problem(&c.response().expect("429"), 429);
    c.send(get("/proxy/after-429", Some(KEY)).as_bytes());
    assert_eq!(echo_path(&c.response().expect("after 429")), "/after-429");
}

#[test]
fn a_refused_request_with_a_large_body_may_close_the_connection() {
    let (_echo, tg) = start();
    let body = vec![b'z'; 64 * 1024 + 1];
    for chunked in [false, true] {
        let mut c = Conn::open(tg.port);
        let start = Instant::now();
        c.send(&refused_post("no-such-key", &body, chunked));
        let r = c.response().expect("401");
        assert_problem(&r, 401);
        assert_eq!(r.header("connection"), Some("close"), "chunked={chunked}");
        assert!(
            c.closed_within(Duration::from_secs(10)),
            "chunked={chunked}"
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn a_503_from_a_closed_store_keeps_the_connection_too() {
    let echo = Echo::start();
    // A Redis URL nothing listens on, and fail_closed: every limited request is a 503.
    let dead = format!("redis://127.0.0.1:{}/0", free_port());
    let yaml = standard(Some(&dead), &echo.addr()).with_redis(|r| r.on_error("fail_closed"));
    let tg = Tollgate::start(&yaml.to_yaml());
    let mut c = Conn::open(tg.port);
    let body = vec![b'y'; 32 * 1024];
    c.send(&refused_post(KEY, &body, false));
    let r = c.response().expect("503");
    assert_problem(&r, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    // The internal tier is never limited: no store call, so it is served on the same connection.
    c.send(get("/proxy/after-503", Some("internal-demo-key")).as_bytes());
    let r = c.response().expect("answer after the 503");
    assert_eq!((r.status, echo_path(&r)), (200, "/after-503".to_string()));
}
