//! From what a request presents to who it is in this configuration: a configured key's entry,
//! an anonymous caller in the anonymous tier, or a rejection.

use std::net::IpAddr;
use std::sync::Arc;

use super::key_table::{now_ms, Lookup};
use super::{AnonymousPolicy, KeyEntry, Snapshot, Tier};
use crate::identity::{self, Rejection, StoreIdentity};

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

impl Snapshot {
    /// Resolves the caller. `key` is the raw key header value, if any.
    pub fn caller(&self, key: Option<&[u8]>, client: Option<IpAddr>) -> Result<Caller, Rejection> {
        match identity::presented_key(key)? {
            Some(k) => match self.keys.get(&identity::digest(k), now_ms) {
                Some(Lookup::Active(entry)) => Ok(Caller::Key(Arc::new(entry.into()))),
                // An expired or disabled key is refused as such, never treated as anonymous.
                Some(Lookup::Expired) => Err(Rejection::ExpiredKey),
                Some(Lookup::Disabled) => Err(Rejection::DisabledKey),
                None if self.unknown_key_anonymous => self.anonymous(client, Rejection::UnknownKey),
                None => Err(Rejection::UnknownKey),
            },
            None => self.anonymous(client, Rejection::MissingKey),
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
