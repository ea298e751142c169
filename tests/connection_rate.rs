//! `connection_rate`: new connections per client address, decided at accept time, over real
//! sockets (loopback has many addresses: 127.0.0.2 is another client).
pub mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

const KEY: &str = "internal-demo-key";

/// Connects from `from` (an address on loopback), sends a GET and returns the status, or None
/// when tollgate closed the connection without an answer.
fn request_from(from: &str, port: u16) -> Option<u16> {
    let mut c = Conn::open_from(from, port);
    let req = format!(
        "GET /proxy/c HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n"
    );
    // A refused connection may already be closed: a failed write is an outcome too.
    let _ = c.stream().write_all(req.as_bytes());
    c.response().map(|r| r.status)
}

fn wait_generation(tg: &Tollgate, generation: f64) {
    assert!(
        wait_until(Duration::from_secs(10), || {
            tg.metric("tollgate_config_generation") >= generation
        }),
        "config generation {generation} never arrived: {}",
        tg.logs()
    );
}

#[test]
fn new_connections_per_ip_are_limited_at_accept_time() {
    let echo = Echo::start();
    let base = || standard(None, &echo.addr());
    // Started without a limit: the harness's readiness probes count for nothing.
    let tg = Tollgate::start(&base().to_yaml());
    wait_generation(&tg, 1.0);
    // A 30 s window: the burst below sits well inside one window on any machine.
    tg.write_config(&base().connection_rate(5, Some("30s")).to_yaml());
    wait_generation(&tg, 2.0);

    let outcomes: Vec<Option<u16>> = (0..8).map(|_| request_from("127.0.0.1", tg.port)).collect();
    assert_eq!(
        outcomes,
        vec![
            Some(200),
            Some(200),
            Some(200),
            Some(200),
            Some(200),
            None,
            None,
            None
        ],
        "5 connections admitted, then closed at accept"
    );
    assert_eq!(
        tg.metric("tollgate_connections_refused_total{reason=\"rate\"}"),
        3.0
    );
    // Another address has its own budget.
    assert_eq!(request_from("127.0.0.2", tg.port), Some(200));
    // The admin listener is not limited.
    assert!(http_get(tg.admin_port, "/healthz").is_some_and(|(s, _)| s == 200));

    // A reload applies at once.
    tg.write_config(&base().connection_rate(100, Some("30s")).to_yaml());
    wait_generation(&tg, 3.0);
    assert_eq!(request_from("127.0.0.1", tg.port), Some(200));
    // And so does removing it.
    tg.write_config(&base().to_yaml());
    wait_generation(&tg, 4.0);
    for _ in 0..10 {
        assert_eq!(request_from("127.0.0.1", tg.port), Some(200));
    }
    assert_eq!(
        tg.metric("tollgate_connections_refused_total{reason=\"rate\"}"),
        3.0
    );
}

#[test]
fn a_kept_alive_connection_is_not_a_new_one() {
    let echo = Echo::start();
    let tg = Tollgate::start(
        &standard(None, &echo.addr())
            .connection_rate(2, Some("30s"))
            .to_yaml(),
    );
    // The harness's readiness probes came from 127.0.0.1: this client is another address.
    let mut c = Conn::open_from("127.0.0.3", tg.port);
    for i in 0..20 {
        c.send(
            format!("GET /proxy/k{i} HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n\r\n").as_bytes(),
        );
        assert_eq!(c.response().expect("answer").status, 200, "request {i}");
    }
}

/// `tollgate -t` on `config`: (exit code, stderr).
fn check(config: ConfigBuilder) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.yaml");
    let yaml = config
        .listen("127.0.0.1:1")
        .admin_listen("127.0.0.1:2")
        .to_yaml();
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(TOLLGATE)
        .args(["-t", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every message with its line and column is in `tests/config_errors*.rs`; here the `-t`
/// command itself: exit 1 naming the field, exit 0 with the default window.
#[test]
fn bad_settings_fail_the_config_check() {
    let base = || standard(None, "127.0.0.1:3");
    let (code, err) = check(base().connection_rate(0, Some("1s")));
    assert_eq!(code, 1);
    assert!(
        err.contains("field `connection_rate.per_ip`: must be between 1 and 65535"),
        "{err}"
    );
    let (code, err) = check(base().connection_rate(5, Some("10ms")));
    assert_eq!(code, 1);
    assert!(
        err.contains("field `connection_rate.window`: must be between 100ms and 1h"),
        "{err}"
    );
    let (code, err) = check(base().connection_rate(50, None));
    assert_eq!(code, 0, "window defaults to 1s: {err}");
}
