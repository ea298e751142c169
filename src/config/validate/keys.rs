//! The `keys` section and `keys_file`: each API key (or its SHA-256 digest), its id, its tier,
//! and its `expires` instant or `disabled` flag, compiled into the compact key table. A key
//! value is never echoed in an error.
//!
//! Several keys may share one id (a rotation): their counters are the id's, so they must name
//! one tier. An id lives in one place, `keys:` or the keys file, never both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::error::ConfigError;
use super::super::key_table::{KeySpec, KeyTable, KeyTableBuilder};
use super::super::schema::{RawConfig, RawKey};
use super::super::snapshot::{KeysFile, KeysRedisSettings, Tier};
use super::context::Cx;
use super::{is_label, keys_file, sha256_hex, unknown_tier};
use crate::identity::{self, KeyDigest};

/// The validated keys: the table, the `keys:` entries it was built from (kept for a reload of
/// the keys file alone) and the keys file.
pub(super) struct Keys {
    pub table: KeyTable,
    pub yaml: Vec<KeySpec>,
    pub file: Option<KeysFile>,
}

pub(super) fn keys(
    cx: &Cx<'_>,
    raw: &RawConfig,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<Keys, ConfigError> {
    let mut ordered: Vec<Arc<Tier>> = tiers.values().cloned().collect();
    ordered.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let yaml = yaml_keys(cx, raw, &ordered, tiers)?;
    let file = match &raw.keys_file {
        Some(f) if f.trim().is_empty() => {
            return Err(cx.at("keys_file", "must be a file path"));
        }
        Some(f) => Some(resolve(cx.path, f.trim())),
        None => None,
    };
    let (table, file) = match build_table(ordered, &yaml, file.as_deref()) {
        Ok(built) => built,
        Err(TableError::Unreadable(e)) => {
            let shown = file.as_deref().map(Path::display);
            let shown = shown.map(|d| d.to_string()).unwrap_or_default();
            return Err(cx.at("keys_file", format!("cannot read {shown}: {e}")));
        }
        Err(TableError::Config(e)) => return Err(e),
    };
    Ok(Keys { table, yaml, file })
}

/// `keys_file` is relative to the config file's folder.
fn resolve(config: &Path, file: &str) -> PathBuf {
    match config.parent() {
        Some(dir) if Path::new(file).is_relative() => dir.join(file),
        _ => PathBuf::from(file),
    }
}

/// Why a key table could not be built.
pub(crate) enum TableError {
    /// The keys file could not be opened or read.
    Unreadable(std::io::Error),
    Config(ConfigError),
}

/// The key table of the `keys:` entries (already validated) and of the keys file, if any,
/// streamed line by line into the table.
pub(crate) fn build_table(
    tiers: Vec<Arc<Tier>>,
    yaml: &[KeySpec],
    file: Option<&Path>,
) -> Result<(KeyTable, Option<KeysFile>), TableError> {
    let mut b = KeyTableBuilder::new(tiers, yaml.len());
    for k in yaml {
        // Validated already: one tier per id, and far fewer ids than the table holds.
        if let Ok(id) = b.intern(&k.id, k.tier) {
            b.push(&k.digest, id, k.disabled, k.expires_ms);
        }
    }
    let yaml_ids = b.id_count();
    let file = match file {
        Some(path) => {
            let sha256 = keys_file::stream(path, &mut b, yaml_ids)?;
            Some(KeysFile {
                path: path.to_path_buf(),
                sha256,
            })
        }
        None => None,
    };
    let table = b.finish().map_err(|d| {
        let e = match &file {
            Some(f) => keys_file::duplicate(&f.path, &d),
            // `keys:` duplicates were refused with their position already.
            None => ConfigError {
                file: PathBuf::new(),
                line: 0,
                column: 0,
                field: "keys".into(),
                message: "two keys have one digest".into(),
            },
        };
        TableError::Config(e)
    })?;
    Ok((table, file))
}

fn yaml_keys(
    cx: &Cx<'_>,
    raw: &RawConfig,
    ordered: &[Arc<Tier>],
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<Vec<KeySpec>, ConfigError> {
    let mut out = Vec::with_capacity(raw.keys.len());
    // id → (tier index, first entry) and digest → entry, to refuse conflicts with a position.
    let mut ids: HashMap<&str, (u16, usize)> = HashMap::new();
    let mut digests: HashMap<KeyDigest, usize> = HashMap::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let f = format!("keys[{i}]");
        if !is_label(&k.id) {
            return Err(cx.at(
                &format!("{f}.id"),
                "ids may use letters, digits, '_', '-' and '.' (at most 64)",
            ));
        }
        let digest = key_digest(cx, &f, k)?;
        let tier = ordered
            .iter()
            .position(|t| *t.name == *k.tier)
            .ok_or_else(|| cx.at(&format!("{f}.tier"), unknown_tier(&k.tier, tiers)))?
            as u16;
        let (had, first) = *ids.entry(&k.id).or_insert((tier, i));
        if had != tier {
            return Err(cx.at(
                &format!("{f}.tier"),
                format!(
                    "keys of one id must name one tier: id '{}' has '{}' here and '{}' at keys[{first}]",
                    k.id, k.tier, ordered[had as usize].name
                ),
            ));
        }
        if digests.insert(digest, i).is_some() {
            return Err(cx.at(
                &f,
                "this key is already assigned to another id (keys must be unique)",
            ));
        }
        let expires_ms = match &k.expires {
            Some(at) => Some(keys_file::rfc3339_ms(at.trim()).ok_or_else(|| {
                cx.at(
                    &format!("{f}.expires"),
                    "must be an RFC 3339 instant, such as 2027-01-01T00:00:00Z",
                )
            })?),
            None => None,
        };
        out.push(KeySpec {
            id: k.id.clone(),
            tier,
            digest,
            disabled: k.disabled,
            expires_ms,
        });
    }
    Ok(out)
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

/// The `keys_redis` section: it needs the `redis` section, whose connection it uses.
pub(super) fn keys_redis(
    cx: &Cx<'_>,
    raw: &RawConfig,
) -> Result<Option<KeysRedisSettings>, ConfigError> {
    let Some(k) = &raw.keys_redis else {
        return Ok(None);
    };
    if raw.redis.is_none() {
        return Err(cx.at(
            "keys_redis",
            "needs a `redis` section (the hash is read through its connection)",
        ));
    }
    let hash = k.hash.trim();
    if hash.is_empty() || hash.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.at("keys_redis.hash", "must be a Redis key name without spaces"));
    }
    if !(1..=10_000_000).contains(&k.cache) {
        return Err(cx.at("keys_redis.cache", "must be between 1 and 10000000"));
    }
    let ttl = k.ttl.0;
    if ttl < std::time::Duration::from_millis(100) || ttl > std::time::Duration::from_secs(86_400) {
        return Err(cx.at("keys_redis.ttl", "must be between 100ms and 1d"));
    }
    Ok(Some(KeysRedisSettings {
        hash: hash.to_string(),
        cache: k.cache as usize,
        ttl,
    }))
}
