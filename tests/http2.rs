//! HTTP/2 downstream over real sockets: every stream is one request for the limiter, exactly,
//! over TLS (ALPN h2, through Redis) and over h2c (prior knowledge, the in-process store) beside
//! HTTP/1.1 on a plain listener.

pub mod common;

use std::time::Duration;

use bytes::Bytes;
use common::tls as t;
use common::{limit, Echo, Listener, RedisServer, Tollgate};

/// The standard harness config (with Redis when given), a tier of 10 requests a minute with
/// key `ten-key`, and `listeners`.
fn config(redis: Option<&RedisServer>, echo: &Echo, listeners: &[Listener]) -> String {
    let c = common::standard(redis.map(|r| r.url()).as_deref(), &echo.addr());
    // 50 calls at once on a loaded machine: a store timeout would be an error, not a verdict.
    let c = match redis {
        Some(_) => c.with_redis(|r| r.timeout_ms(2000)),
        None => c,
    };
    c.tier("ten", &[limit(10, "60s").named("per_minute")])
        .key("dave", "ten-key", "ten")
        .listeners(listeners)
        .to_yaml()
}

/// Sends `n` requests at once as streams of one connection; returns their statuses and one
/// header of the 429s.
async fn burst(
    send: h2::client::SendRequest<Bytes>,
    base: &str,
    n: usize,
) -> (Vec<u16>, Vec<Option<String>>) {
    let mut pending = Vec::new();
    for i in 0..n {
        let req = http::Request::builder()
            .uri(format!("{base}/api/burst/{i}"))
            .header("x-api-key", "ten-key")
            .body(())
            .unwrap();
        let mut s = send.clone().ready().await.expect("h2 ready");
        let (resp, _) = s.send_request(req, true).expect("send_request");
        pending.push(resp);
    }
    let mut statuses = Vec::new();
    let mut policies = Vec::new();
    for resp in pending {
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("response in time")
            .expect("response");
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            policies.push(
                resp.headers()
                    .get("ratelimit")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            );
        }
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    }
    (statuses, policies)
}

fn assert_exactly_ten(statuses: &[u16], policies: &[Option<String>]) {
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (10, 40), "statuses: {statuses:?}");
    for p in policies {
        assert_eq!(
            p.as_deref(),
            Some("\"per_minute\";r=0;t=60"),
            "{policies:?}"
        );
    }
}

#[test]
fn fifty_streams_over_tls_against_a_limit_of_ten_admit_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let pair = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    // Through the Redis store and its Lua, as in production.
    let redis = RedisServer::start();
    let listen = Listener::new("{LISTEN}").cert(&pair.cert, &pair.key);
    let tg = Tollgate::start(&config(Some(&redis), &echo, &[listen]));
    t::runtime().block_on(async {
        let h2 = t::client_config(rustls::ALL_VERSIONS, &[b"h2"]);
        let stream = t::connect(tg.port, "api.test", h2).await.unwrap();
        assert_eq!(t::alpn(&stream).as_deref(), Some(&b"h2"[..]));
        let send = t::h2_client(stream).await;
        let (statuses, policies) = burst(send, "https://api.test", 50).await;
        assert_exactly_ten(&statuses, &policies);
    });
    let limited = common::metric_sum(
        &tg.metrics(),
        "tollgate_ratelimit_decisions_total",
        &[
            ("decision", "limited"),
            ("limit", "per_minute"),
            ("tier", "ten"),
        ],
    );
    assert_eq!(limited, 40.0);
}

#[test]
fn h2c_beside_http1_on_a_plain_listener_counts_streams_exactly() {
    let echo = Echo::start();
    let h2c = Listener::new("{LISTEN}").http2(true);
    let tg = Tollgate::start(&config(None, &echo, &[h2c]));
    // HTTP/1.1 still works on the same listener, and counts against the same budget.
    let r = common::raw_request(
        tg.port,
        b"GET /api/h1 HTTP/1.1\r\nHost: api.test\r\nx-api-key: ten-key\r\nConnection: close\r\n\r\n",
    )
    .expect("HTTP/1.1 answer");
    assert_eq!(r.status, 200);
    t::runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tg.port))
            .await
            .unwrap();
        let send = t::h2_client(tcp).await;
        let base = format!("http://127.0.0.1:{}", tg.port);
        let (statuses, _) = burst(send, &base, 49).await;
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let limited = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!((ok, limited), (9, 40), "statuses: {statuses:?}");
    });
}

#[test]
fn a_plain_listener_without_http2_does_not_speak_h2c() {
    let echo = Echo::start();
    let tg = Tollgate::start(&config(None, &echo, &[Listener::new("{LISTEN}")]));
    let reply = common::raw_exchange(
        tg.port,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap_or_default();
    // An HTTP/1.1 parser's answer (or a closed socket), never an HTTP/2 SETTINGS frame.
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}
