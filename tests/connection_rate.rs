//! `connection_rate`: new connections per client address, decided at accept time, over real
//! sockets (loopback has many addresses: 127.0.0.2 is another client).
mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::wire::Conn;
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
    let _ = c.s.write_all(req.as_bytes());
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
    let base = config(None, &echo.addr(), "");
    // Started without a limit: the harness's readiness probes count for nothing.
    let tg = Tollgate::start(&base);
    wait_generation(&tg, 1.0);
    // A 30 s window: the burst below sits well inside one window on any machine.
    tg.write_config(&format!(
        "{base}connection_rate: {{ per_ip: 5, window: 30s }}\n"
    ));
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
    tg.write_config(&format!(
        "{base}connection_rate: {{ per_ip: 100, window: 30s }}\n"
    ));
    wait_generation(&tg, 3.0);
    assert_eq!(request_from("127.0.0.1", tg.port), Some(200));
    // And so does removing it.
    tg.write_config(&base);
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
    let base = config(None, &echo.addr(), "");
    let tg = Tollgate::start(&format!(
        "{base}connection_rate: {{ per_ip: 2, window: 30s }}\n"
    ));
    // The harness's readiness probes came from 127.0.0.1: this client is another address.
    let mut c = Conn::open_from("127.0.0.3", tg.port);
    for i in 0..20 {
        c.send(
            format!("GET /proxy/k{i} HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n\r\n").as_bytes(),
        );
        assert_eq!(c.response().expect("answer").status, 200, "request {i}");
    }
}

fn check(yaml_tail: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.yaml");
    let yaml = format!(
        "listen: [\"127.0.0.1:1\"]\nadmin_listen: \"127.0.0.1:2\"\nupstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes: [{{ prefix: \"/\", upstream: u }}]\ntiers:\n  free: {{ limits: [] }}\n{yaml_tail}"
    );
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

#[test]
fn bad_settings_name_the_line_and_field() {
    let (code, err) = check("connection_rate: { per_ip: 0, window: 1s }\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(":8:") && err.contains("connection_rate.per_ip"),
        "{err}"
    );
    let (code, err) = check("connection_rate:\n  per_ip: 5\n  window: 10ms\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(":10:") && err.contains("connection_rate.window"),
        "{err}"
    );
    let (code, err) = check("connection_rate: { per_ip: 5, burst: 3 }\n");
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `burst`"), "{err}");
    let (code, err) = check("connection_rate: { per_ip: 50 }\n");
    assert_eq!(code, 0, "window defaults to 1s: {err}");
}
