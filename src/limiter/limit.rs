//! One limit of a tier, in the form the stores consume.

use std::sync::Arc;

use super::Algorithm;

/// `requests` units per `window_ms`, counted by `algorithm`.
///
/// `name` is part of the store key, so two tiers with a limit of the same name and algorithm
/// share the identity's counter: a key moved from one tier to another keeps its usage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    pub name: Arc<str>,
    pub requests: u64,
    pub window_ms: u64,
    pub algorithm: Algorithm,
}
