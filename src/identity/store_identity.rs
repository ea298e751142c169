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

    /// `ip:<addr>` of an anonymous caller (`ip:unknown` when the address is not known).
    pub fn for_ip(ip: Option<IpAddr>) -> Self {
        match ip {
            Some(ip) => StoreIdentity(format!("ip:{}", ip.to_canonical()).into()),
            None => StoreIdentity("ip:unknown".into()),
        }
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
        assert_eq!(StoreIdentity::for_ip(Some(mapped)).as_str(), "ip:10.0.0.1");
        assert_eq!(StoreIdentity::for_ip(None).as_str(), "ip:unknown");
    }
}
