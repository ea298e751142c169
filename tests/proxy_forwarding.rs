//! The proxy's forwarding contract over real sockets: what reaches the upstream, what comes back,
//! streaming without buffering, upstream failures, routing and round robin with health checks.
//!
//! Every test owns its tollgate and echo processes and runs with the in-memory store.
pub mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The key of tier `internal`: identified, never limited.
const KEY: &str = "internal-demo-key";

fn json(r: reqwest::blocking::Response) -> Value {
    let text = r.text().expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts `r` is a problem+json answer with `status`, and returns its body.
fn problem(r: reqwest::blocking::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(ct, "application/problem+json");
    assert!(r.headers().contains_key("x-request-id"));
    let body = json(r);
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert!(body["type"].is_string(), "{body}");
    body
}

// ---------------------------------------------------------------------------------------------
// Methods, paths, queries, bodies

#[test]
fn methods_paths_queries_and_bodies_reach_the_upstream() {
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    let c = client();

    // GET, with strip_prefix and an encoded query kept byte for byte.
    let r = c
        .get(tg.url("/proxy/a/b?x=1&y=a%20b&z"))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = json(r);
    assert_eq!(b["method"], "GET");
    assert_eq!(b["path"], "/a/b");
    assert_eq!(b["query"], "x=1&y=a%20b&z");
    assert_eq!(b["body_len"], 0);

    // A route without strip_prefix forwards the path whole.
    let b = json(
        c.get(tg.url("/api/v1/items?page=2"))
            .header("x-api-key", KEY)
            .send()
            .unwrap(),
    );
    assert_eq!(b["path"], "/api/v1/items");
    assert_eq!(b["query"], "page=2");

    // POST with a 5 MB body.
    let five_mb = vec![b'p'; 5 * 1024 * 1024];
    let r = c
        .post(tg.url("/proxy/upload?kind=big"))
        .header("x-api-key", KEY)
        .header("content-type", "application/octet-stream")
        .body(five_mb)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = json(r);
    assert_eq!(b["method"], "POST");
    assert_eq!(b["path"], "/upload");
    assert_eq!(b["query"], "kind=big");
    assert_eq!(b["body_len"], 5 * 1024 * 1024);
    assert_eq!(b["headers"]["content-type"], "application/octet-stream");

    for (method, len) in [
        (reqwest::Method::PUT, 1234usize),
        (reqwest::Method::PATCH, 77),
        (reqwest::Method::DELETE, 0),
    ] {
        let r = c
            .request(method.clone(), tg.url("/proxy/things/42?v=3"))
            .header("x-api-key", KEY)
            .body(vec![b'q'; len])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        let b = json(r);
        assert_eq!(b["method"], method.as_str());
        assert_eq!(b["path"], "/things/42", "{method}");
        assert_eq!(b["query"], "v=3", "{method}");
        assert_eq!(b["body_len"], len, "{method}");
    }

    // HEAD: no body to echo in, so the echo names the method in a header.
    let r = c
        .head(tg.url("/proxy/things/42?v=3"))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-echo-method"], "HEAD");
    assert_eq!(r.headers()["x-echo-custom"], "kept");
    assert!(r.bytes().unwrap().is_empty());
}

#[test]
fn upstream_status_headers_and_body_come_back_unchanged() {
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    let c = client();
    for status in [200u16, 201, 404, 500] {
        let r = c
            .get(tg.url(&format!("/proxy/s?status={status}")))
            .header("x-api-key", KEY)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let h = r.headers().clone();
        assert_eq!(h["x-echo-custom"], "kept", "{status}");
        assert_eq!(h["x-echo-server"], "tollgate-echo", "{status}");
        assert_eq!(h["content-type"], "application/json", "{status}");
        assert!(h.contains_key("x-request-id"), "{status}");
        // The upstream's own body, not a problem document.
        let b = json(r);
        assert_eq!(b["path"], "/s", "{status}");
        assert_eq!(b["query"], format!("status={status}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Headers the upstream sees

/// The harness config plus a `/keep/` route with `preserve_host` and a `/named/` route to an
/// upstream with an explicit `host:`.
fn header_config(echo: &str) -> String {
    standard(None, echo)
        .upstream(Upstream::new("named", &[echo]).host("api.example.com"))
        .route(Route::new("/keep/", "echo").strip_prefix().preserve_host())
        .route(Route::new("/named/", "named").strip_prefix())
        .to_yaml()
}

/// The headers the echo received for a raw request (sent verbatim), and the response.
fn upstream_headers(port: u16, request: &str) -> (Response, serde_json::Map<String, Value>) {
    let r = raw_request(port, request.as_bytes()).expect("a response");
    assert_eq!(r.status, 200, "{r:?}");
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)));
    let headers = body["headers"].as_object().expect("headers").clone();
    (r, headers)
}

#[test]
fn upstream_sees_rewritten_forwarding_and_identity_headers() {
    let echo = Echo::start();
    let tg = Tollgate::start(&header_config(&echo.addr()));

    let request = format!(
        "GET /proxy/h?q=1 HTTP/1.1\r\n\
         Host: client.example:8443\r\n\
         Connection: close, X-Custom-Hop\r\n\
         X-Custom-Hop: must-go\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: trailers\r\n\
         Trailer: X-Checksum\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         Proxy-Connection: keep-alive\r\n\
         X-Api-Key: {KEY}\r\n\
         X-Forwarded-For: 203.0.113.7\r\n\
         X-Request-Id: client-req-0001\r\n\
         X-Tollgate-Key-Id: admin\r\n\
         X-Tollgate-Tier: gold\r\n\
         X-Forwarded-Proto: https\r\n\
         X-Forwarded-Host: spoofed.example\r\n\
         X-End-To-End: kept\r\n\
         Accept: application/json\r\n\
         \r\n"
    );
    let (resp, h) = upstream_headers(tg.port, &request);
    eprintln!("upstream saw: {h:#?}");

    // Host: the first peer's host:port by default; the client's Host moves to X-Forwarded-Host.
    assert_eq!(h["host"], echo.addr());
    assert_eq!(h["x-forwarded-host"], "client.example:8443");
    // Client-sent X-Forwarded-Proto and X-Forwarded-Host are replaced, not passed on.
    assert_eq!(h["x-forwarded-proto"], "http");
    // Appended to the client's own X-Forwarded-For (the client is not a trusted proxy, but its
    // value is kept for the upstream to judge).
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    // A sane client request id is kept, both ways.
    assert_eq!(h["x-request-id"], "client-req-0001");
    assert_eq!(resp.header("x-request-id"), Some("client-req-0001"));
    // Identity from tollgate, never from the client.
    assert_eq!(h["x-tollgate-key-id"], "carol");
    assert_eq!(h["x-tollgate-tier"], "internal");
    // End-to-end headers pass.
    assert_eq!(h["x-end-to-end"], "kept");
    assert_eq!(h["accept"], "application/json");
    // Hop-by-hop headers, the ones Connection names, and the API key do not.
    for gone in [
        "x-custom-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "x-api-key",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    if let Some(conn) = h.get("connection").and_then(|v| v.as_str()) {
        assert!(
            !conn.to_ascii_lowercase().contains("x-custom-hop"),
            "{conn}"
        );
    }
    let all = serde_json::to_string(&h).unwrap();
    assert!(
        !all.contains(KEY),
        "the API key reached the upstream: {all}"
    );
}

#[test]
fn identity_headers_of_a_free_key_and_of_an_anonymous_client() {
    let echo = Echo::start();
    let tg = Tollgate::start(&header_config(&echo.addr()));

    // A free key: the spoofed identity headers are replaced.
    let (_, h) = upstream_headers(
        tg.port,
        "GET /proxy/id HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\
         x-api-key: free-demo-key\r\nX-Tollgate-Key-Id: carol\r\nX-Tollgate-Tier: internal\r\n\r\n",
    );
    assert_eq!(h["x-tollgate-key-id"], "alice");
    assert_eq!(h["x-tollgate-tier"], "free");
    assert!(!h.contains_key("x-api-key"));

    // No key: the tier is `anonymous`, and a spoofed key id is removed, not passed on.
    let (resp, h) = upstream_headers(
        tg.port,
        "GET /proxy/id HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\
         X-Tollgate-Key-Id: carol\r\nX-Tollgate-Tier: internal\r\n\r\n",
    );
    assert!(!h.contains_key("x-tollgate-key-id"), "{h:?}");
    assert_eq!(h["x-tollgate-tier"], "anonymous");
    // No client X-Forwarded-For: just the client address. No client id: a new one, the same
    // on both sides.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    let id = resp
        .header("x-request-id")
        .expect("x-request-id")
        .to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(h["x-request-id"], id.as_str());

    // An insane client request id (too long) is replaced.
    let long = "r".repeat(200);
    let (resp, h) = upstream_headers(
        tg.port,
        &format!(
            "GET /proxy/id HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\
             x-api-key: {KEY}\r\nX-Request-Id: {long}\r\n\r\n"
        ),
    );
    let id = resp.header("x-request-id").unwrap();
    assert_ne!(id, long);
    assert_eq!(h["x-request-id"], id);
}

#[test]
fn host_header_follows_upstream_host_or_preserve_host() {
    let echo = Echo::start();
    let tg = Tollgate::start(&header_config(&echo.addr()));

    let req = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: client.example\r\nConnection: close\r\n\
             x-api-key: {KEY}\r\n\r\n"
        )
    };
    // An explicit `host:` on the upstream.
    let (_, h) = upstream_headers(tg.port, &req("/named/x"));
    assert_eq!(h["host"], "api.example.com");
    assert_eq!(h["x-forwarded-host"], "client.example");
    // `preserve_host: true` keeps the client's.
    let (_, h) = upstream_headers(tg.port, &req("/keep/x"));
    assert_eq!(h["host"], "client.example");
    assert_eq!(h["x-forwarded-host"], "client.example");
    // The default: the first peer's host:port.
    let (_, h) = upstream_headers(tg.port, &req("/proxy/x"));
    assert_eq!(h["host"], echo.addr());

    // And through an ordinary client (reqwest sends Host itself).
    let b = json(
        client()
            .get(tg.url("/keep/y"))
            .header("x-api-key", KEY)
            .send()
            .unwrap(),
    );
    assert_eq!(b["headers"]["host"], format!("127.0.0.1:{}", tg.port));
}

// ---------------------------------------------------------------------------------------------
// Streaming: 50 MB each way without buffering

const FIFTY_MB: u64 = 50 * 1024 * 1024;

/// Samples the RSS of `pid` every 10 ms until dropped; `peak()` is the highest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = rss_bytes(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const MB: f64 = 1024.0 * 1024.0;

#[test]
fn fifty_megabytes_stream_both_ways_without_buffering() {
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    let pid = tg.pid();
    let c = client();

    // Warm up (worker threads, connection pools, allocator arenas) before the baseline.
    for _ in 0..20 {
        let r = c
            .post(tg.url("/proxy/warm"))
            .header("x-api-key", KEY)
            .body(vec![b'w'; 256 * 1024])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes();
    }
    let r = c
        .get(tg.url("/proxy/warm?bytes=1048576"))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().len(), 1 << 20);
    let baseline = rss_bytes(pid).expect("VmRSS");

    // Upload: 50 MB generated on the fly, streamed with a Content-Length.
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let body = reqwest::blocking::Body::sized(std::io::repeat(b'u').take(FIFTY_MB), FIFTY_MB);
    let r = client()
        .post(tg.url("/proxy/upload"))
        .timeout(Duration::from_secs(60))
        .header("x-api-key", KEY)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = json(r);
    let upload_took = started.elapsed();
    let after_upload = rss_bytes(pid).unwrap_or(0);
    let upload_peak = sampler.finish();
    assert_eq!(b["body_len"], FIFTY_MB);

    // Download: 50 MB from the upstream, read by a client a little slower than the upstream
    // writes, so that a proxy without backpressure would pile the body up in memory.
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let mut r = client()
        .get(tg.url(&format!("/proxy/download?bytes={FIFTY_MB}")))
        .timeout(Duration::from_secs(60))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(FIFTY_MB));
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut since_pause) = (0u64, 0u64);
    loop {
        let n = r.read(&mut buf).expect("download read");
        if n == 0 {
            break;
        }
        total += n as u64;
        since_pause += n as u64;
        if since_pause >= 2 * 1024 * 1024 {
            since_pause = 0;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let download_took = started.elapsed();
    let after_download = rss_bytes(pid).unwrap_or(0);
    let download_peak = sampler.finish();
    assert_eq!(total, FIFTY_MB);

    let up_growth = upload_peak.saturating_sub(baseline);
    let down_growth = download_peak.saturating_sub(baseline);
    eprintln!(
        "RSS baseline {:.1} MB; upload 50 MB in {:.2?}: peak {:.1} MB (+{:.1} MB), after {:.1} MB; \
         download 50 MB in {:.2?}: peak {:.1} MB (+{:.1} MB), after {:.1} MB",
        baseline as f64 / MB,
        upload_took,
        upload_peak as f64 / MB,
        up_growth as f64 / MB,
        after_upload as f64 / MB,
        download_took,
        download_peak as f64 / MB,
        down_growth as f64 / MB,
        after_download as f64 / MB,
    );
    let limit = 40 * 1024 * 1024;
    assert!(
        up_growth < limit,
        "upload grew RSS by {:.1} MB",
        up_growth as f64 / MB
    );
    assert!(
        down_growth < limit,
        "download grew RSS by {:.1} MB",
        down_growth as f64 / MB
    );
}

// ---------------------------------------------------------------------------------------------
// Upstream failures and routing

#[test]
fn dead_upstream_gives_502_problem() {
    // A port nothing listens on.
    let dead = format!("127.0.0.1:{}", free_port());
    let mut tg = Tollgate::start(&standard(None, &dead).to_yaml());
    let c = client();
    let started = Instant::now();
    let r = c
        .get(tg.url("/proxy/x"))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    let b = problem(r, 502);
    assert!(started.elapsed() < Duration::from_secs(5));
    eprintln!("{b}");
    // Once the health check has seen the peer down, still a 502 (no healthy peer).
    std::thread::sleep(Duration::from_millis(600));
    let b = problem(
        c.post(tg.url("/proxy/x"))
            .header("x-api-key", KEY)
            .body("some body")
            .send()
            .unwrap(),
        502,
    );
    eprintln!("{b}");
    assert!(tg.is_alive());
}

#[test]
fn slow_upstream_gives_504_problem() {
    let echo = Echo::start();
    let mut tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    let c = client();
    let started = Instant::now();
    let r = c
        .get(tg.url("/proxy/slow?delay_ms=6000"))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    let took = started.elapsed();
    let b = problem(r, 504);
    eprintln!("504 after {took:.2?}: {b}");
    // The upstream's read_timeout is 2 s; the echo would have answered at 6 s.
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_millis(5000), "{took:?}");
    // And the upstream is still usable afterwards.
    let r = c
        .get(tg.url("/proxy/fast"))
        .header("x-api-key", KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(tg.is_alive());
}

#[test]
fn no_route_gives_404_problem() {
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(None, &echo.addr()).to_yaml());
    let c = client();
    for path in ["/", "/nothing/here", "/prox", "/apis"] {
        let r = c.get(tg.url(path)).header("x-api-key", KEY).send().unwrap();
        let b = problem(r, 404);
        assert!(b.get("headers").is_none(), "{path} reached the echo");
    }
    // Without a key too (routing comes before identity).
    problem(c.get(tg.url("/nothing")).send().unwrap(), 404);
    // HEAD: the same status and headers, no body.
    let r = c.head(tg.url("/nothing")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.bytes().unwrap().is_empty());
    // And the connection-level answers keep working afterwards.
    assert_eq!(
        c.get(tg.url("/proxy/x"))
            .header("x-api-key", KEY)
            .send()
            .unwrap()
            .status(),
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Round robin and health checks

fn names(c: &reqwest::blocking::Client, tg: &Tollgate, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = c
                .get(tg.url(&format!("/proxy/rr?i={i}")))
                .header("x-api-key", KEY)
                .send()
                .unwrap();
            assert_eq!(r.status(), 200, "request {i}");
            r.headers()
                .get("x-echo-name")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn round_robin_spreads_and_skips_a_dead_peer() {
    let a = Echo::named("a");
    let mut b = Echo::named("b");
    let yaml = standard(None, &a.addr())
        .upstream(
            Upstream::new("echo", &[&a.addr(), &b.addr()])
                .health_interval("200ms")
                .read_timeout("2s"),
        )
        .to_yaml();
    assert!(yaml.contains(&b.addr()));
    let tg = Tollgate::start(&yaml);
    let c = client();

    let seen = names(&c, &tg, 20);
    let on_a = seen.iter().filter(|n| *n == "a").count();
    let on_b = seen.iter().filter(|n| *n == "b").count();
    eprintln!("before: a={on_a} b={on_b} {seen:?}");
    assert_eq!(on_a + on_b, 20, "{seen:?}");
    assert!(on_a >= 8 && on_b >= 8, "round robin is lopsided: {seen:?}");

    b.kill();
    // The health check runs every 200 ms; give it about a second. Every request succeeds via
    // `a` from then on; and once the check has seen `b` down, `b` is skipped, not tried first
    // and retried (a busy machine may delay the check: up to 5 s more).
    std::thread::sleep(Duration::from_millis(1000));
    let connect_errors = r#"tollgate_upstream_errors_total{kind="connect",upstream="echo"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let errors_before = tg.metric(connect_errors);
        let seen = names(&c, &tg, 20);
        assert!(seen.iter().all(|n| n == "a"), "{seen:?}");
        let tried_b = tg.metric(connect_errors) - errors_before;
        eprintln!("after: {seen:?}, connect attempts to b: {tried_b}");
        if tried_b == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests still went to the dead peer 6 s after it died"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_peer_that_dies_between_health_checks_costs_no_request() {
    // Health checks far apart: the dead peer is found by connecting to it, and the request
    // goes on to the other peer (nothing was sent yet, so any method may be retried).
    let a = Echo::named("a");
    let mut b = Echo::named("b");
    let yaml = standard(None, &a.addr())
        .upstream(
            Upstream::new("echo", &[&a.addr(), &b.addr()])
                .health_interval("60s")
                .read_timeout("2s"),
        )
        .to_yaml();
    assert!(yaml.contains("interval: 60s"));
    let tg = Tollgate::start(&yaml);
    let c = client();
    let seen = names(&c, &tg, 4);
    assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()));

    b.kill();
    // Give the proxy a moment to see its pooled connections to b close.
    std::thread::sleep(Duration::from_millis(200));
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = c
            .post(tg.url(&format!("/proxy/retry?i={i}")))
            .header("x-api-key", KEY)
            .body("payload")
            .send()
            .unwrap();
        statuses.push(r.status().as_u16());
        let name = r.headers().get("x-echo-name").cloned();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(name.unwrap(), "a");
    }
    let connect_errors =
        tg.metric(r#"tollgate_upstream_errors_total{kind="connect",upstream="echo"}"#);
    eprintln!("statuses {statuses:?}, connect errors {connect_errors}");
    assert!(connect_errors >= 1.0, "b was never tried");
}
