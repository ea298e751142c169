//! gRPC through tollgate to a real gRPC server (Python grpcio, h2c, in the test venv: see
//! tests/grpc/requirements.txt): unary and bidirectional streaming calls with their trailers,
//! over TLS and over h2c, and tollgate's own refusals as trailers-only gRPC statuses.

pub mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::tls as t;
use common::{limit, ChildGuard, ConfigBuilder, Key, Listener, Redis, Route, Tollgate, Upstream};
use h2::client::SendRequest;

/// A grpcio server on a free port, stopped by PID when dropped.
struct GrpcServer {
    _child: ChildGuard,
    port: u16,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TOLLGATE_PYTHON") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

impl GrpcServer {
    fn start() -> Self {
        let port = common::free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/server.py");
        let child = ChildGuard::spawn(
            Command::new(python())
                .arg(&script)
                .arg(port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
            "python with grpcio (scripts/test.sh makes .venv; or set TOLLGATE_PYTHON)",
        );
        assert!(
            common::wait_until(Duration::from_secs(30), || common::port_open(port)),
            "the grpcio server did not start (is grpcio in {}?)",
            python().display()
        );
        GrpcServer {
            _child: child,
            port,
        }
    }
}

/// A TLS listener (`{LISTEN}`) and an h2c listener on `h2c`, route `/test.Echo/` to the gRPC
/// server over h2c, keys of an unlimited tier and of a tier of `budget` calls a minute, and
/// `redis` when given (else the in-process store).
fn config(dir: &std::path::Path, grpc: u16, h2c: u16, budget: u64, redis: Option<Redis>) -> String {
    let pair = t::gen_pair(dir, "api", &["api.test"]);
    let c = ConfigBuilder::new()
        .listeners(&[
            Listener::new("{LISTEN}").cert(&pair.cert, &pair.key),
            Listener::new(&format!("127.0.0.1:{h2c}")).http2(true),
        ])
        .upstream(
            Upstream::new("grpc", &[&format!("127.0.0.1:{grpc}")])
                .http2()
                .read_timeout("10s"),
        )
        .route(Route::new("/test.Echo/", "grpc"))
        .anonymous_reject()
        .tier("internal", &[])
        .tier("small", &[limit(budget, "60s").named("per_minute")])
        .key_entry(Key::new("carol", "internal-key", "internal"))
        .key_entry(Key::new("dave", "small-key", "small"));
    match redis {
        Some(r) => c.redis(r),
        None => c,
    }
    .to_yaml()
}

/// A gRPC message: uncompressed flag, 4-byte length, payload.
fn frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn request(base: &str, method: &str, key: Option<&str>) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("{base}{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    b.body(()).unwrap()
}

/// Reads one whole gRPC message from `body`, buffering across DATA frames.
async fn read_message(body: &mut h2::RecvStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() >= 5 + len {
                let msg = buf[5..5 + len].to_vec();
                buf.drain(..5 + len);
                return Some(msg);
            }
        }
        let mut chunk = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .expect("data in time")?
            .expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        while chunk.has_remaining() {
            let c = chunk.chunk().to_vec();
            chunk.advance(c.len());
            buf.extend_from_slice(&c);
        }
    }
}

async fn trailers(body: &mut h2::RecvStream) -> http::HeaderMap {
    tokio::time::timeout(Duration::from_secs(10), body.trailers())
        .await
        .expect("trailers in time")
        .expect("trailers")
        .expect("a trailers frame")
}

async fn unary(
    send: &SendRequest<Bytes>,
    base: &str,
    method: &str,
    key: &str,
) -> (http::response::Parts, Vec<u8>, http::HeaderMap) {
    let mut s = send.clone().ready().await.unwrap();
    let (resp, mut out) = s
        .send_request(request(base, method, Some(key)), false)
        .unwrap();
    out.send_data(frame(b"hello"), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    let (parts, mut body) = resp.into_parts();
    if parts.headers.contains_key("grpc-status") {
        // The server's own trailers-only answer must stay one HEADERS frame ending the stream.
        assert!(
            body.is_end_stream(),
            "a trailers-only answer is passed on as such"
        );
        let status = parts.headers.clone();
        return (parts, Vec::new(), status);
    }
    let mut buf = Vec::new();
    let msg = read_message(&mut body, &mut buf).await.unwrap_or_default();
    (parts, msg, trailers(&mut body).await)
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Unary, failing and bidirectional calls on one connection at `base`. grpcio refuses a call
/// without `TE: trailers`, so the first call passing also shows that tollgate forwards it.
async fn calls_pass_through(send: SendRequest<Bytes>, base: &str) {
    let (parts, msg, tr) = unary(&send, base, "/test.Echo/Unary", "internal-key").await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts.headers, "content-type"), "application/grpc");
    assert_eq!(msg, b"hello");
    assert_eq!(header(&tr, "grpc-status"), "0");
    assert_eq!(header(&tr, "x-trailer"), "kept");

    let (_, _, tr) = unary(&send, base, "/test.Echo/Fail", "internal-key").await;
    assert_eq!(header(&tr, "grpc-status"), "5");
    assert_eq!(header(&tr, "grpc-message"), "nothing here");

    // Bidirectional: each answer arrives before the next message is sent.
    let mut s = send.clone().ready().await.unwrap();
    let (resp, mut out) = s
        .send_request(
            request(base, "/test.Echo/Bidi", Some("internal-key")),
            false,
        )
        .unwrap();
    out.send_data(frame(b"one"), false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    assert_eq!(
        read_message(&mut body, &mut buf).await.unwrap(),
        b"echo:one"
    );
    out.send_data(frame(b"two"), false).unwrap();
    assert_eq!(
        read_message(&mut body, &mut buf).await.unwrap(),
        b"echo:two"
    );
    out.send_data(Bytes::new(), true).unwrap();
    let tr = trailers(&mut body).await;
    assert_eq!(header(&tr, "grpc-status"), "0");
    assert_eq!(header(&tr, "x-trailer"), "kept");
}

#[test]
fn unary_and_bidi_streaming_calls_with_trailers_pass_through() {
    let server = GrpcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let h2c = common::free_port();
    let tg = Tollgate::start(&config(dir.path(), server.port, h2c, 100, None));
    t::runtime().block_on(async {
        let h2 = t::client_config(rustls::ALL_VERSIONS, &[b"h2"]);
        let stream = t::connect(tg.port, "api.test", h2).await.unwrap();
        calls_pass_through(t::h2_client(stream).await, "https://api.test").await;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h2c))
            .await
            .unwrap();
        calls_pass_through(t::h2_client(tcp).await, &format!("http://127.0.0.1:{h2c}")).await;
    });
}

/// A call tollgate refuses: the response headers, which must end the stream.
async fn refused(
    send: &SendRequest<Bytes>,
    method: &str,
    key: Option<&str>,
    ctype: &str,
) -> http::response::Parts {
    let mut req = request("https://api.test", method, key);
    req.headers_mut()
        .insert("content-type", ctype.parse().unwrap());
    let mut s = send.clone().ready().await.unwrap();
    let (resp, mut out) = s.send_request(req, false).unwrap();
    let _ = out.send_data(frame(b"hello"), true);
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = resp.into_parts();
    if parts.status == 200 {
        assert!(
            body.is_end_stream(),
            "trailers-only: one HEADERS frame ends the stream"
        );
    }
    parts
}

fn assert_grpc_status(parts: &http::response::Parts, code: &str) {
    assert_eq!(parts.status, 200, "{parts:?}");
    assert_eq!(header(&parts.headers, "content-type"), "application/grpc");
    assert_eq!(header(&parts.headers, "grpc-status"), code, "{parts:?}");
    assert!(!header(&parts.headers, "grpc-message").is_empty());
}

#[test]
fn refusals_are_trailers_only_grpc_statuses() {
    let server = GrpcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tg = Tollgate::start(&config(
        dir.path(),
        server.port,
        common::free_port(),
        2,
        None,
    ));
    t::runtime().block_on(async {
        let h2 = t::client_config(rustls::ALL_VERSIONS, &[b"h2"]);
        let stream = t::connect(tg.port, "api.test", h2).await.unwrap();
        let send = t::h2_client(stream).await;
        for _ in 0..2 {
            let (_, msg, tr) =
                unary(&send, "https://api.test", "/test.Echo/Unary", "small-key").await;
            assert_eq!(
                (msg.as_slice(), header(&tr, "grpc-status")),
                (&b"hello"[..], "0")
            );
        }
        let limited = refused(
            &send,
            "/test.Echo/Unary",
            Some("small-key"),
            "application/grpc",
        )
        .await;
        assert_grpc_status(&limited, "8");
        assert!(
            header(&limited.headers, "retry-after")
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        assert_eq!(
            header(&limited.headers, "ratelimit"),
            "\"per_minute\";r=0;t=60"
        );
        let proto = refused(
            &send,
            "/test.Echo/Unary",
            Some("small-key"),
            "application/grpc+proto",
        )
        .await;
        assert_grpc_status(&proto, "8");

        assert_grpc_status(
            &refused(&send, "/test.Echo/Unary", None, "application/grpc").await,
            "16",
        );
        assert_grpc_status(
            &refused(&send, "/test.Echo/Unary", Some("wrong"), "application/grpc").await,
            "16",
        );
        assert_grpc_status(
            &refused(
                &send,
                "/other.Svc/Call",
                Some("internal-key"),
                "application/grpc",
            )
            .await,
            "12",
        );

        // grpc-web clients read HTTP statuses: they get the 429 itself.
        let web = refused(
            &send,
            "/test.Echo/Unary",
            Some("small-key"),
            "application/grpc-web",
        )
        .await;
        assert_eq!(web.status, 429);
    });
}

/// One call with the grpcio client (tests/grpc/client.py) through `target`; its output line.
fn grpcio_call(target: &str, key: &str, kind: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/client.py");
    let out = Command::new(python())
        .arg(&script)
        .args([target, key, kind])
        .stdin(Stdio::null())
        .output()
        .expect("python with grpcio");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_real_grpc_client_streams_through_and_reads_the_refusals() {
    let server = GrpcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let h2c = common::free_port();
    let tg = Tollgate::start(&config(dir.path(), server.port, h2c, 2, None));
    let target = format!("127.0.0.1:{h2c}");
    assert_eq!(
        grpcio_call(&target, "internal-key", "bidi"),
        "OK echo:a,echo:b,echo:c kept"
    );
    assert_eq!(grpcio_call(&target, "small-key", "unary"), "OK hello kept");
    assert_eq!(
        grpcio_call(&target, "small-key", "bidi"),
        "OK echo:a,echo:b,echo:c kept"
    );
    let limited = grpcio_call(&target, "small-key", "unary");
    assert!(
        limited.starts_with("RESOURCE_EXHAUSTED limit per_minute"),
        "{limited}"
    );
    let unauthenticated = grpcio_call(&target, "", "unary");
    assert!(
        unauthenticated.starts_with("UNAUTHENTICATED "),
        "{unauthenticated}"
    );
    drop(tg);
}

#[test]
fn a_store_outage_with_fail_closed_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let dead = common::free_port();
    let redis = Redis::url(&format!("redis://127.0.0.1:{dead}/0"))
        .timeout_ms(50)
        .on_error("fail_closed");
    // No gRPC server is needed: the call is refused before any upstream is chosen.
    let tg = Tollgate::start(&config(
        dir.path(),
        common::free_port(),
        common::free_port(),
        5,
        Some(redis),
    ));
    t::runtime().block_on(async {
        let h2 = t::client_config(rustls::ALL_VERSIONS, &[b"h2"]);
        let stream = t::connect(tg.port, "api.test", h2).await.unwrap();
        let send = t::h2_client(stream).await;
        let parts = refused(
            &send,
            "/test.Echo/Unary",
            Some("small-key"),
            "application/grpc",
        )
        .await;
        assert_grpc_status(&parts, "14");
        assert_eq!(header(&parts.headers, "retry-after"), "1");
    });
}
