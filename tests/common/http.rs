//! The HTTP clients of the tests: [`client`] (reqwest, for ordinary requests) and one raw
//! socket layer ([`Conn`], [`raw_exchange`]) for what reqwest would refuse to send or hide:
//! malformed requests, keep-alive reuse, exact bytes on the wire. One response type,
//! [`Response`], serves both raw paths.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A blocking reqwest client that never follows redirects and never pools across tests.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A parsed HTTP/1.x response: status, headers (in order, names as sent) and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server asked to close the connection (or the body was close-delimited).
    pub close: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
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

fn connect(port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    pub used: usize,
    pub closed: bool,
}

impl Conn {
    pub fn connect(port: u16, read_timeout: Duration) -> std::io::Result<Conn> {
        let s = connect(port, read_timeout)?;
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
    ) -> Result<Response, ReqError> {
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
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<Response, ReqError> {
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
        match read_response(&mut self.reader) {
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

/// Pipelining and connection state: requests written without waiting ([`Conn::send`]),
/// answers read one at a time ([`Conn::response`]), and whether the server has closed.
impl Conn {
    /// A connection to `port` with a 10 s read timeout; panics when it cannot connect.
    pub fn open(port: u16) -> Conn {
        Conn::connect(port, Duration::from_secs(10)).expect("connect")
    }

    /// Like [`Conn::open`], from local address `from`: another loopback address is another
    /// client as far as per-IP limits go.
    pub fn open_from(from: &str, port: u16) -> Conn {
        // std cannot bind before connecting; a one-off tokio socket can, and hands the
        // connected stream back as a std one.
        let local: SocketAddr = format!("{from}:0").parse().expect("address");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let s = rt
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(local)?;
                let to = SocketAddr::from(([127, 0, 0, 1], port));
                tokio::time::timeout(Duration::from_secs(2), socket.connect(to))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
                    .into_std()
            })
            .expect("connect");
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(s),
            used: 0,
            closed: false,
        }
    }

    /// Writes `bytes` as they are, without reading anything.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).expect("write");
    }

    /// The next complete answer, or None when the connection ends (or times out) first.
    pub fn response(&mut self) -> Option<Response> {
        read_response(&mut self.reader).ok()
    }

    /// Every answer that arrives until the connection closes or stays quiet for `idle`, and
    /// whether it closed. Bytes that are not an HTTP answer end the list.
    pub fn answers(&mut self, idle: Duration) -> (Vec<Response>, bool) {
        let _ = self.stream().set_read_timeout(Some(idle));
        let mut out = Vec::new();
        let closed = loop {
            match read_response(&mut self.reader) {
                Ok(r) => out.push(r),
                Err((e, _)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    break self.drained_to_eof();
                }
                Err((e, _)) => break !is_timeout(&e),
            }
        };
        let _ = self
            .stream()
            .set_read_timeout(Some(Duration::from_secs(10)));
        (out, closed)
    }

    /// Whether the server closed the connection (EOF or reset) within `wait`. Bytes still to
    /// be read mean it is open.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let _ = self.stream().set_read_timeout(Some(wait));
        let closed = match self.reader.fill_buf() {
            Ok(b) => b.is_empty(),
            Err(e) => !is_timeout(&e),
        };
        let _ = self
            .stream()
            .set_read_timeout(Some(Duration::from_secs(10)));
        closed
    }

    /// Discards what arrives until EOF (true) or the read timeout (false).
    fn drained_to_eof(&mut self) -> bool {
        let mut sink = Vec::new();
        match self.reader.read_to_end(&mut sink) {
            Ok(_) => true,
            Err(e) => !is_timeout(&e),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A GET of `path` on a fresh connection (closed after it): (status, body). None on any
/// failure.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut c = Conn::connect(port, Duration::from_secs(5)).ok()?;
    let r = c.get(path, &[], true).ok()?;
    Some((r.status, r.text()))
}

type ReadError = (std::io::Error, bool);

/// Reads one response. On error, says whether any byte of it had arrived.
pub fn read_response(r: &mut BufReader<TcpStream>) -> Result<Response, ReadError> {
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
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let headers = read_headers(r)?;
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
        body = read_chunked(r)?;
    } else if status >= 200 && status != 204 && status != 304 {
        r.read_to_end(&mut body).map_err(|e| (e, true))?;
        close = true;
    }
    Ok(Response {
        status,
        headers,
        body,
        close,
    })
}

fn bad(m: &str) -> ReadError {
    (
        std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string()),
        true,
    )
}

fn read_headers(r: &mut BufReader<TcpStream>) -> Result<Vec<(String, String)>, ReadError> {
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        let n = r.read_line(&mut h).map_err(|e| (e, true))?;
        if n == 0 {
            return Err(bad("eof in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).map_err(|e| (e, true))?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| bad("bad chunk size"))?;
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).map_err(|e| (e, true))?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// Whether `buf` holds one complete response with a Content-Length.
fn complete_response(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| buf.len() >= end + 4 + n)
}

/// Writes `bytes` verbatim on a fresh connection and returns everything the server sent back
/// before closing, completing one Content-Length response, or going quiet for `wait`
/// (possibly nothing). The server may answer and close before taking the whole request: a
/// failed write is an outcome to look at, not an error. Err: no connection, or a read error
/// before any byte.
pub fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = connect(port, wait)?;
    let _ = s.write_all(bytes);
    let _ = s.flush();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if complete_response(&out) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(_) if !out.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Parses a raw HTTP/1.x answer (head and the bytes after it, as read); None when `bytes` do
/// not start with one.
pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let close = headers
        .iter()
        .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
    Some(Response {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
        close,
    })
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

/// One raw request over a fresh connection (send `Connection: close` in it), parsed.
pub fn raw_request(port: u16, request: &[u8]) -> Option<Response> {
    parse_response(&raw_exchange(port, request, Duration::from_secs(10)).ok()?)
}
