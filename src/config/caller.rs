//! From what a request presents to who it is in this configuration: a configured key's entry,
//! an anonymous caller in the anonymous tier, or a rejection.

use std::net::IpAddr;
use std::sync::Arc;

use super::key_table::{now_ms, Lookup};
use super::{AnonymousPolicy, KeyEntry, Snapshot, Tier};
use crate::identity::{self, KeyDigest, Rejection, StoreIdentity};

#[derive(Debug, Clone)]
pub enum Caller {
    Key(Arc<KeyEntry>),
    Anonymous {
        tier: Arc<Tier>,
        /// `ip:<addr>`: the store identity of an anonymous caller.
        store_identity: StoreIdentity,
    },
}

impl Caller {
    pub fn tier(&self) -> &Arc<Tier> {
        match self {
            Caller::Key(k) => &k.tier,
            Caller::Anonymous { tier, .. } => tier,
        }
    }

    pub fn store_identity(&self) -> &StoreIdentity {
        match self {
            Caller::Key(k) => &k.store_identity,
            Caller::Anonymous { store_identity, .. } => store_identity,
        }
    }

    /// How `/v1/top` names the caller: the key's id, or `ip:<addr>` for an anonymous caller.
    pub fn top_label(&self) -> &str {
        match self {
            Caller::Key(k) => &k.id,
            Caller::Anonymous { store_identity, .. } => store_identity.as_str(),
        }
    }

    /// The `key_id` label and `X-Tollgate-Key-Id` value; anonymous callers share one.
    pub fn key_id(&self) -> &str {
        match self {
            Caller::Key(k) => &k.id,
            Caller::Anonymous { .. } => "anonymous",
        }
    }
}

/// What the snapshot's own tables say about a request's caller.
#[derive(Debug)]
pub enum Resolved {
    Caller(Caller),
    Rejected(Rejection),
    /// A key that neither `keys:` nor the keys file holds: look further (`keys_redis`), or
    /// apply `identity.unknown_key` ([`Snapshot::unknown_key`]).
    Unknown(KeyDigest),
}

impl Snapshot {
    /// Resolves the caller. `key` is the raw key header value, if any.
    pub fn caller(&self, key: Option<&[u8]>, client: Option<IpAddr>) -> Result<Caller, Rejection> {
        match self.resolve(key, client) {
            Resolved::Caller(c) => Ok(c),
            Resolved::Rejected(why) => Err(why),
            Resolved::Unknown(_) => self.unknown_key(client),
        }
    }

    /// Resolves the caller from the local tables alone.
    pub fn resolve(&self, key: Option<&[u8]>, client: Option<IpAddr>) -> Resolved {
        let presented = match identity::presented_key(key) {
            Ok(p) => p,
            Err(why) => return Resolved::Rejected(why),
        };
        let Some(k) = presented else {
            return match self.anonymous(client, Rejection::MissingKey) {
                Ok(c) => Resolved::Caller(c),
                Err(why) => Resolved::Rejected(why),
            };
        };
        let digest = identity::digest(k);
        match self.keys.get(&digest, now_ms) {
            Some(Lookup::Active(entry)) => Resolved::Caller(Caller::Key(Arc::new(entry.into()))),
            // An expired or disabled key is refused as such, never treated as anonymous.
            Some(Lookup::Expired) => Resolved::Rejected(Rejection::ExpiredKey),
            Some(Lookup::Disabled) => Resolved::Rejected(Rejection::DisabledKey),
            None => Resolved::Unknown(digest),
        }
    }

    /// `identity.unknown_key` for a key found nowhere: 401, or the anonymous tier.
    pub fn unknown_key(&self, client: Option<IpAddr>) -> Result<Caller, Rejection> {
        match self.unknown_key_anonymous {
            true => self.anonymous(client, Rejection::UnknownKey),
            false => Err(Rejection::UnknownKey),
        }
    }

    fn anonymous(&self, client: Option<IpAddr>, otherwise: Rejection) -> Result<Caller, Rejection> {
        match &self.anonymous {
            AnonymousPolicy::Reject => Err(otherwise),
            AnonymousPolicy::Tier(tier) => Ok(Caller::Anonymous {
                tier: tier.clone(),
                store_identity: StoreIdentity::for_ip(client, self.ipv6_prefix),
            }),
        }
    }
}
