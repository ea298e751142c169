//! The certificate resolver of one TLS listener: picks a certificate by SNI from a set that can
//! be swapped at any time.
//!
//! rustls asks the resolver once per handshake, so a swap takes effect for the next handshake
//! while connections already open keep the session they negotiated. The set sits behind an
//! `ArcSwap`: a handshake takes no lock and never waits for a reload.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;

/// The certificates of one listener, in configuration order: the first is the default.
#[derive(Debug, Default)]
pub struct CertSet {
    pub certs: Vec<LoadedCert>,
}

impl CertSet {
    /// The certificate for `sni`: an exact name first, then a wildcard covering it, then the
    /// default (also for a client that sends no SNI).
    pub fn select(&self, sni: Option<&str>) -> Option<&LoadedCert> {
        if let Some(sni) = sni {
            let covers = |exact: bool| {
                self.certs.iter().find(|c| {
                    c.names.iter().any(|n| {
                        if exact {
                            n.eq_ignore_ascii_case(sni)
                        } else {
                            wildcard_covers(n, sni)
                        }
                    })
                })
            };
            if let Some(c) = covers(true).or_else(|| covers(false)) {
                return Some(c);
            }
        }
        self.certs.first()
    }
}

/// `*.example.com` covers `api.example.com`, not `example.com` nor `a.b.example.com`.
fn wildcard_covers(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
        None => false,
    }
}

/// The resolver a listener's rustls config holds.
pub struct SniResolver {
    set: ArcSwap<CertSet>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("certs", &self.set.load().certs.len())
            .finish()
    }
}

impl SniResolver {
    pub fn new(set: Arc<CertSet>) -> Self {
        SniResolver {
            set: ArcSwap::new(set),
        }
    }

    /// New handshakes get `set` from now on.
    pub fn install(&self, set: Arc<CertSet>) {
        self.set.store(set);
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.set.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        set.select(hello.server_name())
            .map(|c| Arc::clone(&c.certified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dir: &std::path::Path, stem: &str, names: &[&str]) -> LoadedCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
        super::super::load_pair(&c, &k).unwrap()
    }

    #[test]
    fn exact_names_win_over_wildcards_and_the_first_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let set = CertSet {
            certs: vec![
                cert(dir.path(), "default", &["default.test"]),
                cert(dir.path(), "wild", &["*.example.test"]),
                cert(dir.path(), "exact", &["api.example.test"]),
            ],
        };
        let pick = |sni| set.select(sni).map(|c| c.label());
        assert_eq!(
            pick(Some("api.example.test")).as_deref(),
            Some("api.example.test")
        );
        assert_eq!(
            pick(Some("web.example.test")).as_deref(),
            Some("*.example.test")
        );
        assert_eq!(pick(Some("other.test")).as_deref(), Some("default.test"));
        assert_eq!(pick(None).as_deref(), Some("default.test"));
        assert!(set.certs[0].not_after > 1_700_000_000);
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(wildcard_covers("*.example.com", "api.example.com"));
        assert!(wildcard_covers("*.example.com", "API.Example.com"));
        assert!(!wildcard_covers("*.example.com", "example.com"));
        assert!(!wildcard_covers("*.example.com", "a.b.example.com"));
        assert!(!wildcard_covers("api.example.com", "api.example.com"));
    }
}
