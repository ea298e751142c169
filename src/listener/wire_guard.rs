//! [`GuardedStream`]: the client connection as the HTTP/1 parser sees it, with two guards that
//! Pingora has no hook for.
//!
//! * Reads go through a [`LineScanner`], so `request_filter` can tell a request line that
//!   Pingora repaired (percent-encoded) from one the client sent that way.
//! * Pingora answers a request it cannot parse (and a `CONNECT`) itself, with an empty-bodied
//!   4xx written before any tollgate hook runs. Outside a request (between `logging` and the
//!   next `early_request_filter`), such a head is replaced by the same status with a
//!   problem+json body, `Connection: close` and an `X-Request-Id`, and counted in
//!   `tollgate_requests_total{route="unmatched",tier="none"}`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::request_line::LineScanner;

pub struct GuardedStream {
    inner: Stream,
    scanner: LineScanner,
    /// True from `early_request_filter` to `logging`: tollgate owns what is written.
    in_request: AtomicBool,
    /// A replacement answer being written, and how much of it went out.
    pending: Option<(Bytes, usize)>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish()
    }
}

impl GuardedStream {
    pub fn new(inner: Stream) -> Self {
        GuardedStream {
            inner,
            scanner: LineScanner::default(),
            in_request: AtomicBool::new(false),
            pending: None,
        }
    }

    /// The guard under a session's stream, when there is one (HTTP/1 connections).
    pub fn of(stream: Option<&Stream>) -> Option<&GuardedStream> {
        stream.and_then(|s| (**s).as_any().downcast_ref::<GuardedStream>())
    }

    pub fn begin_request(&self) {
        self.in_request.store(true, Ordering::Relaxed);
    }

    pub fn end_request(&self) {
        self.in_request.store(false, Ordering::Relaxed);
    }

    /// Whether Pingora repaired this request line (see `request_line`).
    pub fn target_was_repaired(&self, method: &[u8], target: &[u8]) -> bool {
        self.scanner.was_repaired(method, target)
    }

    /// Writes out what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut *self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The status of an empty-bodied 4xx head that Pingora generated, if `buf` is one.
fn bare_client_error(buf: &[u8]) -> Option<u16> {
    let status = buf.strip_prefix(b"HTTP/1.1 4")?;
    let code = std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()?;
    if status.len() < 3 || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = buf.to_ascii_lowercase();
    memchr::memmem::find(&head, b"\r\ncontent-length: 0\r\n")?;
    Some(code)
}

/// The problem+json answer sent instead of Pingora's empty one. The texts are fixed, so the
/// body is written out here rather than rendered (the proxy's renderer sits above this layer).
fn replacement(code: u16) -> Bytes {
    let (title, detail) = match code {
        405 => ("Method Not Allowed", "CONNECT is not supported here"),
        _ => (
            "Bad Request",
            "the request line, a header field or the message framing is malformed",
        ),
    };
    let body = format!(
        "{{\"type\":\"about:blank\",\"title\":\"{title}\",\"status\":{code},\"detail\":\"{detail}\"}}"
    );
    let id = crate::request_id::request_id(&http::HeaderMap::new());
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(format!("HTTP/1.1 {code} {title}\r\n").as_bytes());
    out.put_slice(b"Content-Type: application/problem+json\r\n");
    out.put_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    out.put_slice(b"Cache-Control: no-store\r\nConnection: close\r\nX-Request-Id: ");
    out.put_slice(id.as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body.as_bytes());
    out.freeze()
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = ready!(Pin::new(&mut *this.inner).poll_read(cx, buf));
        if res.is_ok() {
            this.scanner.feed(&buf.filled()[before..]);
        }
        Poll::Ready(res)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if !this.in_request.load(Ordering::Relaxed) {
            if let Some(code) = bare_client_error(buf) {
                // Counted like tollgate's own refusals of requests that matched nothing.
                crate::metrics::request("unmatched", "none", code, Duration::ZERO);
                this.pending = Some((replacement(code), 0));
                // The caller's bytes are taken; the replacement goes out in their place.
                let _ = this.poll_pending(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut *this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut *this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut *this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        if let Some((bytes, done)) = self.pending.take() {
            // Bounded: a client that does not read gets the connection closed regardless.
            let write = async {
                let _ = self.inner.write_all(&bytes[done..]).await;
                let _ = self.inner.flush().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
        }
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_pingoras_bare_errors_only() {
        let bare = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";
        assert_eq!(bare_client_error(bare), Some(400));
        let with_body = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(bare_client_error(with_body), None);
        assert_eq!(
            bare_client_error(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            None
        );
        assert_eq!(bare_client_error(b"HTTP/1.1 400 Bad Req"), None);
    }

    #[test]
    fn replacement_is_framed_problem_json() {
        let r = replacement(400);
        let text = std::str::from_utf8(&r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 400);
        let v: serde_json::Value = serde_json::from_str(
            std::str::from_utf8(&replacement(405))
                .unwrap()
                .split_once("\r\n\r\n")
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(
            (v["status"].as_u64(), v["title"].as_str()),
            (Some(405), Some("Method Not Allowed"))
        );
    }
}
