//! A raw HTTP/1.1 client and a load generator for the resilience, upgrade and hostile-input
//! tests: every request's status and latency is recorded, connections are reused on purpose
//! (keep-alive) or not, and nothing is retried behind the test's back except the one case any
//! HTTP client retries: a reused idle connection the server closed before a single byte of the
//! answer (RFC 9112 §9.3.1), which is counted separately.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server asked to close the connection (or the body was close-delimited).
    pub close: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug)]
pub enum ReqError {
    /// The connection was reused and the server closed it before answering anything.
    Stale(std::io::Error),
    /// Anything else: refused, reset mid-answer, timed out, malformed answer.
    Failed(String),
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    pub used: usize,
    pub closed: bool,
}

impl Conn {
    pub fn connect(port: u16, read_timeout: Duration) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(read_timeout))?;
        s.set_write_timeout(Some(read_timeout))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s),
            used: 0,
            closed: false,
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Sends a GET and reads its answer. `close`: ask the server to close afterwards.
    pub fn get(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        close: bool,
    ) -> Result<Resp, ReqError> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if close {
            req.push_str("Connection: close\r\n");
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes())
    }

    /// Writes `bytes` as they are and reads one answer.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<Resp, ReqError> {
        let reused = self.used > 0;
        self.used += 1;
        if let Err(e) = self.stream().write_all(bytes) {
            self.closed = true;
            return Err(if reused {
                ReqError::Stale(e)
            } else {
                ReqError::Failed(format!("write: {e}"))
            });
        }
        let r = read_response(&mut self.reader);
        match r {
            Ok(resp) => {
                self.closed = resp.close;
                Ok(resp)
            }
            Err((e, got_any)) => {
                self.closed = true;
                if reused && !got_any {
                    Err(ReqError::Stale(e))
                } else {
                    Err(ReqError::Failed(format!(
                        "read: {e} (got bytes: {got_any})"
                    )))
                }
            }
        }
    }
}

/// Reads one response. On error, says whether any byte of it had arrived.
pub fn read_response(r: &mut BufReader<TcpStream>) -> Result<Resp, (std::io::Error, bool)> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => {
            return Err((
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before answer"),
                false,
            ))
        }
        Ok(_) => {}
        Err(e) => return Err((e, false)),
    }
    let bad = |m: &str| {
        (
            std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string()),
            true,
        )
    };
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        let n = r.read_line(&mut h).map_err(|e| (e, true))?;
        if n == 0 {
            return Err(bad("eof in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body).map_err(|e| (e, true))?;
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(|e| (e, true))?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).map_err(|e| (e, true))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if status >= 200 && status != 204 && status != 304 {
        r.read_to_end(&mut body).map_err(|e| (e, true))?;
        close = true;
    }
    Ok(Resp {
        status,
        headers,
        body,
        close,
    })
}

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
        let mut result: Result<Resp, String> = Err("not sent".into());
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

/// Resident set size of a process in KiB (Linux /proc), 0 when unknown.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Whether `buf` holds one complete response with a Content-Length (or no body).
fn complete_response(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(n) => buf.len() >= end + 4 + n,
        None => false,
    }
}

/// Writes `bytes` on a fresh connection and returns everything the server sent back before
/// closing, completing one Content-Length response, or going quiet for `wait`.
pub fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(wait))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if complete_response(&out) {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) if !out.is_empty() => {
                let _ = e;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The status code of a raw answer, if it starts with an HTTP status line.
pub fn raw_status(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next()?;
    if !line.starts_with("HTTP/1.") {
        return None;
    }
    line.split(' ').nth(1)?.parse().ok()
}

/// Sums every sample of metric `name` whose labels include all of `labels` (order-insensitive).
/// `name` is matched exactly (so `x_count` does not match `x_count_total`).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if ok {
                value.trim().parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// A free port below the kernel's ephemeral range (32768+), for a server that will be killed and
/// restarted on the same port, or for a port nothing listens on that a client keeps dialling:
/// an ephemeral port there could be taken by an outgoing connection (even a TCP self-connect to
/// the dialled port) and the restart would fail with EADDRINUSE.
pub fn free_low_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // 10000-19999: apart from `free_port`'s 20000-31999.
    let base = 10_000 + (std::process::id() % 100) as u16 * 100;
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = base + (n % 100);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 32768");
}
