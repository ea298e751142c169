//! A raw API key, an admin token or an `Authorization` value never reaches a log line, at any
//! `RUST_LOG` level: tollgate runs with `RUST_LOG=trace`, gets keys in well-formed, refused,
//! malformed and pipelined requests, and its whole stderr is searched.
mod common;

use std::process::{Child, Command, Stdio};
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

/// A tollgate process with RUST_LOG=trace, killed by PID on drop.
struct Traced {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    admin_port: u16,
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Traced {
    fn start(yaml: &str) -> Traced {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin_port) = (free_port(), free_port());
        let yaml = yaml
            .replace("{LISTEN}", &format!("127.0.0.1:{port}"))
            .replace("{ADMIN}", &format!("127.0.0.1:{admin_port}"));
        std::fs::write(dir.path().join("t.yaml"), yaml).expect("config");
        std::fs::write(
            dir.path().join("p.yaml"),
            format!(
                "---\nversion: 1\nthreads: 2\nupgrade_sock: {d}/u.sock\npid_file: {d}/p.pid\ngrace_period_seconds: 0\n",
                d = dir.path().display()
            ),
        )
        .expect("pingora conf");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new(TOLLGATE)
            .arg("--config")
            .arg(dir.path().join("t.yaml"))
            .arg("-c")
            .arg(dir.path().join("p.yaml"))
            .env("RUST_LOG", "trace")
            .env("TOLLGATE_ADMIN_TOKEN", "admin-token-secret-5678")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn");
        let t = Traced {
            child,
            dir,
            port,
            admin_port,
        };
        assert!(
            wait_until(Duration::from_secs(20), || port_open(port)
                && port_open(admin_port)),
            "tollgate did not start: {}",
            t.log()
        );
        t
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn send(&self, port: u16, bytes: &str) {
        let _ = raw_exchange(port, bytes.as_bytes(), Duration::from_secs(3));
    }
}

fn exercise(t: &Traced, key_header: &str, key: &str) {
    let auth = "Authorization: Bearer bearer-token-secret-1234\r\nProxy-Authorization: Basic proxy-auth-secret-9999\r\n";
    let p = t.port;
    t.send(p, &format!("GET /proxy/ok HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\n{auth}Connection: close\r\n\r\n"));
    t.send(p, &format!("GET /proxy/no HTTP/1.1\r\nHost: x\r\n{key_header}: unknown-secret-key-4711\r\n{auth}Connection: close\r\n\r\n"));
    // Malformed: Pingora logs the raw request buffer at debug.
    t.send(
        p,
        &format!(
            "GET /proxy/bad HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\n{auth}Bad Header\r\n\r\n"
        ),
    );
    t.send(
        p,
        &format!("GET /proxy/bad2 HTTP/9.9\r\n{key_header}: {key}\r\n{auth}\r\n"),
    );
    t.send(p, &format!("POST /proxy/bad3 HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"));
    // Pipelined, with a chunked body, and a repaired target.
    t.send(p, &format!(
        "POST /proxy/p HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /proxy/a b HTTP/1.1\r\nHost: x\r\n{key_header}: {key}\r\nConnection: close\r\n\r\n"
    ));
    // The admin listener, with the token.
    t.send(t.admin_port, "GET /v1/config HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-secret-5678\r\nConnection: close\r\n\r\n");
    t.send(t.admin_port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-secret-5678\r\nConnection: close\r\n\r\n");
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
    let t = Traced::start(&config(None, &echo.addr(), ""));
    exercise(&t, "x-api-key", "free-demo-key");
    let log = t.log();
    assert_clean(&log);
    // The redaction was exercised: Pingora's debug dump of a malformed head is in the log.
    assert!(log.contains("[redacted]"), "no redacted value in:\n{log}");
}

#[test]
fn the_configured_key_header_is_redacted_too() {
    let echo = Echo::start();
    let yaml = config(None, &echo.addr(), "")
        .replace("header: \"x-api-key\"", "header: \"x-custom-key\"")
        .replace(
            "key: \"free-demo-key\"",
            "key: \"custom-header-secret-0815\"",
        );
    let t = Traced::start(&yaml);
    exercise(&t, "X-Custom-Key", "custom-header-secret-0815");
    assert_clean(&t.log());
}
