//! Maps a request to an [`Identity`]: a configured key, an anonymous caller, or a rejection.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{AnonymousPolicy, KeyEntry, Snapshot, Tier};

#[derive(Debug, Clone)]
pub enum Identity {
    Key(Arc<KeyEntry>),
    Anonymous {
        tier: Arc<Tier>,
        /// `ip:<addr>`: the store identity of an anonymous caller.
        store_identity: String,
    },
}

impl Identity {
    pub fn tier(&self) -> &Arc<Tier> {
        match self {
            Identity::Key(k) => &k.tier,
            Identity::Anonymous { tier, .. } => tier,
        }
    }

    pub fn store_identity(&self) -> &str {
        match self {
            Identity::Key(k) => &k.store_identity,
            Identity::Anonymous { store_identity, .. } => store_identity,
        }
    }

    /// The `key_id` label and `X-Tollgate-Key-Id` value; anonymous callers share one.
    pub fn key_id(&self) -> &str {
        match self {
            Identity::Key(k) => &k.id,
            Identity::Anonymous { .. } => "anonymous",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownKey,
    MissingKey,
    /// The key header is present but not valid text (bytes outside visible ASCII).
    MalformedKey,
}

/// Resolves the caller. `key` is the raw key header value, if any.
pub fn resolve(
    snapshot: &Snapshot,
    key: Option<&[u8]>,
    client: Option<IpAddr>,
) -> Result<Identity, Rejection> {
    match key.map(trim) {
        Some(k) if !k.is_empty() => {
            if !k.iter().all(|b| b.is_ascii_graphic()) {
                return Err(Rejection::MalformedKey);
            }
            match snapshot.key_for(k) {
                Some(entry) => Ok(Identity::Key(entry.clone())),
                None if snapshot.unknown_key_anonymous => {
                    anonymous(snapshot, client, Rejection::UnknownKey)
                }
                None => Err(Rejection::UnknownKey),
            }
        }
        _ => anonymous(snapshot, client, Rejection::MissingKey),
    }
}

fn anonymous(
    snapshot: &Snapshot,
    client: Option<IpAddr>,
    otherwise: Rejection,
) -> Result<Identity, Rejection> {
    match &snapshot.anonymous {
        AnonymousPolicy::Reject => Err(otherwise),
        AnonymousPolicy::Tier(tier) => {
            let ip = client
                .map(|ip| ip.to_canonical().to_string())
                .unwrap_or_else(|| "unknown".to_string());
            Ok(Identity::Anonymous {
                tier: tier.clone(),
                store_identity: format!("ip:{ip}"),
            })
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}
