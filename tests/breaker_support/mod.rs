//! Helpers of `tests/breaker.rs`: 32 keep-alive clients that record every answer (status,
//! latency, and whether the store decided it: only a store or in-process verdict carries the
//! RateLimit headers, a fail-open admission does not), a monitor that samples
//! `tollgate_breaker_state` every 10 ms, and the gateway config these tests share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{http_get, metric_value};
use crate::common::{metric_sum, Conn};

pub const TIMEOUT_MS: u64 = 50;

/// A gateway on `redis` (a `url:` or `cluster:` line) with `timeout_ms: 50`, the default
/// breaker unless `extra` says otherwise, and the keys these tests use: `load-key` (never
/// limited in practice), `exact-0..7` and `fresh-0..31` (20 a minute each).
pub fn yaml(redis: &str, echo: &str, on_error: &str, extra: &str) -> String {
    let mut keys = String::from("  - { id: loader, key: \"load-key\", tier: load }\n");
    for name in (0..8)
        .map(|i| format!("exact-{i}"))
        .chain((0..32).map(|i| format!("fresh-{i}")))
    {
        keys.push_str(&format!(
            "  - {{ id: {name}, key: \"{name}\", tier: exact }}\n"
        ));
    }
    format!(
        r#"listen: ["{{LISTEN}}"]
admin_listen: "{{ADMIN}}"
redis:
  {redis}
  timeout_ms: {TIMEOUT_MS}
  on_error: {on_error}
{extra}
upstreams:
  echo:
    peers: ["{echo}"]
    health_check: {{ interval: 200ms }}
    read_timeout: 5s
routes:
  - prefix: "/api/"
    upstream: echo
identity:
  header: "x-api-key"
  anonymous: {{ tier: anonymous }}
tiers:
  anonymous:
    limits: [{{ requests: 5, window: 60s }}]
  load:
    limits: [{{ requests: 100000000, window: 60s, algorithm: fixed_window }}]
  exact:
    limits: [{{ requests: 20, window: 60s }}]
keys:
{keys}"#
    )
}

/// One answer of a client.
#[derive(Debug, Clone)]
pub struct Shot {
    /// When it was sent, from the start of the run.
    pub at: Duration,
    pub took: Duration,
    /// 0: no HTTP answer.
    pub status: u16,
    /// Carried RateLimit headers: the store (or the in-process fallback) decided it.
    pub decided: bool,
    pub key: String,
}

impl Shot {
    pub fn overlaps(&self, from: Duration, to: Duration) -> bool {
        self.at < to && self.at + self.took > from
    }
}

/// One GET of `/api/x` with `key` on `conn` (reconnecting when needed).
pub fn shoot(port: u16, conn: &mut Option<Conn>, key: &str, started: Instant) -> Shot {
    let t0 = Instant::now();
    let headers = [("x-api-key".to_string(), key.to_string())];
    let mut answer = None;
    for _ in 0..2 {
        if conn.as_ref().is_none_or(|c| c.closed) {
            *conn = Conn::connect(port, Duration::from_secs(5)).ok();
        }
        let Some(c) = conn.as_mut() else { break };
        match c.get("/api/x", &headers, false) {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(_) => *conn = None,
        }
    }
    Shot {
        at: t0 - started,
        took: t0.elapsed(),
        status: answer.as_ref().map_or(0, |r| r.status),
        decided: answer
            .as_ref()
            .is_some_and(|r| r.header("x-ratelimit-limit").is_some()),
        key: key.to_string(),
    }
}

/// Clients running until stopped: one thread per `(key, pause between requests)`.
pub struct Clients {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Shot>>>,
    pub started: Instant,
}

impl Clients {
    pub fn start(port: u16, plan: Vec<(String, Duration)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let handles = plan
            .into_iter()
            .map(|(key, pause)| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut conn = None;
                    let mut shots = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        shots.push(shoot(port, &mut conn, &key, started));
                        std::thread::sleep(pause);
                    }
                    shots
                })
            })
            .collect();
        Clients {
            stop,
            handles,
            started,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stop(self) -> Vec<Shot> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Shot> = self
            .handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|s| s.at);
        all
    }
}

/// One sample of the monitor.
#[derive(Debug, Clone, Copy)]
pub struct Sampled {
    pub at: Duration,
    pub state: i64,
    /// `tollgate_store_duration_seconds_count{op="check"}`: store calls made so far.
    pub checks: f64,
}

/// Samples `tollgate_breaker_state` and the store call count every 10 ms, on the clients' clock.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<Sampled>>>,
    handle: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn start(admin_port: u16, started: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Sampled>>> = Arc::default();
        let (s, v) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let asked = started.elapsed();
                if let Some((200, body)) = http_get(admin_port, "/metrics") {
                    let state = metric_value(&body, "tollgate_breaker_state") as i64;
                    let checks = metric_sum(
                        &body,
                        "tollgate_store_duration_seconds_count",
                        &[("op", "check")],
                    );
                    v.lock().unwrap_or_else(|p| p.into_inner()).push(Sampled {
                        at: asked,
                        state,
                        checks,
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Monitor {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// The first sample at or after `after` in `state`.
    pub fn first(&self, after: Duration, state: i64) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter()
            .find(|s| s.at >= after && s.state == state)
            .map(|s| s.at)
    }

    /// Waits (bounded) until a sample at or after `after` shows `state`.
    pub fn wait_for(&self, after: Duration, state: i64, timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(at) = self.first(after, state) {
                return Some(at);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.first(after, state)
    }

    pub fn states(&self) -> Vec<i64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().map(|s| s.state).collect()
    }

    /// Store calls made between the samples nearest to `from` and `to`.
    pub fn checks_between(&self, from: Duration, to: Duration) -> f64 {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let at = |t: Duration| {
            seen.iter()
                .rev()
                .find(|s| s.at <= t)
                .map_or(0.0, |s| s.checks)
        };
        at(to) - at(from)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The `q` quantile (0..=1) of the latencies, and how many there were.
pub fn quantile(shots: &[&Shot], q: f64) -> Duration {
    let mut took: Vec<Duration> = shots.iter().map(|s| s.took).collect();
    took.sort_unstable();
    if took.is_empty() {
        return Duration::ZERO;
    }
    let i = ((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1;
    took[i]
}

pub fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
