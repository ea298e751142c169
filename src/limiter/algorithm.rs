//! The four limiting algorithms and their wire codes, shared by every store.

use std::fmt;
use std::str::FromStr;

/// How a limit counts requests. Every store implements all four with identical answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Exact: a log of timestamps; at most `requests` in any window of length `window`.
    #[default]
    SlidingLog,
    /// Two fixed-window counters, the previous one weighted by its overlap (Cloudflare's estimate).
    SlidingWindow,
    /// One counter per aligned window; up to 2x the limit can pass across a boundary.
    FixedWindow,
    /// GCRA: a theoretical arrival time per key; bursts up to `requests`, refills steadily.
    TokenBucket,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::TokenBucket,
    ];

    /// The number the Lua dispatcher switches on (`scripts/redis/ratelimit.lua`).
    pub fn code(self) -> u8 {
        match self {
            Algorithm::SlidingLog => 1,
            Algorithm::SlidingWindow => 2,
            Algorithm::FixedWindow => 3,
            Algorithm::TokenBucket => 4,
        }
    }

    /// The suffix of the store key. Each algorithm keeps a different data structure, so a limit
    /// that changes algorithm on reload starts a fresh counter instead of hitting WRONGTYPE.
    pub fn key_suffix(self) -> &'static str {
        match self {
            Algorithm::SlidingLog => "slr",
            Algorithm::SlidingWindow => "sw",
            Algorithm::FixedWindow => "fw",
            Algorithm::TokenBucket => "tb",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::TokenBucket => "token_bucket",
        }
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown algorithm '{s}' (expected sliding_log, sliding_window, fixed_window or token_bucket)"
                )
            })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
