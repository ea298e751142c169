//! Reads the TLS versions a ClientHello offers, for the `min_version: "1.3"` floor.
//!
//! Pingora builds its rustls listener config with TLS 1.2 and 1.3 both enabled and takes no
//! ready-made config, so the floor is enforced before the handshake: the first record is
//! looked at (and put back), and a client whose `supported_versions` extension lacks TLS 1.3
//! is turned away. A client that offers 1.3 gets 1.3, since the server prefers it.

/// `supported_versions` (RFC 8446 §4.2.1).
const SUPPORTED_VERSIONS: u16 = 0x002b;
const TLS13: u16 = 0x0304;

/// How many bytes of the first record are needed: the 5-byte header's length field plus 5.
pub fn record_len(header: &[u8; 5]) -> Option<usize> {
    // 22 = handshake; anything else is not a ClientHello.
    (header[0] == 22).then(|| 5 + u16::from_be_bytes([header[3], header[4]]) as usize)
}

/// Whether the ClientHello in `record` (header included) offers TLS 1.3. A record that is not
/// a complete ClientHello answers false.
pub fn offers_tls13(record: &[u8]) -> bool {
    parse(record).unwrap_or(false)
}

fn parse(record: &[u8]) -> Option<bool> {
    let mut r = Reader(record.get(5..)?);
    // Handshake type 1 = ClientHello, then a 24-bit length.
    if r.u8()? != 1 {
        return Some(false);
    }
    r.take(3)?;
    r.take(2 + 32)?; // legacy_version, random
    let n = r.u8()? as usize;
    r.take(n)?; // legacy_session_id
    let n = r.u16()? as usize;
    r.take(n)?; // cipher_suites
    let n = r.u8()? as usize;
    r.take(n)?; // legacy_compression_methods
    let n = r.u16()? as usize;
    let mut exts = Reader(r.take(n)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = exts.u16()? as usize;
        let body = exts.take(len)?;
        if kind == SUPPORTED_VERSIONS {
            let mut v = Reader(body);
            let n = v.u8()? as usize;
            let list = v.take(n)?;
            return Some(
                list.chunks_exact(2)
                    .any(|c| u16::from_be_bytes([c[0], c[1]]) == TLS13),
            );
        }
    }
    Some(false)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given extensions.
    fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext_bytes = Vec::new();
        for (kind, body) in exts {
            ext_bytes.extend_from_slice(&kind.to_be_bytes());
            ext_bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
            ext_bytes.extend_from_slice(body);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext_bytes);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn finds_tls13_in_supported_versions() {
        let r = hello(&[(0x000a, vec![0, 2, 0, 29]), (0x002b, vec![4, 3, 4, 3, 3])]);
        let header: [u8; 5] = r[..5].try_into().unwrap();
        assert_eq!(record_len(&header), Some(r.len()));
        assert!(offers_tls13(&r));
    }

    #[test]
    fn tls12_only_and_truncated_hellos_do_not_count() {
        assert!(!offers_tls13(&hello(&[(0x002b, vec![2, 3, 3])])));
        assert!(!offers_tls13(&hello(&[(0x000a, vec![0, 2, 0, 29])])));
        let r = hello(&[(0x002b, vec![4, 3, 4, 3, 3])]);
        assert!(!offers_tls13(&r[..r.len() - 3]));
        assert!(!offers_tls13(b"GET / HTTP/1.1\r\n"));
    }
}
