//! `min_version: "1.3"`: turns away, before the handshake, a client whose ClientHello does not
//! offer TLS 1.3 (see `crate::tls::client_hello` for why it cannot be left to rustls).

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::GetSocketDigest;
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncReadExt;

use crate::tls::client_hello;

/// A ClientHello arrives in the first packet; a client silent for this long is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Applies to the TLS listeners of one service whose address is in `addrs`.
pub struct Tls13Floor {
    pub addrs: Vec<SocketAddr>,
}

impl Tls13Floor {
    /// Whether a connection accepted on `local` came through one of `addrs`; a wildcard
    /// listener (`0.0.0.0:8443`) sees the interface's own address.
    fn applies_to(&self, local: SocketAddr) -> bool {
        self.addrs
            .iter()
            .any(|a| *a == local || (a.ip().is_unspecified() && a.port() == local.port()))
    }
}

#[async_trait]
impl PreTlsProcess for Tls13Floor {
    async fn process(&self, stream: &mut Stream) -> Result<()> {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        if !local.is_some_and(|a| self.applies_to(a)) {
            return Ok(());
        }
        let record = tokio::time::timeout(HELLO_TIMEOUT, read_first_record(stream))
            .await
            .map_err(|_| Error::explain(ErrorType::ReadTimedout, "no ClientHello in time"))??;
        // Put it back for rustls, whatever it holds: a record that is not a ClientHello fails
        // the handshake there, with rustls's own alert.
        stream.rewind(&record);
        if record.first() == Some(&22) && !client_hello::offers_tls13(&record) {
            log::debug!("TLS handshake refused: the client does not offer TLS 1.3");
            return Error::e_explain(
                ErrorType::TLSHandshakeFailure,
                "the client does not offer TLS 1.3 (min_version: \"1.3\")",
            );
        }
        Ok(())
    }
}

async fn read_first_record(stream: &mut Stream) -> Result<Vec<u8>> {
    let read_err = |e| Error::because(ErrorType::ReadError, "reading the ClientHello", e);
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await.map_err(read_err)?;
    let Some(len) = client_hello::record_len(&header) else {
        return Ok(header.to_vec());
    };
    let mut record = vec![0u8; len];
    record[..5].copy_from_slice(&header);
    stream
        .read_exact(&mut record[5..])
        .await
        .map_err(read_err)?;
    Ok(record)
}
