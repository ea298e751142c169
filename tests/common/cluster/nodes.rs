//! One node of the test cluster: spawning a cluster-enabled `redis-server` on a port whose bus
//! port is free too, `redis-cli` bounded by `timeout(1)`, and `CLUSTER NODES` parsed.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use super::super::net::free_port;
use super::super::process::ChildGuard;

/// Seconds one `redis-cli` invocation may take.
const CLI_TIMEOUT_S: &str = "10";

pub struct ClusterNode {
    pub port: u16,
    child: ChildGuard,
}

impl ClusterNode {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn alive(&self) -> bool {
        self.child.is_running()
    }

    pub(super) fn kill(&mut self) {
        self.child.kill();
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// Inclusive slot ranges (migrating/importing markers are skipped).
    pub slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Runs `redis-cli -p port args...` (bounded by `timeout`) and returns trimmed stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg(CLI_TIMEOUT_S)
        .arg("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli (via timeout) must be installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A free port `p` whose cluster bus port `p + 10000` is free too.
fn cluster_port() -> u16 {
    for _ in 0..1000 {
        let p = free_port();
        if TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

fn log_file(dir: &std::path::Path, port: u16) -> Stdio {
    std::fs::File::create(dir.join(format!("redis-{port}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

pub(super) fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // 127.0.0.1:7000@17000
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = f[2];
            let master = flags.split(',').any(|x| x == "master");
            let failed = flags.split(',').any(|x| x == "fail" || x == "noaddr");
            let master_id = (f[3] != "-").then(|| f[3].to_string());
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(NodeInfo {
                id: f[0].to_string(),
                port,
                master,
                failed,
                master_id,
                slots,
            })
        })
        .collect()
}

/// Starts one empty cluster-enabled `redis-server`.
pub(super) fn spawn_node(dir: &std::path::Path) -> ClusterNode {
    let port = cluster_port();
    let conf = dir.join(format!("nodes-{port}.conf"));
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        conf.to_str().expect("utf-8 tempdir"),
        "--cluster-node-timeout",
        "1000",
        "--save",
        "",
        "--appendonly",
        "no",
        // Redis 7 waits 5 s before a diskless full sync (to batch replicas); a replica
        // that never synced refuses to fail over.
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        dir.to_str().expect("utf-8 tempdir"),
    ])
    .stdout(log_file(dir, port))
    .stderr(Stdio::null());
    ClusterNode {
        port,
        child: ChildGuard::spawn(&mut cmd, "redis-server (scripts/test.sh installs it)"),
    }
}
