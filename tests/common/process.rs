//! Process guards: [`RedisServer`], [`Echo`] and [`Tollgate`] each start a real process on free
//! loopback ports, wait (with a timeout) until it answers, and stop it by PID when dropped,
//! even when the test panics or the start itself fails. Every child is owned by a
//! [`ChildGuard`] from the instant it is spawned.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::echo_bin::echo_bin;
use super::http::http_get;
use super::metrics::metric_value;
use super::net::{free_port, port_open, wait_until};

pub const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID this harness spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Owns one child process: dropping it (or [`ChildGuard::kill`]) sends SIGCONT and SIGKILL by
/// PID and reaps the child, so no test leaves a process behind, a stopped one included.
#[derive(Default)]
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Spawns `cmd`, panicking with `what` when it cannot be started.
    pub fn spawn(cmd: &mut Command, what: &str) -> ChildGuard {
        ChildGuard(Some(
            cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}")),
        ))
    }

    /// 0 once the child is gone.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the child still runs (it may have exited on its own).
    pub fn is_alive(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the child to exit; returns whether it did within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(c) = self.0.as_mut() else {
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

    /// SIGKILL (after SIGCONT, in case it was frozen) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            signal(c.id(), libc::SIGCONT);
            signal(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
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

/// Starts `cmd` and waits (10 s at most) until `port` accepts connections. The guard owns the
/// child before the wait, so a failed start kills it too.
fn start_listening(cmd: &mut Command, what: &str, port: u16) -> ChildGuard {
    let child = ChildGuard::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::null()), what);
    assert!(
        wait_until(Duration::from_secs(10), || port_open(port)),
        "{what} did not start on {port}"
    );
    child
}

pub struct RedisServer {
    child: ChildGuard,
    pub port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(free_port(), Vec::new())
    }

    pub fn start_with(port: u16, extra: Vec<String>) -> Self {
        let mut s = RedisServer {
            child: ChildGuard::default(),
            port,
            extra,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .args(&self.extra);
        self.child = start_listening(
            &mut cmd,
            "redis-server (scripts/test.sh installs it)",
            self.port,
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.child.kill();
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

/// The `tollgate-echo` upstream.
pub struct Echo {
    child: ChildGuard,
    pub port: u16,
}

impl Echo {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        Self::launch(port, &[])
    }

    /// An echo that names itself `name` in an `x-echo-name` response header.
    pub fn named(name: &str) -> Self {
        Self::launch(free_port(), &["--name", name])
    }

    fn launch(port: u16, extra: &[&str]) -> Self {
        let mut cmd = Command::new(echo_bin());
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra);
        Echo {
            child: start_listening(&mut cmd, "tollgate-echo", port),
            port,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }
}

/// A tollgate process with its own config directory, ports and logs.
pub struct Tollgate {
    child: ChildGuard,
    /// Processes replaced by a graceful upgrade; killed with this one.
    retired: Vec<ChildGuard>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    /// Extra environment for every process spawned.
    pub env: Vec<(String, String)>,
}

impl Tollgate {
    /// Starts tollgate with `yaml` (placeholders `{LISTEN}` and `{ADMIN}` are filled in) and
    /// waits until both listeners answer.
    pub fn start(yaml: &str) -> Self {
        Self::start_with_env(yaml, &[])
    }

    /// [`Tollgate::start`] with extra environment variables.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(yaml, env, &[])
    }

    /// [`Tollgate::start`] with `files` (name, contents) written into its folder first, such
    /// as a `keys_file`.
    pub fn start_with_files(yaml: &str, files: &[(&str, &str)]) -> Self {
        Self::launch(yaml, &[], files)
    }

    fn launch(yaml: &str, env: &[(&str, &str)], files: &[(&str, &str)]) -> Self {
        let mut t = Tollgate {
            child: ChildGuard::default(),
            retired: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            admin_port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for (name, contents) in files {
            std::fs::write(t.dir.path().join(name), contents).expect("write a file");
        }
        t.write_config(yaml);
        let pingora = format!(
            "---\nversion: 1\nthreads: 2\npid_file: {d}/tollgate.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n",
            d = t.dir.path().display()
        );
        std::fs::write(t.dir.path().join("pingora.yaml"), pingora).expect("write pingora.yaml");
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if upgrade {
            cmd.arg("-u");
        }
        let child = ChildGuard::spawn(&mut cmd, "tollgate");
        let pid = child.pid();
        let old = std::mem::replace(&mut self.child, child);
        if upgrade && old.is_running() {
            // The old process drains on its own; it is killed with this guard at the latest.
            self.retired.push(old);
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
        self.child.pid()
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
        self.child.is_alive()
    }

    /// Waits for the process to exit; returns whether it did within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        self.child.wait_exit(timeout)
    }
}

/// Owns a process that is not a child of the test (a daemon): dropping it sends SIGKILL by PID
/// and waits (5 s at most) until the process is gone.
pub struct PidGuard(pub i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        signal(self.0 as u32, libc::SIGKILL);
        let proc_dir = PathBuf::from(format!("/proc/{}", self.0));
        wait_until(Duration::from_secs(5), || !proc_dir.exists());
    }
}
