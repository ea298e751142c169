//! Store key names: `<prefix>:{<identity>}:<limit name>:<algorithm suffix>`.
//!
//! The identity sits inside a Redis Cluster hash tag so that every limit of one identity lives
//! in one slot and one script call never crosses slots. The identity is a digest of the API key
//! (or `ip:<addr>`), so a raw key never reaches Redis.

use super::Limit;

/// Builds the keys of one request in one reusable buffer.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    prefix: String,
}

impl KeyBuilder {
    pub fn new(prefix: &str) -> Self {
        KeyBuilder {
            prefix: prefix.to_string(),
        }
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

    #[test]
    fn key_carries_hash_tag_and_suffix() {
        let limit = Limit {
            name: "per_minute".into(),
            requests: 60,
            window_ms: 60_000,
            algorithm: Algorithm::SlidingLog,
        };
        let kb = KeyBuilder::new("tollgate");
        assert_eq!(kb.key("k:abcd", &limit), "tollgate:{k:abcd}:per_minute:slr");
    }
}
