//! Hostile clients and upstreams: malformed request lines, oversized headers, garbage in the
//! key header, a flood of distinct identities, slowloris connections and an upstream that cuts
//! its body short. After each, the process is alive, serves normal traffic, and its memory is
//! sane.

pub mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Resident set size in KiB, 0 when unknown.
fn rss_kib(pid: u32) -> u64 {
    rss_bytes(pid).unwrap_or(0) / 1024
}

fn yaml(redis: Option<&str>, echo: &str) -> String {
    let c = ConfigBuilder::new()
        .upstream(
            Upstream::new("echo", &[echo])
                .health_interval("200ms")
                .read_timeout("3s"),
        )
        .route(Route::new("/api/", "echo"))
        .unknown_key_anonymous()
        .anonymous_tier("anonymous")
        .trusted_proxies(&["127.0.0.1/32"])
        .tier("anonymous", &[limit(5, "60s")])
        .tier("load", &[limit(1_000_000, "60s").algorithm("fixed_window")])
        .key("loader", "load-key", "load");
    match redis {
        Some(url) => c.redis(
            Redis::url(url)
                .timeout_ms(100)
                .on_error("local")
                .breaker(3, "1s"),
        ),
        None => c,
    }
    .to_yaml()
}

/// A normal request still gets a normal answer.
fn assert_serving(tg: &mut Tollgate) {
    assert!(tg.is_alive(), "tollgate died; logs:\n{}", tg.logs());
    let mut c = Conn::connect(tg.port, Duration::from_secs(5)).expect("connect");
    let r = c
        .get(
            "/api/ok",
            &[("x-api-key".to_string(), "load-key".to_string())],
            true,
        )
        .expect("normal request");
    assert_eq!(r.status, 200, "{}", r.text());
}

fn start() -> (RedisServer, Echo, Tollgate) {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&yaml(Some(&redis.url()), &echo.addr()));
    (redis, echo, tg)
}

/// Malformed request lines and header blocks: a 4xx, never a crash, never a hang.
///
/// A space or a control byte in the request-target is a 400 (RFC 9112 §3.2; Pingora alone
/// would percent-encode it and forward it). Two inputs are not refused, by Pingora's design,
/// and each is checked to reach the upstream in a safe, unambiguous form instead:
/// * a bare LF line ending is accepted (RFC 9112 §2.2 allows it);
/// * Content-Length together with Transfer-Encoding: chunked framing wins, Content-Length is
///   dropped, and the connection is closed after the answer (RFC 9112 §6.3), so nothing can
///   be smuggled behind the body.
#[test]
fn malformed_requests_get_4xx() {
    let (_redis, _echo, mut tg) = start();
    // (name, bytes, what the upstream must have seen when it is forwarded)
    let cases: &[(&str, &[u8], Option<&str>)] = &[
        ("garbage line", b"GARBAGE\r\n\r\n", None),
        ("method only", b"GET\r\n\r\n", None),
        ("no version", b"GET /api/x\r\n\r\n", None),
        ("bad version", b"GET /api/x HTTP/9.9\r\nHost: a\r\n\r\n", None),
        ("extra token", b"GET /api/x HTTP/1.1 extra\r\nHost: a\r\n\r\n", None),
        ("header without colon", b"GET /api/x HTTP/1.1\r\nHost: a\r\nBadHeader\r\n\r\n", None),
        ("space before colon", b"GET /api/x HTTP/1.1\r\nHost : a\r\n\r\n", None),
        ("NUL in header value", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", None),
        ("obs-fold", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n  folded\r\n\r\n", None),
        ("two content-lengths", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", None),
        ("bad chunk size", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", None),
        ("negative content-length", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", None),
        ("TE not chunked", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nab", None),
        ("binary junk", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe\r\n\r\n", None),
        ("high bytes in method", b"G\xc3\xa9T /api/x HTTP/1.1\r\nHost: a\r\n\r\n", None),
        ("absolute URI other host", b"GET http://evil.example/api/x HTTP/1.1\r\nHost: a\r\n\r\n", None),
        ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", None),
        // Never repaired and forwarded (RFC 9112 §3.2).
        ("space in path", b"GET /api/a b HTTP/1.1\r\nHost: a\r\n\r\n", None),
        ("NUL in path", b"GET /api/\x00x HTTP/1.1\r\nHost: a\r\n\r\n", None),
        ("no Host in HTTP/1.1", b"GET /api/x HTTP/1.1\r\n\r\n", None),
        // Forwarded in a safe form (see above).
        ("bare LF", b"GET /api/x HTTP/1.1\nHost: a\n\n", Some("\"path\":\"/api/x\"")),
        ("CL and TE", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", Some("\"transfer-encoding\":\"chunked\"")),
    ];
    let mut report = Vec::new();
    let mut problems = Vec::new();
    for (name, bytes, forwarded) in cases {
        let t0 = Instant::now();
        let answer = raw_exchange(tg.port, bytes, Duration::from_secs(5));
        let took = t0.elapsed();
        let status = answer.as_ref().ok().and_then(|a| raw_status(a));
        let text = answer
            .as_ref()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        report.push(format!("{name}: {status:?} in {took:?}"));
        if took > Duration::from_secs(4) {
            problems.push(format!("{name}: no answer and no close for {took:?}"));
        }
        match (status, forwarded) {
            (Some(s), None) if (400..500).contains(&s) => {}
            (Some(200), Some(seen)) if text.contains(seen) => {
                if *name == "CL and TE" {
                    if !text.contains("Connection: close") {
                        problems.push(format!("{name}: connection kept open: {text}"));
                    }
                    // Read to the end: exactly one answer, the smuggled request never ran.
                    let all = read_until_close(tg.port, bytes);
                    if all.matches("HTTP/1.1 ").count() != 1 || all.contains("/smuggled") {
                        problems.push(format!("{name}: more than one answer: {all}"));
                    }
                    if text.contains("content-length\":") {
                        problems.push(format!("{name}: Content-Length forwarded: {text}"));
                    }
                }
            }
            _ => problems.push(format!("{name}: got {status:?}: {text:?}")),
        }
        assert_serving(&mut tg);
    }
    eprintln!("malformed requests:\n  {}", report.join("\n  "));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Everything the server sends on one connection until it closes it (at most 3 s).
fn read_until_close(port: u16, bytes: &[u8]) -> String {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Oversized header blocks: one huge header, many headers, a huge request line.
#[test]
fn oversized_headers_are_refused() {
    let (_redis, _echo, mut tg) = start();
    let big = "a".repeat(2 * 1024 * 1024);
    let many: String = (0..400).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_uri = format!("/api/{}", "b".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "2 MiB header value",
            format!("GET /api/x HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").into_bytes(),
        ),
        (
            "400 headers",
            format!("GET /api/x HTTP/1.1\r\nHost: a\r\n{many}\r\n").into_bytes(),
        ),
        (
            "2 MiB request line",
            format!("GET {long_uri} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
        ),
        (
            "2 MiB key header",
            format!("GET /api/x HTTP/1.1\r\nHost: a\r\nx-api-key: {big}\r\n\r\n").into_bytes(),
        ),
    ];
    let rss_before = rss_kib(tg.pid());
    for (name, bytes) in &cases {
        let t0 = Instant::now();
        let answer = raw_exchange(tg.port, bytes, Duration::from_secs(5));
        let status = answer.as_ref().ok().and_then(|a| raw_status(a));
        eprintln!("{name}: {status:?} in {:?}", t0.elapsed());
        match (&answer, status) {
            (_, Some(s)) => assert!((400..500).contains(&s), "{name}: got {s}"),
            // The server may close while the client is still writing (EPIPE/ECONNRESET).
            (Err(e), None) => eprintln!("  {name}: connection closed mid-request ({e})"),
            (Ok(a), None) => assert!(a.is_empty(), "{name}: not HTTP"),
        }
        assert_serving(&mut tg);
    }
    let rss_after = rss_kib(tg.pid());
    eprintln!("RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(rss_after < 100 * 1024);
}

/// Bytes outside visible ASCII in the key header: a 401 "malformed", never a 5xx or a crash.
#[test]
fn garbage_in_the_key_header_is_a_401() {
    let (_redis, _echo, mut tg) = start();
    let values: &[&[u8]] = &[
        b"\xff\xfe\xfd",
        b"caf\xc3\xa9",
        b"key\x7fdel",
        b"a\tb",
        b"free demo key",
        b"\x80",
        b"load-key\x01",
    ];
    for v in values {
        let mut req = b"GET /api/x HTTP/1.1\r\nHost: a\r\nx-api-key: ".to_vec();
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n\r\n");
        let answer = raw_exchange(tg.port, &req, Duration::from_secs(5)).expect("exchange");
        let status = raw_status(&answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        eprintln!("key {:?}: {status:?}", String::from_utf8_lossy(v));
        let s = status.unwrap_or_else(|| panic!("no answer for {v:?}"));
        assert!((400..500).contains(&s), "key {v:?}: {s}");
        if s == 401 {
            assert!(text.contains("malformed"), "{text}");
        }
        // Never echoed back.
        assert!(
            !text.contains("caf\u{e9}") && !text.contains("demo key"),
            "{text}"
        );
        assert_serving(&mut tg);
    }
    // The non-ASCII ones reach tollgate's identity step (they are valid HTTP): 401 malformed.
    let req = b"GET /api/x HTTP/1.1\r\nHost: a\r\nx-api-key: \xff\xfe\r\n\r\n";
    let answer = raw_exchange(tg.port, req, Duration::from_secs(5)).expect("exchange");
    assert_eq!(raw_status(&answer), Some(401));
    assert!(String::from_utf8_lossy(&answer).contains("malformed"));
}

/// 100,000 distinct callers (anonymous, by X-Forwarded-For from a trusted proxy, each with a
/// random unknown API key) while Redis is down and `on_error: local` keeps every one of them in
/// the in-process store: the worst case for tollgate's own memory.
#[test]
fn hundred_thousand_distinct_callers_keep_memory_bounded() {
    let echo = Echo::start();
    let dead_redis = format!("redis://127.0.0.1:{}/0", free_port());
    let tg = Tollgate::start(&yaml(Some(&dead_redis), &echo.addr()));
    let pid = tg.pid();
    // Warm up the allocator and the connection paths first.
    for _ in 0..50 {
        let _ = http_get(tg.port, "/api/warm");
    }
    let rss_before = rss_kib(pid);

    const TOTAL: usize = 100_000;
    const WORKERS: usize = 4;
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let next = next.clone();
            let port = tg.port;
            std::thread::spawn(move || {
                let mut statuses = std::collections::BTreeMap::new();
                let mut conn: Option<Conn> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= TOTAL {
                        break;
                    }
                    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                    let key = format!("k{:016x}", rand::random::<u64>());
                    let h = vec![
                        ("x-forwarded-for".to_string(), ip),
                        ("x-api-key".to_string(), key),
                    ];
                    if conn.as_ref().is_none_or(|c| c.closed || c.used >= 500) {
                        conn = Some(Conn::connect(port, Duration::from_secs(10)).expect("connect"));
                    }
                    let status = match conn.as_mut().map(|c| c.get("/api/flood", &h, false)) {
                        Some(Ok(r)) => r.status,
                        _ => {
                            conn = None;
                            0
                        }
                    };
                    *statuses.entry(status).or_insert(0usize) += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for h in handles {
        for (s, n) in h.join().expect("join") {
            *statuses.entry(s).or_insert(0) += n;
        }
    }
    let took = t0.elapsed();
    let rss_after = rss_kib(pid);
    let local = metric_sum(
        &tg.metrics(),
        "tollgate_ratelimit_decisions_total",
        &[("tier", "anonymous"), ("decision", "local")],
    );
    eprintln!(
        "{TOTAL} distinct callers in {took:?}: statuses {statuses:?}, local decisions {local}; \
         RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert_eq!(
        statuses.get(&200).copied().unwrap_or(0),
        TOTAL,
        "{statuses:?}"
    );
    assert!(local >= TOTAL as f64);
    assert!(
        rss_after < 100 * 1024,
        "RSS {rss_after} KiB after {TOTAL} distinct callers"
    );
    let mut tg = tg;
    assert_serving(&mut tg);
}

/// Slowloris: many connections dribbling their headers a byte at a time. Everyone else is
/// still served promptly.
#[test]
fn slowloris_connections_do_not_starve_others() {
    let (_redis, _echo, mut tg) = start();
    const SLOW: usize = 300;
    let port = tg.port;
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let s = TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            )
            .expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s
        })
        .collect();
    let header = b"GET /api/slow HTTP/1.1\r\nHost: a\r\nx-api-key: load-key\r\nX-Pad: ".to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0usize;
            let mut alive = SLOW;
            while !stop.load(Ordering::Relaxed) {
                alive = 0;
                for s in slow.iter_mut() {
                    let b = header.get(i).copied().unwrap_or(b'x');
                    if s.write_all(&[b]).is_ok() {
                        alive += 1;
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (alive, i)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let rss_during = rss_kib(tg.pid());

    // Meanwhile, ordinary clients.
    let mut worst = Duration::ZERO;
    for _ in 0..40 {
        let t0 = Instant::now();
        assert_serving(&mut tg);
        worst = worst.max(t0.elapsed());
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (alive, bytes) = dribbler.join().expect("join");
    eprintln!(
        "{SLOW} slowloris connections, {bytes} bytes each over ~{:.1} s: {alive} still open \
         (Pingora closes a header read only after 60 s without a byte); worst normal request \
         {worst:?}; RSS during {rss_during} KiB",
        bytes as f64 / 10.0
    );
    assert!(
        worst < Duration::from_secs(1),
        "normal requests slowed to {worst:?}"
    );
    assert_serving(&mut tg);
}

/// The upstream promises 1 MB and cuts the connection after about 100 kB: the client sees a
/// truncated or closed response (or a 502), never a hang, and the process keeps serving.
#[test]
fn upstream_closing_mid_body_does_not_hang() {
    let (_redis, _echo, mut tg) = start();
    for attempt in 0..5 {
        let t0 = Instant::now();
        let mut c = Conn::connect(tg.port, Duration::from_secs(10)).expect("connect");
        let r = c.get(
            "/api/big?bytes=1000000&abort_after=100000",
            &[("x-api-key".to_string(), "load-key".to_string())],
            false,
        );
        let took = t0.elapsed();
        let outcome = match &r {
            Ok(r) => format!("status {} with {} body bytes", r.status, r.body.len()),
            Err(e) => format!("{e:?}"),
        };
        eprintln!("attempt {attempt}: {outcome} after {took:?}");
        assert!(took < Duration::from_secs(5), "hung for {took:?}");
        match r {
            Ok(r) => assert!(
                r.status == 502 || (r.status == 200 && r.body.len() < 1_000_000),
                "{outcome}"
            ),
            Err(common::http::ReqError::Failed(e)) => assert!(
                e.contains("got bytes: true") || e.contains("closed") || e.contains("reset"),
                "{e}"
            ),
            Err(e) => panic!("{e:?}"),
        }
        assert_serving(&mut tg);
    }
    let m = tg.metrics();
    let errors = metric_sum(
        &m,
        "tollgate_upstream_errors_total",
        &[("upstream", "echo")],
    );
    eprintln!("upstream errors counted: {errors}");
}
