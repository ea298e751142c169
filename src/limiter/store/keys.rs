//! Store key names: `<prefix>:{<identity>}:<limit name>:<algorithm suffix>`, built once per
//! request for every store.
//!
//! The identity sits inside a Redis Cluster hash tag so that every limit of one budget lives in
//! one slot and one script call never crosses slots. The identity is a digest of the API key
//! (or `ip:<addr>`), so a raw key never reaches Redis.

use std::ops::Range;

use crate::limiter::{Budget, Limit};

/// Writes key names under one prefix.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    prefix: String,
}

/// The keys of one request, in budget and limit order, in one buffer: one allocation however
/// many limits.
#[derive(Debug, Default)]
pub struct KeySet {
    buf: String,
    ranges: Vec<Range<usize>>,
}

impl KeySet {
    pub fn get(&self, i: usize) -> &str {
        &self.buf[self.ranges[i].clone()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.ranges.iter().map(|r| &self.buf[r.clone()])
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl KeyBuilder {
    pub fn new(prefix: &str) -> Self {
        KeyBuilder {
            prefix: prefix.to_string(),
        }
    }

    /// Every key of `budgets`, in order.
    pub fn keys(&self, budgets: &[Budget<'_>]) -> KeySet {
        let n = crate::limiter::limit_count(budgets);
        let mut set = KeySet {
            buf: String::with_capacity(64 * n),
            ranges: Vec::with_capacity(n),
        };
        for b in budgets {
            for l in b.limits {
                let start = set.buf.len();
                self.write_key(&mut set.buf, b.identity, l);
                set.ranges.push(start..set.buf.len());
            }
        }
        set
    }

    /// Appends the key of `limit` for `identity` to `out`.
    pub fn write_key(&self, out: &mut String, identity: &str, limit: &Limit) {
        out.reserve(self.prefix.len() + identity.len() + limit.name.len() + 8);
        out.push_str(&self.prefix);
        out.push_str(":{");
        out.push_str(identity);
        out.push_str("}:");
        out.push_str(&limit.name);
        out.push(':');
        out.push_str(limit.algorithm.key_suffix());
    }

    /// The lease set of `identity`'s concurrency slots (`concurrency.lua`); no limit key
    /// ends in `:cc`.
    pub fn concurrency_key(&self, identity: &str) -> KeySet {
        let mut buf = String::with_capacity(self.prefix.len() + identity.len() + 20);
        buf.push_str(&self.prefix);
        buf.push_str(":{");
        buf.push_str(identity);
        buf.push_str("}:concurrency:cc");
        let whole = 0..buf.len();
        KeySet {
            ranges: std::iter::once(whole).collect(),
            buf,
        }
    }

    pub fn key(&self, identity: &str, limit: &Limit) -> String {
        let mut s = String::new();
        self.write_key(&mut s, identity, limit);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Algorithm;

    fn limit(name: &str) -> Limit {
        Limit {
            name: name.into(),
            requests: 60,
            window_ms: 60_000,
            algorithm: Algorithm::SlidingLog,
        }
    }

    #[test]
    fn key_carries_hash_tag_and_suffix() {
        let kb = KeyBuilder::new("tollgate");
        assert_eq!(
            kb.key("k:abcd", &limit("per_minute")),
            "tollgate:{k:abcd}:per_minute:slr"
        );
    }

    #[test]
    fn a_key_set_follows_budget_and_limit_order() {
        let kb = KeyBuilder::new("t");
        let a = [limit("x"), limit("y")];
        let b = [limit("z")];
        let set = kb.keys(&[Budget::new("k:1", &a), Budget::new("global", &b)]);
        let keys: Vec<&str> = set.iter().collect();
        assert_eq!(keys, ["t:{k:1}:x:slr", "t:{k:1}:y:slr", "t:{global}:z:slr"]);
        assert_eq!(set.get(2), "t:{global}:z:slr");
        assert_eq!(set.len(), 3);
    }
}
