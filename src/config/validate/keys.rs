//! The `keys` section: each API key (or its SHA-256 digest), its id and its tier. A key value
//! is never echoed in an error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::super::error::ConfigError;
use super::super::schema::{RawConfig, RawKey};
use super::super::snapshot::{KeyEntry, Tier};
use super::context::Cx;
use super::{is_label, sha256_hex, unknown_tier};
use crate::identity::{self, KeyDigest, StoreIdentity};

/// The key table, by digest.
pub(super) type KeyTable = HashMap<KeyDigest, Arc<KeyEntry>, ahash::RandomState>;

pub(super) fn keys(
    cx: &Cx<'_>,
    raw: &RawConfig,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<KeyTable, ConfigError> {
    let mut out = HashMap::with_hasher(ahash::RandomState::new());
    let mut ids = HashSet::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let f = format!("keys[{i}]");
        let id_header = id_header(cx, &f, &k.id)?;
        if !ids.insert(k.id.clone()) {
            return Err(cx.at(&format!("{f}.id"), format!("duplicate id '{}'", k.id)));
        }
        let entry = entry(cx, &f, k, id_header, tiers)?;
        if out.insert(entry.digest, Arc::new(entry)).is_some() {
            return Err(cx.at(
                &f,
                "this key is already assigned to another id (keys must be unique)",
            ));
        }
    }
    Ok(out)
}

fn entry(
    cx: &Cx<'_>,
    f: &str,
    k: &RawKey,
    id_header: http::HeaderValue,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<KeyEntry, ConfigError> {
    let digest = key_digest(cx, f, k)?;
    let tier = tiers
        .get(&k.tier)
        .cloned()
        .ok_or_else(|| cx.at(&format!("{f}.tier"), unknown_tier(&k.tier, tiers)))?;
    Ok(KeyEntry {
        id: k.id.as_str().into(),
        tier,
        store_identity: StoreIdentity::for_key(&digest),
        digest,
        id_header,
    })
}

/// The id as the `X-Tollgate-Key-Id` value. A label is always header-safe; both checks give
/// the same message.
fn id_header(cx: &Cx<'_>, f: &str, id: &str) -> Result<http::HeaderValue, ConfigError> {
    let refused = || {
        cx.at(
            &format!("{f}.id"),
            "ids may use letters, digits, '_', '-' and '.' (at most 64)",
        )
    };
    if !is_label(id) {
        return Err(refused());
    }
    http::HeaderValue::from_str(id).map_err(|_| refused())
}

/// The SHA-256 of `key`, or the digest written as `key_sha256`.
fn key_digest(cx: &Cx<'_>, f: &str, k: &RawKey) -> Result<KeyDigest, ConfigError> {
    match (&k.key, &k.key_sha256) {
        (Some(key), None) => {
            if key.is_empty() || http::HeaderValue::from_str(key).is_err() {
                return Err(cx.at(
                    &format!("{f}.key"),
                    "must be a non-empty header-safe string",
                ));
            }
            Ok(identity::digest(key.as_bytes()))
        }
        (None, Some(hexed)) => sha256_hex(hexed)
            .ok_or_else(|| cx.at(&format!("{f}.key_sha256"), "must be 64 hex characters")),
        (Some(_), Some(_)) => Err(cx.at(f, "set either `key` or `key_sha256`, not both")),
        (None, None) => Err(cx.at(f, "needs `key` or `key_sha256`")),
    }
}
