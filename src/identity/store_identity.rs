//! The digest of an API key and the store identity a budget is counted under.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// SHA-256 of an API key: what the config stores (`key_sha256`) and what a lookup compares.
pub type KeyDigest = [u8; 32];

/// The digest of a presented or configured key. Surrounding whitespace is not part of a key.
pub fn digest(raw: &[u8]) -> KeyDigest {
    Sha256::digest(raw.trim_ascii()).into()
}

/// The name a budget's counters are kept under, inside the Redis hash tag. Never a raw key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreIdentity(Arc<str>);

impl StoreIdentity {
    /// `id:<id>`: the counters of a key's configured id, so that every key of one id (a
    /// rotation) shares one budget. Ids are labels (letters, digits, `_-.`), never key material.
    pub fn for_id(id: &str) -> Self {
        let mut s = String::with_capacity(3 + id.len());
        s.push_str("id:");
        s.push_str(id);
        StoreIdentity(s.into())
    }

    /// `ip:<addr>` of a client (`ip:unknown` when the address is not known): anonymous callers
    /// and `by: ip` policies. An IPv6 address counts by its `/v6_prefix` network
    /// (`ip:2001:db8:1:2::/64`), so one customer's /64 cannot mint fresh buckets at will;
    /// 128 keeps the whole address. IPv4 (and IPv4-mapped IPv6) uses the whole address.
    pub fn for_ip(ip: Option<IpAddr>, v6_prefix: u8) -> Self {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V6(v6)) if v6_prefix < 128 => {
                let bits = u128::from(v6)
                    & (!0u128)
                        .checked_shl(128 - u32::from(v6_prefix))
                        .unwrap_or(0);
                let net = std::net::Ipv6Addr::from(bits);
                StoreIdentity(format!("ip:{net}/{v6_prefix}").into())
            }
            Some(ip) => StoreIdentity(format!("ip:{ip}").into()),
            None => StoreIdentity("ip:unknown".into()),
        }
    }

    /// `h:<header>:<32 hex>`: a `by: header:<name>` bucket, named by a digest of the value (a
    /// tenant header may carry something secret, and its length is unbounded).
    pub fn for_header(header: &str, value: &[u8]) -> Self {
        let d = digest(value);
        StoreIdentity(format!("h:{header}:{}", hex::encode(&d[..16])).into())
    }

    /// `global`: one budget shared by every caller of a `by: global` policy.
    pub fn global() -> Self {
        StoreIdentity("global".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_identity_is_its_id_never_the_key() {
        assert_eq!(digest(b"secret-key"), digest(b" secret-key\t"));
        assert_eq!(StoreIdentity::for_id("alice").as_str(), "id:alice");
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            StoreIdentity::for_ip(Some(mapped), 64).as_str(),
            "ip:10.0.0.1"
        );
        assert_eq!(StoreIdentity::for_ip(None, 64).as_str(), "ip:unknown");
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(
            StoreIdentity::for_ip(Some(a), 64).as_str(),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(
            StoreIdentity::for_ip(Some(a), 64),
            StoreIdentity::for_ip(Some(b), 64)
        );
        assert_eq!(
            StoreIdentity::for_ip(Some(a), 48).as_str(),
            "ip:2001:db8:1::/48"
        );
        assert_eq!(StoreIdentity::for_ip(Some(a), 0).as_str(), "ip:::/0");
        assert_eq!(
            StoreIdentity::for_ip(Some(a), 128).as_str(),
            "ip:2001:db8:1:2:aaaa::1"
        );
    }

    #[test]
    fn a_header_identity_is_a_digest_of_the_value() {
        let h = StoreIdentity::for_header("x-tenant", b"acme-secret");
        assert!(h.as_str().starts_with("h:x-tenant:") && !h.as_str().contains("acme"));
        assert_ne!(h, StoreIdentity::for_header("x-tenant", b"other"));
    }
}
