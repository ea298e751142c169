//! A request's concurrency slot (`tiers.<name>.concurrency`): taken in `request_filter` before
//! the rate limits, given back when the request ends, however it ends.
//!
//! The slot lives in the request's context. `logging` (the last phase, which Pingora runs for a
//! finished request, an upstream error, a timeout, a client that went away and a WebSocket that
//! closed alike) drops it; a context dropped any other way drops it too. Dropping spawns the
//! release, so nothing waits on it. A replica that dies holding slots leaks them until their
//! lease (`redis.concurrency_lease`) runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use once_cell::sync::Lazy;

use crate::limiter::Limiter;

/// Per process, so tokens of two replicas do not meet in one lease set.
static NONCE: Lazy<u64> = Lazy::new(|| u64::from(rand::random::<u32>() >> 1) << 32);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A token for one request: unique per process (32 bits of counter) and, with overwhelming
/// likelihood, across replicas (31 random bits); below 2^63, as the store scripts take it.
pub fn next_token() -> u64 {
    *NONCE | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

pub struct Slot {
    limiter: Arc<Limiter>,
    identity: Box<str>,
    token: u64,
    local: bool,
}

impl Slot {
    pub fn new(limiter: Arc<Limiter>, identity: &str, token: u64, local: bool) -> Self {
        Slot {
            limiter,
            identity: identity.into(),
            token,
            local,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let identity = std::mem::take(&mut self.identity);
        self.limiter.release_slot(identity, self.token, self.local);
    }
}
