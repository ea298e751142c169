//! The integration-test harness: every test owns its processes.
//!
//! [`RedisServer`], [`Echo`] and [`Tollgate`] each start a real process on free loopback ports,
//! wait (with a timeout) until it answers, and stop it by PID when dropped, even when the test
//! panics. Nothing relies on a server that happens to be running.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");

mod echo_bin;
pub use echo_bin::echo_bin;

/// A free port. Ports are handed out from a per-process sequence (spread by PID) and checked by
/// binding, so parallel tests in one binary never collide and rarely race other binaries.
/// They stay below the kernel's ephemeral range (32768+): there, a client socket of any test
/// (or one in TIME_WAIT) can hold the port between this check and the server's bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 120) as u16 * 100;
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base - 20_000 + n % 12_000) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID this harness spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn stop_child(child: &mut Child) {
    signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(free_port(), Vec::new())
    }

    pub fn start_with(port: u16, extra: Vec<String>) -> Self {
        let mut s = RedisServer {
            child: None,
            port,
            extra,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(10), || port_open(port)),
            "redis-server did not start on {port}"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    /// Starts again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn freeze(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// Runs redis-cli against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), libc::SIGCONT);
        }
        self.kill();
    }
}

/// The `tollgate-echo` upstream.
pub struct Echo {
    child: Option<Child>,
    pub port: u16,
}

impl Echo {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let child = Command::new(echo_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tollgate-echo");
        assert!(
            wait_until(Duration::from_secs(10), || port_open(port)),
            "tollgate-echo did not start on {port}"
        );
        Echo {
            child: Some(child),
            port,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tollgate process with its own config directory, ports and logs.
pub struct Tollgate {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
}

/// A gateway config with `{LISTEN}`/`{ADMIN}` left for [`Tollgate::start`] to fill, the given
/// Redis section (or none) and one `echo` upstream.
pub fn config(redis: Option<&str>, echo: &str, extra_tiers: &str) -> String {
    let redis = redis
        .map(|url| format!("redis:\n  url: \"{url}\"\n  timeout_ms: 200\n"))
        .unwrap_or_default();
    format!(
        r#"listen: ["{{LISTEN}}"]
admin_listen: "{{ADMIN}}"
{redis}
upstreams:
  echo:
    peers: ["{echo}"]
    health_check: {{ interval: 200ms }}
    read_timeout: 2s
routes:
  - prefix: "/proxy/"
    upstream: echo
    strip_prefix: true
  - prefix: "/api/"
    upstream: echo
identity:
  header: "x-api-key"
  anonymous: {{ tier: anonymous }}
tiers:
  anonymous:
    limits: [{{ requests: 5, window: 60s }}]
  free:
    limits: [{{ requests: 60, window: 60s }}]
  internal:
    limits: []
{extra_tiers}
keys:
  - {{ id: alice, key: "free-demo-key", tier: free }}
  - {{ id: carol, key: "internal-demo-key", tier: internal }}
"#
    )
}

impl Tollgate {
    /// Starts tollgate with `yaml` (placeholders `{LISTEN}` and `{ADMIN}` are filled in) and
    /// waits until both listeners answer.
    pub fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_port = free_port();
        let t = Tollgate {
            child: None,
            dir,
            port,
            admin_port,
        };
        t.write_config(yaml);
        let pingora = format!(
            "---\nversion: 1\nthreads: 2\npid_file: {d}/tollgate.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n",
            d = t.dir.path().display()
        );
        std::fs::write(t.dir.path().join("pingora.yaml"), pingora).expect("write pingora.yaml");
        let mut t = t;
        t.spawn(false);
        t.wait_ready();
        t
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tollgate.yaml")
    }

    pub fn fill(&self, yaml: &str) -> String {
        yaml.replace("{LISTEN}", &format!("127.0.0.1:{}", self.port))
            .replace("{ADMIN}", &format!("127.0.0.1:{}", self.admin_port))
    }

    /// Writes the config atomically (temp file + rename), as editors and ConfigMaps do.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".tollgate.yaml.tmp");
        std::fs::write(&tmp, self.fill(yaml)).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("tollgate.{n}.log"))
    }

    /// Spawns a process (`upgrade`: take the sockets over from the running one).
    pub fn spawn(&mut self, upgrade: bool) -> u32 {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = std::fs::File::create(self.log_path(n)).expect("log file");
        let mut cmd = Command::new(TOLLGATE);
        cmd.arg("--config")
            .arg(self.config_path())
            .arg("-c")
            .arg(self.dir.path().join("pingora.yaml"))
            .env("RUST_LOG", "debug,pingora=info,h2=info,rustls=info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null());
        if upgrade {
            cmd.arg("-u");
        }
        let child = cmd.spawn().expect("spawn tollgate");
        let pid = child.id();
        if upgrade {
            // The old process keeps its Child handle alive in `retired` until dropped.
            let old = self.child.replace(child);
            if let Some(old) = old {
                RETIRED.with(|r| r.borrow_mut().push(old));
            }
        } else {
            self.child = Some(child);
        }
        pid
    }

    pub fn wait_ready(&self) {
        let (p, a) = (self.port, self.admin_port);
        let ok = wait_until(Duration::from_secs(20), || {
            port_open(p) && http_get(a, "/healthz").is_some_and(|(s, _)| s == 200)
        });
        assert!(ok, "tollgate did not become ready; logs:\n{}", self.logs());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Everything every process of this instance wrote (access log and error log).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(d) = std::fs::read_dir(self.dir.path()) {
            let mut files: Vec<_> = d
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            files.sort();
            for f in files {
                out.push_str(&std::fs::read_to_string(f).unwrap_or_default());
            }
        }
        out
    }

    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The value of one sample line (`name{labels}` exactly as exposed), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    pub fn is_alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the process to exit; returns whether it did within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

thread_local! {
    static RETIRED: std::cell::RefCell<Vec<Child>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
        RETIRED.with(|r| {
            for mut c in r.borrow_mut().drain(..) {
                stop_child(&mut c);
            }
        });
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body). None on any I/O failure.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A blocking reqwest client that never follows redirects and never pools across tests.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A parsed raw HTTP/1.x response: status, headers (names lower-cased, in order) and the bytes
/// after the head.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` verbatim over a fresh connection and reads until the server closes it or
/// `timeout` passes without data. Returns everything read (possibly nothing), or None when the
/// connection could not be made or the write failed before anything was sent.
pub fn raw_exchange(port: u16, request: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    // The server may answer and close before taking the whole request: a failed write is an
    // outcome to look at, not an error.
    let _ = s.write_all(request);
    let _ = s.flush();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break, // timeout or reset: what was read so far is the answer
        }
    }
    Some(buf)
}

/// Parses the head of a raw HTTP/1.x response; None when `bytes` do not start with one.
pub fn parse_response(bytes: &[u8]) -> Option<RawResponse> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(RawResponse {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    })
}

/// One raw request over a fresh connection (send `Connection: close` in it), parsed.
pub fn raw_request(port: u16, request: &[u8]) -> Option<RawResponse> {
    parse_response(&raw_exchange(port, request, Duration::from_secs(10))?)
}

/// The resident set size of process `pid` in bytes (VmRSS of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Starts a `tollgate-echo` that names itself `name` in an `x-echo-name` response header.
pub fn echo_named(name: &str) -> Echo {
    let port = free_port();
    let child = Command::new(echo_bin())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tollgate-echo");
    // Own the child before waiting, so that a failed start still kills it.
    let echo = Echo {
        child: Some(child),
        port,
    };
    assert!(
        wait_until(Duration::from_secs(10), || port_open(port)),
        "tollgate-echo did not start on {port}"
    );
    echo
}

pub mod load;

pub mod cluster;
