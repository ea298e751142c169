//! The compact key table: every configured API key by digest, in a few bytes each.
//!
//! A million keys must load in about a second and cost tens of megabytes, so nothing here is a
//! per-key allocation. A key is a 20-byte row (the first 128 bits of its SHA-256 and a 32-bit
//! reference to its id, two bits of which are flags) in one vector sorted by digest, found
//! through a bucket index on the digest's leading bits: digests are uniform, so a bucket holds
//! about one row and a lookup touches two cache lines whatever the table's size. Ids are
//! interned once, in one text arena, each with the index of its tier (all keys of an id share
//! one tier). The keys that have an `expires` instant keep it in a side table that is read only
//! when the row's flag says so, so the clock is read only for them.
//!
//! 128 bits of SHA-256 keep keys apart: forging a key that matches a configured one takes
//! 2^128 tries, and two configured keys that agree on them are refused like duplicates.

use std::sync::Arc;

use hashbrown::HashTable;
use subtle::ConstantTimeEq;

use super::snapshot::Tier;
use crate::identity::KeyDigest;

/// The part of a key's digest the table keeps.
pub type ShortDigest = [u8; 16];

const DISABLED: u32 = 1 << 31;
const EXPIRES: u32 = 1 << 30;
const ID_MASK: u32 = EXPIRES - 1;
/// The most ids one table holds (the flag bits take the rest of a row's id reference).
pub const MAX_IDS: u32 = ID_MASK;

#[derive(Debug, Clone, Copy)]
struct Row {
    digest: ShortDigest,
    /// Index into the ids, with the `DISABLED` and `EXPIRES` flags.
    id: u32,
}

/// Interned ids: one text arena, the end of each id in it, and each id's tier.
#[derive(Debug, Default)]
struct Ids {
    text: String,
    ends: Vec<u32>,
    tiers: Vec<u16>,
}

impl Ids {
    fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn len(&self) -> u32 {
        self.ends.len() as u32
    }
}

/// What a digest is in the table.
#[derive(Debug)]
pub enum Lookup<'a> {
    Active(KeyRef<'a>),
    Expired,
    Disabled,
}

/// A configured id and its tier.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    /// The id's position among the table's ids (0..id_count()).
    pub index: usize,
    pub id: &'a str,
    pub tier: &'a Arc<Tier>,
}

pub struct KeyTable {
    rows: Vec<Row>,
    /// Bucket `b` holds `rows[starts[b]..starts[b + 1]]`.
    starts: Vec<u32>,
    /// A digest's bucket is its leading 32 bits shifted right by this much.
    shift: u32,
    /// Sorted by digest: the expiry instants (Unix ms) of the rows flagged `EXPIRES`.
    expiries: Vec<(ShortDigest, i64)>,
    ids: Ids,
    tiers: Vec<Arc<Tier>>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("keys", &self.rows.len())
            .field("ids", &self.ids.len())
            .finish()
    }
}

fn short(digest: &KeyDigest) -> ShortDigest {
    let mut s = [0u8; 16];
    s.copy_from_slice(&digest[..16]);
    s
}

fn lead(d: &ShortDigest) -> u64 {
    u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl KeyTable {
    /// A table with no key (an empty builder cannot fail).
    pub fn empty() -> Self {
        KeyTableBuilder::new(Vec::new(), 0)
            .finish()
            .unwrap_or_else(|_| unreachable!("an empty table has no duplicate"))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The number of distinct ids.
    pub fn id_count(&self) -> usize {
        self.ids.len() as usize
    }

    /// The tiers the rows' indices refer to.
    pub fn tiers(&self) -> &[Arc<Tier>] {
        &self.tiers
    }

    /// Looks a digest up; `now_ms` is called only for a key with an expiry.
    pub fn get(&self, digest: &KeyDigest, now_ms: impl FnOnce() -> i64) -> Option<Lookup<'_>> {
        let d = short(digest);
        let b = (lead(&d) >> self.shift) as usize;
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let row = self.rows[lo..hi]
            .iter()
            .find(|r| bool::from(r.digest.ct_eq(&d)))?;
        if row.id & DISABLED != 0 {
            return Some(Lookup::Disabled);
        }
        if row.id & EXPIRES != 0 {
            let at = self
                .expiries
                .binary_search_by(|(k, _)| k.cmp(&d))
                .map_or(i64::MIN, |i| self.expiries[i].1);
            if now_ms() >= at {
                return Some(Lookup::Expired);
            }
        }
        Some(Lookup::Active(self.key_ref(row.id & ID_MASK)))
    }

    fn key_ref(&self, id: u32) -> KeyRef<'_> {
        KeyRef {
            index: id as usize,
            id: self.ids.get(id),
            tier: &self.tiers[self.ids.tiers[id as usize] as usize],
        }
    }

    /// The id named `id` and its tier: a scan of the ids, for the admin API only.
    pub fn by_id(&self, id: &str) -> Option<KeyRef<'_>> {
        (0..self.ids.len())
            .find(|&i| self.ids.get(i) == id)
            .map(|i| self.key_ref(i))
    }
}

/// Two keys with the same digest, by the indices of their ids.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub digest: ShortDigest,
    pub first: String,
    pub second: String,
}

/// Why an id could not be interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternError {
    /// The id is known with another tier (all keys of one id share one tier).
    Tier { index: u32, tier: u16 },
    /// The table holds [`MAX_IDS`] ids.
    Full,
}

/// One key as `keys:` configured it, kept to rebuild the table when only the keys file changed.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub id: String,
    /// Index into the table's tiers (sorted by name).
    pub tier: u16,
    pub digest: KeyDigest,
    pub disabled: bool,
    pub expires_ms: Option<i64>,
}

/// Builds a [`KeyTable`] key by key, without a per-key allocation.
pub struct KeyTableBuilder {
    rows: Vec<Row>,
    expiries: Vec<(ShortDigest, i64)>,
    ids: Ids,
    intern: HashTable<u32>,
    hasher: ahash::RandomState,
    tiers: Vec<Arc<Tier>>,
}

impl KeyTableBuilder {
    /// `tiers` in the order their indices refer to; `rows_hint` sizes the vectors.
    pub fn new(tiers: Vec<Arc<Tier>>, rows_hint: usize) -> Self {
        KeyTableBuilder {
            rows: Vec::with_capacity(rows_hint),
            expiries: Vec::new(),
            ids: Ids::default(),
            intern: HashTable::new(),
            hasher: ahash::RandomState::new(),
            tiers,
        }
    }

    /// The index of the tier named `name`.
    pub fn tier_index(&self, name: &[u8]) -> Option<u16> {
        self.tiers
            .iter()
            .position(|t| t.name.as_bytes() == name)
            .map(|i| i as u16)
    }

    pub fn tier_name(&self, index: u16) -> &str {
        &self.tiers[index as usize].name
    }

    /// Room for `rows` more keys.
    pub fn reserve(&mut self, rows: usize) {
        self.rows.reserve(rows);
        let (ids, hasher) = (&self.ids, &self.hasher);
        self.intern.reserve(rows, |&j| hasher.hash_one(ids.get(j)));
    }

    pub fn tier_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tiers.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        names
    }

    /// The number of ids interned so far.
    pub fn id_count(&self) -> u32 {
        self.ids.len()
    }

    /// The index of `id`, interned with `tier` on first sight.
    pub fn intern(&mut self, id: &str, tier: u16) -> Result<u32, InternError> {
        let hash = self.hasher.hash_one(id);
        let ids = &self.ids;
        if let Some(&i) = self.intern.find(hash, |&i| ids.get(i) == id) {
            let had = self.ids.tiers[i as usize];
            return match had == tier {
                true => Ok(i),
                false => Err(InternError::Tier {
                    index: i,
                    tier: had,
                }),
            };
        }
        let i = self.ids.len();
        if i >= MAX_IDS {
            return Err(InternError::Full);
        }
        self.ids.text.push_str(id);
        self.ids.ends.push(self.ids.text.len() as u32);
        self.ids.tiers.push(tier);
        let (ids, hasher) = (&self.ids, &self.hasher);
        self.intern
            .insert_unique(hash, i, |&j| hasher.hash_one(ids.get(j)));
        Ok(i)
    }

    /// The name of interned id `index`.
    pub fn id_name(&self, index: u32) -> &str {
        self.ids.get(index)
    }

    /// Adds a key of interned id `id`.
    pub fn push(&mut self, digest: &KeyDigest, id: u32, disabled: bool, expires_ms: Option<i64>) {
        let d = short(digest);
        let mut flags = id & ID_MASK;
        if disabled {
            flags |= DISABLED;
        }
        if let Some(at) = expires_ms {
            flags |= EXPIRES;
            self.expiries.push((d, at));
        }
        self.rows.push(Row {
            digest: d,
            id: flags,
        });
    }

    /// Sorts the rows and builds the bucket index. Two keys with one digest are refused.
    pub fn finish(self) -> Result<KeyTable, Duplicate> {
        let KeyTableBuilder {
            mut rows,
            mut expiries,
            mut ids,
            intern,
            tiers,
            ..
        } = self;
        drop(intern);
        rows.sort_unstable_by_key(|a| a.digest);
        if let Some(w) = rows.windows(2).find(|w| w[0].digest == w[1].digest) {
            return Err(Duplicate {
                digest: w[0].digest,
                first: ids.get(w[0].id & ID_MASK).to_string(),
                second: ids.get(w[1].id & ID_MASK).to_string(),
            });
        }
        rows.shrink_to_fit();
        expiries.sort_unstable_by_key(|a| a.0);
        expiries.shrink_to_fit();
        ids.text.shrink_to_fit();
        ids.ends.shrink_to_fit();
        ids.tiers.shrink_to_fit();
        // About one row per bucket: 2^bits buckets for at least as many rows.
        let bits = rows
            .len()
            .max(16)
            .next_power_of_two()
            .trailing_zeros()
            .min(28);
        let shift = 32 - bits;
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for r in &rows {
            starts[(lead(&r.digest) >> shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        Ok(KeyTable {
            rows,
            starts,
            shift,
            expiries,
            ids,
            tiers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::digest;

    fn tier(name: &str) -> Arc<Tier> {
        Arc::new(Tier {
            name: name.into(),
            index: 0,
            concurrency: None,
            limits: Vec::new(),
            shadow: false,
            limit_headers: Vec::new(),
        })
    }

    #[test]
    fn finds_every_key_and_no_other() {
        let mut b = KeyTableBuilder::new(vec![tier("free"), tier("paid")], 0);
        for i in 0..5000u32 {
            let id = b
                .intern(&format!("id{}", i / 2), (i % 2 / 2) as u16)
                .unwrap();
            b.push(&digest(format!("key-{i}").as_bytes()), id, false, None);
        }
        let t = b.finish().unwrap();
        assert_eq!((t.len(), t.id_count()), (5000, 2500));
        for i in 0..5000u32 {
            match t.get(&digest(format!("key-{i}").as_bytes()), || 0) {
                Some(Lookup::Active(k)) => assert_eq!(k.id, format!("id{}", i / 2)),
                other => panic!("key-{i}: {other:?}"),
            }
        }
        assert!(t.get(&digest(b"key-5000"), || 0).is_none());
        assert!(KeyTable::empty().get(&digest(b"x"), || 0).is_none());
    }

    #[test]
    fn flags_expiry_tiers_and_duplicates() {
        let mut b = KeyTableBuilder::new(vec![tier("free"), tier("paid")], 0);
        let a = b.intern("a", 0).unwrap();
        assert_eq!(
            b.intern("a", 1),
            Err(InternError::Tier { index: 0, tier: 0 })
        );
        assert_eq!(b.intern("a", 0), Ok(a));
        b.push(&digest(b"off"), a, true, None);
        b.push(&digest(b"soon"), a, false, Some(1000));
        let t = b.finish().unwrap();
        assert!(matches!(
            t.get(&digest(b"off"), || 0),
            Some(Lookup::Disabled)
        ));
        assert!(matches!(
            t.get(&digest(b"soon"), || 999),
            Some(Lookup::Active(_))
        ));
        assert!(matches!(
            t.get(&digest(b"soon"), || 1000),
            Some(Lookup::Expired)
        ));
        assert_eq!(
            t.by_id("a").map(|k| k.tier.name.to_string()),
            Some("free".into())
        );

        let mut b = KeyTableBuilder::new(vec![tier("free")], 0);
        let (x, y) = (b.intern("x", 0).unwrap(), b.intern("y", 0).unwrap());
        b.push(&digest(b"same"), x, false, None);
        b.push(&digest(b"same"), y, false, None);
        let d = b.finish().unwrap_err();
        assert_eq!((d.first.as_str(), d.second.as_str()).0.len(), 1);
    }
}
