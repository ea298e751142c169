//! A load generator for the resilience, upgrade and hostile-input tests, on the raw client of
//! [`super::http`]: every request's status and latency is recorded, connections are reused on
//! purpose (keep-alive) or not, and nothing is retried behind the test's back except the one
//! case any HTTP client retries: a reused idle connection the server closed before a single
//! byte of the answer (RFC 9112 §9.3.1), which is counted separately.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{Conn, ReqError, Response};

/// One request of a load run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it started, from the start of the run.
    pub at: Duration,
    pub took: Duration,
    /// 0: no answer (see `err`).
    pub status: u16,
    pub err: Option<String>,
    /// Sent on a connection that had served requests before.
    pub reused: bool,
    /// A stale keep-alive connection was replaced and the request sent again.
    pub retried: bool,
    /// Which worker sent it.
    pub worker: usize,
}

#[derive(Clone)]
pub struct LoadSpec {
    pub port: u16,
    pub workers: usize,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Requests per connection before a new one is opened (1 = a new connection each time).
    pub per_conn: usize,
    /// Pause between two requests of one worker.
    pub pause: Duration,
    pub read_timeout: Duration,
}

impl LoadSpec {
    pub fn new(port: u16, path: &str, key: &str) -> Self {
        LoadSpec {
            port,
            workers: 3,
            path: path.to_string(),
            headers: vec![("x-api-key".to_string(), key.to_string())],
            per_conn: 20,
            pause: Duration::from_millis(5),
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// A running load: stop it to collect the samples.
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Sample>>>,
    pub started: Instant,
}

pub fn start_load(spec: LoadSpec) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles = (0..spec.workers)
        .map(|w| {
            let stop = stop.clone();
            let spec = spec.clone();
            // Workers alternate: even ones reuse connections, odd ones open one per request
            // when per_conn > 1, so both paths are always exercised.
            let per_conn = if w % 2 == 1 && spec.per_conn > 1 {
                1
            } else {
                spec.per_conn
            };
            std::thread::spawn(move || worker(w, &spec, per_conn, &stop, started))
        })
        .collect();
    Load {
        stop,
        handles,
        started,
    }
}

fn worker(
    w: usize,
    spec: &LoadSpec,
    per_conn: usize,
    stop: &AtomicBool,
    started: Instant,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let mut retried = false;
        let mut reused = false;
        let mut result: Result<Response, String> = Err("not sent".into());
        for attempt in 0..2 {
            if conn.as_ref().is_none_or(|c| c.closed || c.used >= per_conn) {
                conn = match Conn::connect(spec.port, spec.read_timeout) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        result = Err(format!("connect: {e}"));
                        break;
                    }
                };
            }
            let Some(c) = conn.as_mut() else { break };
            reused = c.used > 0;
            let last = c.used + 1 >= per_conn;
            match c.get(&spec.path, &spec.headers, last) {
                Ok(r) => {
                    result = Ok(r);
                    break;
                }
                Err(ReqError::Stale(e)) if attempt == 0 => {
                    retried = true;
                    conn = None;
                    result = Err(format!("stale: {e}"));
                }
                Err(ReqError::Stale(e)) => {
                    result = Err(format!("stale twice: {e}"));
                    conn = None;
                }
                Err(ReqError::Failed(e)) => {
                    result = Err(e);
                    conn = None;
                    break;
                }
            }
        }
        let took = t0.elapsed();
        let (status, err) = match result {
            Ok(r) => (r.status, None),
            Err(e) => (0, Some(e)),
        };
        out.push(Sample {
            at: t0 - started,
            took,
            status,
            err,
            reused,
            retried,
            worker: w,
        });
        if !spec.pause.is_zero() {
            std::thread::sleep(spec.pause);
        }
    }
    out
}

impl Load {
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Sample> = self
            .handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|s| s.at);
        all
    }
}

/// `status → count`, for messages.
pub fn status_counts(samples: &[Sample]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in samples {
        *m.entry(s.status).or_insert(0) += 1;
    }
    m
}

pub fn max_latency(samples: &[Sample]) -> Duration {
    samples.iter().map(|s| s.took).max().unwrap_or_default()
}
