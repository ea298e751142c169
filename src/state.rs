//! The configuration in force, swapped atomically with `arc-swap`.
//!
//! A [`Generation`] bundles a validated snapshot with the runtime objects the composition root
//! (`app::assemble`) built from it: upstream pools and the limiter with its store. Requests load
//! it once, lock-free, and keep it to the end; the proxy and the admin service only read it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::Snapshot;
use crate::keys_redis::RemoteKeys;
use crate::limiter::Limiter;
use crate::top_limited::TopLimited;
use crate::upstream::UpstreamPool;

pub struct Generation {
    pub number: u64,
    pub snapshot: Arc<Snapshot>,
    pub upstreams: HashMap<String, Arc<UpstreamPool>>,
    pub limiter: Arc<Limiter>,
    /// The `keys_redis` cache, handed on while its settings stay the same.
    pub remote_keys: Option<Arc<RemoteKeys>>,
    /// Who is being limited: one sketch for the process, handed from generation to generation.
    pub top: Arc<TopLimited>,
    /// When this generation was put in force.
    pub loaded_at: SystemTime,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("store", &self.limiter.store_kind())
            .finish()
    }
}

pub struct SharedState {
    current: ArcSwap<Generation>,
}

impl SharedState {
    pub fn new(first: Generation) -> Arc<Self> {
        Arc::new(SharedState {
            current: ArcSwap::from_pointee(first),
        })
    }

    /// The generation in force. One atomic increment; no lock, no allocation.
    pub fn load(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Puts `next` in force for every request that starts from now on.
    pub fn store(&self, next: Generation) {
        self.current.store(Arc::new(next));
    }
}
