//! A real Redis Cluster for tests: three masters and three replicas on free loopback ports.
//!
//! [`RedisCluster::start`] spawns six `redis-server --cluster-enabled yes` processes, joins them
//! with `redis-cli --cluster create ... --cluster-replicas 1`, and waits (bounded) until every node
//! reports `cluster_state:ok` and agrees on the masters. The helpers read the topology from the
//! nodes themselves (`CLUSTER NODES`, `CLUSTER KEYSLOT`), so a test can place a hash tag on a chosen
//! master, kill that master (SIGKILL by PID) and wait for its replica to take over, or move one
//! slot to another master with the `SETSLOT IMPORTING/MIGRATING` + `MIGRATE` + `SETSLOT NODE` dance.
//! Every process is stopped by PID when the cluster is dropped, even when the test panics.
//!
//! Every `redis-cli` call runs under `timeout(1)`, so a hung node cannot hang a test.

mod nodes;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::net::{port_open, wait_until};
pub use nodes::{cli, ClusterNode, NodeInfo};
use nodes::{parse_nodes, spawn_node};

pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Three masters, one replica each, all slots assigned, every node `cluster_state:ok`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (0..6).map(|_| spawn_node(dir.path())).collect();
        let cluster = RedisCluster { nodes, dir };
        for n in &cluster.nodes {
            let p = n.port;
            assert!(
                wait_until(Duration::from_secs(10), || port_open(p)
                    && cli(p, &["PING"]) == "PONG"),
                "cluster node {p} did not start"
            );
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("timeout")
            .arg("60")
            .arg("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_stable(Duration::from_secs(60));
        cluster
    }

    /// Waits until every live node says `cluster_state:ok`, all agree on the live masters (at
    /// least three) that cover the 16384 slots, and every live replica's link to its master is up (a replica that
    /// never synced could not take over). Panics after `timeout`.
    pub fn wait_stable(&self, timeout: Duration) {
        let ok = wait_until(timeout, || self.is_stable());
        assert!(
            ok,
            "cluster did not become stable within {timeout:?} ({:?}):\n{}",
            self.unstable_reason(),
            self.describe()
        );
    }

    pub fn is_stable(&self) -> bool {
        self.unstable_reason().is_none()
    }

    /// Why the cluster is not stable yet (None: it is).
    pub fn unstable_reason(&self) -> Option<String> {
        let live: Vec<u16> = self.live_ports();
        let mut views = Vec::new();
        for &p in &live {
            let info = cli(p, &["CLUSTER", "INFO"]);
            if !info.contains("cluster_state:ok") {
                return Some(format!(
                    "{p}: {}",
                    info.lines().next().unwrap_or("no answer")
                ));
            }
            let nodes = parse_nodes(&cli(p, &["CLUSTER", "NODES"]));
            let mut masters: Vec<(u16, Vec<(u16, u16)>)> = nodes
                .iter()
                .filter(|n| n.master && !n.failed && !n.slots.is_empty())
                .map(|n| (n.port, n.slots.clone()))
                .collect();
            masters.sort();
            let covered: u32 = masters
                .iter()
                .flat_map(|(_, s)| s.iter())
                .map(|&(a, b)| u32::from(b - a) + 1)
                .sum();
            if masters.len() < 3
                || covered != 16384
                || masters.iter().any(|(p, _)| !live.contains(p))
            {
                return Some(format!(
                    "{p} sees masters {masters:?} covering {covered} slots"
                ));
            }
            let repl = cli(p, &["INFO", "replication"]);
            if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                return Some(format!("{p}: replication link down"));
            }
            views.push((p, masters));
        }
        views
            .windows(2)
            .find(|w| w[0].1 != w[1].1)
            .map(|w| format!("{} sees {:?}, {} sees {:?}", w[0].0, w[0].1, w[1].0, w[1].1))
    }

    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .map(|n| n.port)
            .collect()
    }

    /// `redis://` URLs of every live node (what `redis.cluster` lists).
    pub fn urls(&self) -> Vec<String> {
        self.live_ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The topology as one live node sees it.
    pub fn topology(&self) -> Vec<NodeInfo> {
        for p in self.live_ports() {
            let nodes = parse_nodes(&cli(p, &["CLUSTER", "NODES"]));
            if !nodes.is_empty() {
                return nodes;
            }
        }
        panic!("no live cluster node answers CLUSTER NODES");
    }

    /// Ports of the current masters that own slots, sorted.
    pub fn master_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .topology()
            .iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn master_urls(&self) -> Vec<String> {
        self.master_ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    pub fn node_id(&self, port: u16) -> String {
        cli(port, &["CLUSTER", "MYID"])
    }

    /// The slot of `key` (hash tags honoured), asked of the cluster itself.
    pub fn keyslot(&self, key: &str) -> u16 {
        let p = self.live_ports()[0];
        let s = cli(p, &["CLUSTER", "KEYSLOT", key]);
        s.parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key} answered {s:?}"))
    }

    /// The port of the master that owns `slot`, according to `CLUSTER NODES`, cross-checked
    /// with `CLUSTER SLOTS`.
    pub fn master_of(&self, slot: u16) -> u16 {
        let from_nodes = self
            .topology()
            .into_iter()
            .find(|n| n.master && !n.failed && n.owns(slot))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master owns slot {slot}:\n{}", self.describe()));
        let from_slots = self.slots_owner(slot);
        assert_eq!(
            Some(from_nodes),
            from_slots,
            "CLUSTER NODES and CLUSTER SLOTS disagree on slot {slot}"
        );
        from_nodes
    }

    /// The owner of `slot` according to `CLUSTER SLOTS` (RESP printed by redis-cli, one value a
    /// line: start, end, then host, port, id per node, master first).
    fn slots_owner(&self, slot: u16) -> Option<u16> {
        let p = self.live_ports()[0];
        let text = cli(p, &["CLUSTER", "SLOTS"]);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(a), Ok(b)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if lines[i + 2].contains('.') || lines[i + 2] == "localhost" {
                    if a <= slot && slot <= b {
                        return lines[i + 3].parse().ok();
                    }
                    i += 4;
                    continue;
                }
            }
            i += 1;
        }
        None
    }

    /// The port of a live replica of the master on `master_port`.
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let topo = self.topology();
        let id = topo
            .iter()
            .find(|n| n.port == master_port)
            .map(|n| n.id.clone())
            .expect("master in topology");
        topo.iter()
            .find(|n| n.master_id.as_deref() == Some(id.as_str()) && !n.failed)
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("master {master_port} has no replica:\n{}", self.describe()))
    }

    /// SIGKILLs the master that owns `slot` (a crash: no failover handshake) and returns its port.
    pub fn kill_master_of(&mut self, slot: u16) -> u16 {
        let port = self.master_of(slot);
        self.kill_port(port);
        port
    }

    pub fn kill_port(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("node of this cluster")
            .kill();
    }

    /// Waits until `slot` is served by a live master other than `old_port` and the cluster is
    /// stable again; returns the new master's port.
    pub fn wait_failover(&self, slot: u16, old_port: u16, timeout: Duration) -> u16 {
        let start = Instant::now();
        let ok = wait_until(timeout, || {
            self.is_stable() && self.master_of(slot) != old_port
        });
        assert!(
            ok,
            "slot {slot} did not fail over from {old_port} within {timeout:?} ({:?}):\n{}",
            self.unstable_reason(),
            self.describe()
        );
        let new = self.master_of(slot);
        eprintln!(
            "failover of slot {slot}: {old_port} -> {new} in {:?}",
            start.elapsed()
        );
        new
    }

    /// Adds an empty master (no slots, no replica) with `redis-cli --cluster add-node` and waits
    /// until every node knows it; returns its port. Move slots to it with [`Self::reshard_slot`].
    pub fn add_master(&mut self) -> u16 {
        let node = spawn_node(self.dir.path());
        let port = node.port;
        self.nodes.push(node);
        assert!(
            wait_until(Duration::from_secs(10), || cli(port, &["PING"]) == "PONG"),
            "new node {port} did not start"
        );
        let seed = self.master_ports()[0];
        let out = Command::new("timeout")
            .arg("60")
            .arg("redis-cli")
            .args(["--cluster", "add-node"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("127.0.0.1:{seed}"))
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster add-node");
        assert!(
            out.status.success(),
            "add-node failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let id = self.node_id(port);
        let ok = wait_until(Duration::from_secs(30), || {
            self.live_ports().iter().all(|&p| {
                parse_nodes(&cli(p, &["CLUSTER", "NODES"]))
                    .iter()
                    .any(|n| n.id == id && n.master && !n.failed)
            }) && self.is_stable()
        });
        assert!(
            ok,
            "new master {port} not known to all:\n{}",
            self.describe()
        );
        port
    }

    /// Moves `slot` from the master on `from` to the master on `to`: SETSLOT IMPORTING on the
    /// target, MIGRATING on the source, MIGRATE of every key in batches, then SETSLOT NODE on
    /// both and on every other master. `pause` is slept after each phase, so load running
    /// meanwhile meets the MIGRATING (ASK) state and the final MOVED.
    pub fn reshard_slot(&self, slot: u16, from: u16, to: u16, pause: Duration) {
        let slot_s = slot.to_string();
        let from_id = self.node_id(from);
        let to_id = self.node_id(to);
        let ok = |r: String, what: &str| assert_eq!(r, "OK", "{what} answered {r:?}");
        ok(
            cli(to, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id]),
            "SETSLOT IMPORTING",
        );
        ok(
            cli(from, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id]),
            "SETSLOT MIGRATING",
        );
        std::thread::sleep(pause);
        let to_s = to.to_string();
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<&str> = keys
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            let r = cli(from, &args);
            assert!(r == "OK" || r == "NOKEY", "MIGRATE answered {r:?}");
        }
        std::thread::sleep(pause);
        ok(
            cli(to, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]),
            "SETSLOT NODE (target)",
        );
        ok(
            cli(from, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]),
            "SETSLOT NODE (source)",
        );
        for m in self.master_ports() {
            if m != from && m != to {
                let _ = cli(m, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]);
            }
        }
        let ok = wait_until(Duration::from_secs(30), || {
            self.is_stable() && self.master_of(slot) == to
        });
        assert!(
            ok,
            "slot {slot} did not settle on {to}:\n{}",
            self.describe()
        );
    }

    /// `CLUSTER NODES` and the log tail of every live node, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for p in self.live_ports() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("redis-{p}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(6)..].join("\n");
            s.push_str(&format!(
                "--- {p}: {}\n{}\n{tail}\n",
                cli(p, &["CLUSTER", "INFO"]).lines().next().unwrap_or(""),
                cli(p, &["CLUSTER", "NODES"])
            ));
        }
        s
    }

    /// Groups candidate strings by the master that owns the slot of `key_of(candidate)`:
    /// returns, for each current master port, the first `per_master` candidates that land there.
    pub fn spread<F>(&self, per_master: usize, key_of: F) -> HashMap<u16, Vec<String>>
    where
        F: Fn(&str) -> (String, String),
    {
        let masters = self.master_ports();
        let topo = self.topology();
        let mut out: HashMap<u16, Vec<String>> = masters.iter().map(|&m| (m, Vec::new())).collect();
        for i in 0..10_000 {
            if out.values().all(|v| v.len() >= per_master) {
                break;
            }
            let (candidate, key) = key_of(&i.to_string());
            let slot = self.keyslot(&key);
            let owner = topo
                .iter()
                .find(|n| n.master && n.owns(slot))
                .map(|n| n.port)
                .expect("every slot has a master");
            let v = out.get_mut(&owner).expect("owner is a master");
            if v.len() < per_master {
                v.push(candidate);
            }
        }
        assert!(
            out.values().all(|v| v.len() >= per_master),
            "could not spread candidates over the masters"
        );
        out
    }

    /// The directory holding the nodes' config files (for logs in failure messages).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// How many admissions a sliding_log key holds on the node at `port` (the ring's non-empty
/// slots; the layout is in `scripts/redis/sliding_log.lua`), as `redis-cli` prints it.
pub fn sliding_log_entries(port: u16, key: &str) -> String {
    const COUNT: &str = "local s = redis.call('GET', KEYS[1]) if not s then return 0 end \
        local _, _, _, _, _, _, w = struct.unpack('<I8I8I8I3I3I3I1', s) \
        local f = w == 4 and '<I4' or '<I8' local c = 0 \
        for p = 35, #s, w do if struct.unpack(f, s, p) ~= 0 then c = c + 1 end end return c";
    cli(port, &["EVAL", COUNT, "1", key])
}
