//! `keys_redis`: a key that neither `keys:` nor the keys file holds is looked up in a Redis hash
//! (`HSET <hash> <sha256 hex> "<id>\t<tier>[\t<expires>]"`) within `redis.timeout_ms`, and the
//! answer, found or not found, is cached on this replica for `ttl`.
//!
//! The cache is a fixed array of `cache` slots, each an `ArcSwapOption`, indexed by the digest:
//! a hit is one atomic load and a digest compare, with no lock; a new answer replaces whatever
//! its slot held (bounded memory, no eviction bookkeeping). A cached answer stands for `ttl`,
//! which is therefore the revocation delay (and the delay before a new key works, when its
//! digest was asked for and found absent just before). A cold key costs one extra round trip
//! (`HGET`) before the limit call.
//!
//! During a store outage (an error or a timeout), a cached key keeps working, even past its
//! `ttl` (its entry is used as it is and not refreshed), and an unknown key follows
//! `identity.unknown_key`; nothing learnt from a failure is cached.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;

use crate::config::key_table::{now_ms, ShortDigest};
use crate::config::{KeyEntry, KeysRedisSettings, Snapshot};
use crate::identity::{KeyDigest, Rejection};
use crate::limiter::Limiter;

/// What the hash said about one digest.
#[derive(Debug)]
struct Found {
    id: Arc<str>,
    /// The tier by name: resolved against the snapshot in force on every hit, so the cache
    /// survives reloads.
    tier: Arc<str>,
    expires_ms: Option<i64>,
}

#[derive(Debug)]
struct Cached {
    digest: ShortDigest,
    until: Instant,
    found: Option<Found>,
}

/// The per-replica cache of `keys_redis` answers.
pub struct RemoteKeys {
    settings: KeysRedisSettings,
    slots: Box<[ArcSwapOption<Cached>]>,
}

fn short(d: &KeyDigest) -> ShortDigest {
    let mut s = [0u8; 16];
    s.copy_from_slice(&d[..16]);
    s
}

impl RemoteKeys {
    pub fn new(settings: KeysRedisSettings) -> Self {
        let slots = (0..settings.cache.max(1))
            .map(|_| ArcSwapOption::empty())
            .collect();
        RemoteKeys { settings, slots }
    }

    pub fn settings(&self) -> &KeysRedisSettings {
        &self.settings
    }

    fn slot(&self, d: &KeyDigest) -> &ArcSwapOption<Cached> {
        // The table buckets by the leading bytes; the cache uses the next ones.
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[4..12]);
        &self.slots[(u64::from_le_bytes(b) % self.slots.len() as u64) as usize]
    }

    /// The caller a key unknown to the local tables is, per the hash (cached), or why not.
    /// `Ok(None)`: the hash does not know it either (or the store failed): the caller applies
    /// `identity.unknown_key`.
    pub async fn resolve(
        &self,
        snapshot: &Snapshot,
        limiter: &Limiter,
        digest: &KeyDigest,
    ) -> Result<Option<KeyEntry>, Rejection> {
        let short = short(digest);
        let slot = self.slot(digest);
        let cached = slot.load_full().filter(|c| c.digest == short);
        if let Some(c) = cached.as_ref().filter(|c| c.until > Instant::now()) {
            return entry(snapshot, c.found.as_ref());
        }
        let field = hex::encode(digest);
        match limiter.lookup_key(&self.settings.hash, &field).await {
            Ok(value) => {
                let found = value.and_then(|v| parse(&v));
                let answer = entry(snapshot, found.as_ref());
                slot.store(Some(Arc::new(Cached {
                    digest: short,
                    until: Instant::now() + self.settings.ttl,
                    found,
                })));
                answer
            }
            Err(e) => {
                log::debug!(
                    "keys_redis lookup failed ({}): using the cache only",
                    e.kind()
                );
                // A key seen before keeps working through the outage, however old its entry.
                entry(snapshot, cached.as_ref().and_then(|c| c.found.as_ref()))
            }
        }
    }
}

/// A hash value `<id>\t<tier>[\t<expires>]`; anything else counts as not found.
fn parse(value: &str) -> Option<Found> {
    let mut parts = value.trim().split('\t');
    let (id, tier) = (parts.next()?, parts.next()?);
    let expires_ms = match parts.next() {
        Some(at) => Some(
            chrono::DateTime::parse_from_rfc3339(at.trim())
                .ok()?
                .timestamp_millis(),
        ),
        None => None,
    };
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if parts.next().is_some() || !label(id) || !label(tier) {
        log::warn!(
            "keys_redis: a hash value is not `<id>\\t<tier>[\\t<expires>]`; the key is refused"
        );
        return None;
    }
    Some(Found {
        id: id.into(),
        tier: tier.into(),
        expires_ms,
    })
}

fn entry(snapshot: &Snapshot, found: Option<&Found>) -> Result<Option<KeyEntry>, Rejection> {
    let Some(f) = found else { return Ok(None) };
    if f.expires_ms.is_some_and(|at| now_ms() >= at) {
        return Err(Rejection::ExpiredKey);
    }
    match snapshot.tiers.get(f.tier.as_ref()) {
        Some(tier) => Ok(Some(KeyEntry::new(&f.id, tier))),
        None => {
            log::warn!(
                "keys_redis: id '{}' names tier '{}', which is not configured; the key is refused",
                f.id,
                f.tier
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_count_as_absent() {
        let f = parse("alice\tfree").unwrap();
        assert_eq!((&*f.id, &*f.tier, f.expires_ms), ("alice", "free", None));
        let f = parse("bob\tpaid\t2027-01-01T00:00:00Z\n").unwrap();
        assert_eq!(f.expires_ms, Some(1_798_761_600_000));
        assert!(parse("alice").is_none());
        assert!(parse("a b\tfree").is_none());
        assert!(parse("a\tfree\tsoon").is_none());
        assert!(parse("a\tfree\t2027-01-01T00:00:00Z\tx").is_none());
    }
}
