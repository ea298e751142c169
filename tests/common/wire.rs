//! Raw HTTP/1 on the wire for tests: a client connection that reads framed answers one at a
//! time ([`Conn`]), and the framing helpers it uses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{parse_response, RawResponse};

/// One connection that answers are read from one at a time, framed by Content-Length or
/// chunked encoding, so it can be asked whether it is still open afterwards.
pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn { s, buf: Vec::new() }
    }

    /// Opens a connection from local address `from` (another loopback address is another
    /// client as far as per-IP limits go).
    pub fn open_from(from: &str, port: u16) -> Conn {
        let sock = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let s = rt
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(format!("{from}:0").parse().expect("address"))?;
                socket.connect(sock).await?.into_std()
            })
            .expect("connect");
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next complete response, or None when the connection ends first.
    pub fn response(&mut self) -> Option<RawResponse> {
        loop {
            if let Some((resp, used)) = frame(&self.buf) {
                self.buf.drain(..used);
                return Some(resp);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Every answer that arrives until the connection closes or stays quiet for `idle`; and
    /// whether it closed. Bytes that are not an HTTP answer end the list.
    pub fn answers(&mut self, idle: Duration) -> (Vec<RawResponse>, bool) {
        self.s.set_read_timeout(Some(idle)).expect("timeout");
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let closed = loop {
            while let Some((resp, used)) = frame(&self.buf) {
                self.buf.drain(..used);
                out.push(resp);
            }
            match self.s.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        while let Some((resp, used)) = frame(&self.buf) {
            self.buf.drain(..used);
            out.push(resp);
        }
        (out, closed)
    }

    /// Whether the server closed the connection (EOF) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.s.set_read_timeout(Some(wait)).expect("timeout");
        let mut b = [0u8; 1];
        let closed = matches!(self.s.read(&mut b), Ok(0))
            || matches!(self.s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        closed
    }
}

/// Splits one response off the front of `buf`: (response with its body, bytes used).
pub fn frame(buf: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut resp = parse_response(&buf[..head_end])?;
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().ok()?;
        let end = head_end + len;
        if buf.len() < end {
            return None;
        }
        resp.body = buf[head_end..end].to_vec();
        return Some((resp, end));
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        let (body, used) = dechunk(&buf[head_end..])?;
        resp.body = body;
        return Some((resp, head_end + used));
    }
    resp.body = Vec::new();
    Some((resp, head_end))
}

pub fn dechunk(mut b: &[u8]) -> Option<(Vec<u8>, usize)> {
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
