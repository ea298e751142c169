//! Who may use `/v1/`: the holder of the bearer token when one is set, otherwise only callers on
//! this machine (the socket peer is a loopback address; X-Forwarded-For is never believed).
//!
//! The token is kept only as its SHA-256 digest, and a presented token is hashed and compared
//! with it in constant time, so neither its value nor its length leaks through timing.

use std::net::IpAddr;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::identity::{digest, KeyDigest};

/// The environment variable that sets the token; it wins over `admin_token_sha256`.
pub const TOKEN_ENV: &str = "TOLLGATE_ADMIN_TOKEN";

/// Why a `/v1/` request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: a token is set and the request did not present it.
    Unauthorized,
    /// 403: no token is set and the peer is not on this machine.
    Forbidden,
}

/// The digest of the token from the environment, read once at start.
pub fn env_token() -> Option<KeyDigest> {
    std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| digest(t.as_bytes()))
}

/// Whether a `/v1/` request may proceed. `token` is the digest in force (environment first).
pub fn check(
    token: Option<&KeyDigest>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<(), Refusal> {
    match token {
        Some(want) => {
            let presented = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| digest(t.as_bytes()));
            match presented {
                Some(got) if bool::from(got.ct_eq(want)) => Ok(()),
                _ => Err(Refusal::Unauthorized),
            }
        }
        None if peer.is_some_and(|p| p.to_canonical().is_loopback()) => Ok(()),
        None => Err(Refusal::Forbidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn a_token_is_needed_when_set_and_loopback_otherwise() {
        let lo: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let far: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        let t = digest(b"s3cret");
        assert_eq!(check(Some(&t), &bearer("s3cret"), far), Ok(()));
        assert_eq!(
            check(Some(&t), &bearer("wrong"), lo),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(Some(&t), &HeaderMap::new(), lo),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(check(None, &HeaderMap::new(), lo), Ok(()));
        let mapped = Some("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(check(None, &HeaderMap::new(), mapped), Ok(()));
        assert_eq!(check(None, &bearer("x"), far), Err(Refusal::Forbidden));
        assert_eq!(
            check(None, &HeaderMap::new(), None),
            Err(Refusal::Forbidden)
        );
    }
}
