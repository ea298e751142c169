//! A raw-TCP upstream that records what it receives: it parses requests strictly (one framing
//! per request, CRLF line endings), answers each complete one with `200 ok`, and keeps them
//! for the test to inspect. A request it cannot frame is recorded as incomplete and ends the
//! connection. Not a mock of tollgate: it stands where a real upstream would.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the upstream parsed it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub head: String,
    pub body: Vec<u8>,
    pub complete: bool,
}

/// The raw-TCP upstream.
pub struct Recorder {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        // Port 0: the kernel picks a free one and the listener holds it (no race with a probe).
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let seen = seen2.clone();
                std::thread::spawn(move || serve(conn, &seen));
            }
        });
        Recorder {
            port,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Reads requests off one upstream connection until it closes or stalls (10 s).
fn serve(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match parse_request(&buf) {
            Parsed::Complete(req, used) => {
                buf.drain(..used);
                seen.lock().expect("lock").push(req);
                if conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Parsed::Invalid(req) => {
                seen.lock().expect("lock").push(req);
                return;
            }
            Parsed::Partial => {}
        }
        match conn.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                if let Some(req) = partial_head(&buf) {
                    seen.lock().expect("lock").push(req);
                }
                return;
            }
        }
    }
}

enum Parsed {
    Complete(Seen, usize),
    Partial,
    Invalid(Seen),
}

fn partial_head(buf: &[u8]) -> Option<Seen> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    Some(Seen {
        line: head.lines().next().unwrap_or_default().to_string(),
        head,
        body: buf[end + 4..].to_vec(),
        complete: false,
    })
}

/// Strict parsing: a request with both framings, or with a malformed one, is Invalid.
fn parse_request(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Partial;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut req = Seen {
        line: head.split("\r\n").next().unwrap_or_default().to_string(),
        head: head.clone(),
        body: Vec::new(),
        complete: false,
    };
    let header = |name: &str| -> Vec<String> {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    let te = header("transfer-encoding");
    let cl = header("content-length");
    let rest = &buf[end + 4..];
    let body_end = match (te.as_slice(), cl.as_slice()) {
        ([], []) => Some((Vec::new(), 0)),
        ([t], []) if t.eq_ignore_ascii_case("chunked") => match dechunk(rest) {
            Some(b) => Some(b),
            None if rest.len() > 1 << 20 => return Parsed::Invalid(req),
            None => return Parsed::Partial,
        },
        ([], [n]) => match n.parse::<usize>() {
            Ok(n) if rest.len() >= n => Some((rest[..n].to_vec(), n)),
            Ok(_) => return Parsed::Partial,
            Err(_) => None,
        },
        _ => None,
    };
    match body_end {
        Some((body, used)) => {
            req.body = body;
            req.complete = true;
            Parsed::Complete(req, end + 4 + used)
        }
        None => Parsed::Invalid(req),
    }
}

/// A chunked body at the front of `b`: (the body, bytes used), None while incomplete.
fn dechunk(mut b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = b.len();
    let mut body = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            let end = b.windows(2).position(|w| w == b"\r\n")?;
            b = &b[end + 2..];
            return Some((body, total - b.len()));
        }
        if b.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
