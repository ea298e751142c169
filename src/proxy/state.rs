//! The configuration in force, swapped atomically with `arc-swap`.
//!
//! A [`Generation`] bundles a validated snapshot with the runtime objects built from it
//! (upstream pools, the limiter). Requests load it once, lock-free, and keep it to the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::UpstreamPool;
use crate::config::reload::ApplyConfig;
use crate::config::Snapshot;
use crate::limiter::{Limiter, MemoryStore};

#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub snapshot: Arc<Snapshot>,
    pub upstreams: HashMap<String, Arc<UpstreamPool>>,
    pub limiter: Arc<Limiter>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("store", &self.store_kind())
            .finish()
    }
}

pub struct SharedState {
    current: ArcSwap<Generation>,
    /// Process-wide, so in-process counters survive reloads.
    memory: Arc<MemoryStore>,
    counter: AtomicU64,
}

impl SharedState {
    pub fn new(snapshot: Snapshot) -> Result<Arc<Self>, String> {
        let memory = Arc::new(MemoryStore::new());
        let generation = build(1, snapshot, None, &memory)?;
        Ok(Arc::new(SharedState {
            current: ArcSwap::from_pointee(generation),
            memory,
            counter: AtomicU64::new(1),
        }))
    }

    /// The generation in force. One atomic increment; no lock, no allocation.
    pub fn load(&self) -> Arc<Generation> {
        self.current.load_full()
    }
}

fn build(
    number: u64,
    snapshot: Snapshot,
    previous: Option<&Generation>,
    memory: &Arc<MemoryStore>,
) -> Result<Generation, String> {
    let mut upstreams = HashMap::new();
    for (name, settings) in &snapshot.upstreams {
        let reuse = previous
            .and_then(|p| p.upstreams.get(name))
            .filter(|p| &p.settings == settings)
            .cloned();
        let pool = match reuse {
            Some(p) => p,
            None => Arc::new(UpstreamPool::build(settings)?),
        };
        upstreams.insert(name.clone(), pool);
    }
    let limiter = match (previous, &snapshot.redis) {
        (Some(p), redis) if p.limiter.settings() == redis.as_ref() => p.limiter.clone(),
        (_, Some(redis)) => Arc::new(Limiter::redis(redis, memory.clone())),
        (_, None) => Arc::new(Limiter::in_memory(memory.clone())),
    };
    Ok(Generation {
        number,
        snapshot: Arc::new(snapshot),
        upstreams,
        limiter,
    })
}

impl ApplyConfig for SharedState {
    fn apply(&self, snapshot: Snapshot) -> Result<u64, String> {
        let current = self.load();
        let (old, new) = (&current.snapshot.listen, &snapshot.listen);
        if old.len() != new.len() || old.iter().zip(new).any(|(a, b)| !a.same_socket(b)) {
            let addrs = |l: &[crate::config::ListenerSettings]| {
                l.iter().map(|l| l.addr.clone()).collect::<Vec<_>>()
            };
            return Err(format!(
                "`listen` changed from {:?} to {:?} (addresses, tls, min_version or http2): listeners cannot change on reload, run a graceful upgrade (tollgate -u) instead",
                addrs(old), addrs(new)
            ));
        }
        if snapshot.admin_listen != current.snapshot.admin_listen {
            return Err(format!(
                "`admin_listen` changed from {} to {}: listeners cannot change on reload, run a graceful upgrade (tollgate -u) instead",
                current.snapshot.admin_listen, snapshot.admin_listen
            ));
        }
        let number = self.counter.fetch_add(1, Ordering::AcqRel) + 1;
        let next = build(number, snapshot, Some(&current), &self.memory)?;
        self.current.store(Arc::new(next));
        Ok(number)
    }

    fn current_hash(&self) -> [u8; 32] {
        self.load().snapshot.content_hash
    }
}
