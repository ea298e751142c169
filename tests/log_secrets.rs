//! A raw API key, an admin token or an `Authorization` value never reaches a log line, at any
//! `RUST_LOG` level: tollgate runs with `RUST_LOG=trace`, gets keys in well-formed, refused,
//! malformed and pipelined requests, and its whole stderr is searched.
pub mod common;

use std::time::Duration;

use common::*;

const SECRETS: &[&str] = &[
    "free-demo-key",
    "unknown-secret-key-4711",
    "custom-header-secret-0815",
    "bearer-token-secret-1234",
    "proxy-auth-secret-9999",
    "admin-token-secret-5678",
];

/// Tollgate with `RUST_LOG=trace` and an admin token from the environment.
fn traced(yaml: &str) -> Tollgate {
    Tollgate::start_with_env(
        yaml,
        &[
            ("RUST_LOG", "trace"),
            ("TOLLGATE_ADMIN_TOKEN", "admin-token-secret-5678"),
        ],
    )
}

/// Sends `bytes` on a fresh connection and waits a little for the answer (none is judged).
fn send(port: u16, bytes: &str) {
    let _ = raw_exchange(port, bytes.as_bytes(), Duration::from_secs(3));
}

fn exercise(t: &Tollgate, key_header: &str, key: &str) {
    let auth = "Authorization: Bearer bearer-token-secret-1234\r\nProxy-Authorization: Basic proxy-auth-secret-9999\r\n";
    let p = t.port;
    send(p, &format!("GET /proxy/ok HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\n{auth}Connection: close\r\n\r\n"));
    send(p, &format!("GET /proxy/no HTTP/1.1\r\nHost: x\r\n{key_header}: unknown-secret-key-4711\r\n{auth}Connection: close\r\n\r\n"));
    // Malformed: Pingora logs the raw request buffer at debug.
    send(
        p,
        &format!(
            "GET /proxy/bad HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\n{auth}Bad Header\r\n\r\n"
        ),
    );
    send(
        p,
        &format!("GET /proxy/bad2 HTTP/9.9\r\n{key_header}: {key}\r\n{auth}\r\n"),
    );
    send(p, &format!("POST /proxy/bad3 HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"));
    // Pipelined, with a chunked body, and a repaired target.
    send(p, &format!(
        "POST /proxy/p HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /proxy/a b HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\nConnection: close\r\n\r\n"
    ));
    // The admin listener, with the token.
    send(t.admin_port, "GET /v1/config HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-secret-5678\r\nConnection: close\r\n\r\n");
    send(t.admin_port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-secret-5678\r\nConnection: close\r\n\r\n");
    std::thread::sleep(Duration::from_millis(500));
}

fn assert_clean(log: &str) {
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=trace did not take effect:\n{log}"
    );
    for secret in SECRETS {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            lines.is_empty(),
            "{secret} in the log:\n{}",
            lines.join("\n")
        );
    }
    // Pingora's own trace records print request heads; they are held at debug.
    let pingora_trace: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" TRACE pingora"))
        .collect();
    assert!(pingora_trace.is_empty(), "{}", pingora_trace.join("\n"));
}

#[test]
fn trace_logging_never_prints_a_key_or_token() {
    let echo = Echo::start();
    let t = traced(&standard(None, &echo.addr()).to_yaml());
    exercise(&t, "x-api-key", "free-demo-key");
    let log = t.logs();
    assert_clean(&log);
    // The redaction was exercised: Pingora's debug dump of a malformed head is in the log.
    assert!(log.contains("[redacted]"), "no redacted value in:\n{log}");
}

#[test]
fn the_configured_key_header_is_redacted_too() {
    let echo = Echo::start();
    let yaml = standard(None, &echo.addr()).key_header("x-custom-key").key(
        "alice",
        "custom-header-secret-0815",
        "free",
    );
    let t = traced(&yaml.to_yaml());
    exercise(&t, "X-Custom-Key", "custom-header-secret-0815");
    assert_clean(&t.logs());
}
