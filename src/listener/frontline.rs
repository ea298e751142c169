//! [`Frontline`]: the proxy's transport application. It puts a [`GuardedStream`] around every
//! HTTP/1 connection (after the TLS handshake, when there is one) and hands it to Pingora's
//! HTTP proxy, which runs its keep-alive loop over it as usual.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use super::wire_guard::GuardedStream;

pub struct Frontline<A> {
    inner: Arc<A>,
}

impl<A> Frontline<A> {
    pub fn new(inner: A) -> Self {
        Frontline {
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Frontline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // HTTP/2 frames are binary: the HTTP/1 guards have nothing to look at there.
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(GuardedStream::new(stream))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
