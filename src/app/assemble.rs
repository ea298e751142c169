//! The composition root's builder: turns a validated [`Snapshot`] into a [`Generation`] (upstream
//! pools, and the limiter with its store) and puts it in force, at start and on every reload.
//!
//! What a reload leaves unchanged is carried over: an upstream pool with equal settings keeps
//! its health state, and a limiter with equal Redis settings keeps its connection and breaker.
//! The in-process store is process-wide, so local counters survive reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::reload::ApplyConfig;
use crate::config::Snapshot;
use crate::keys_redis::RemoteKeys;
use crate::limiter::{Clock, Limiter, MemoryStore, RedisSettings, RedisStore};
use crate::state::{Generation, SharedState};
use crate::top_limited::TopLimited;
use crate::upstream::UpstreamPool;

pub struct Assembler {
    state: Arc<SharedState>,
    memory: Arc<MemoryStore>,
    top: Arc<TopLimited>,
    counter: AtomicU64,
}

impl Assembler {
    /// Builds generation 1 from `snapshot` and the state that holds it.
    pub fn start(snapshot: Snapshot) -> Result<Self, String> {
        let memory = Arc::new(MemoryStore::new());
        // Expired entries go within a second, with or without traffic.
        memory.start_sweeper(std::time::Duration::from_secs(1));
        let top = Arc::new(TopLimited::new());
        let first = build(1, snapshot, None, &memory, &top)?;
        Ok(Assembler {
            state: SharedState::new(first),
            memory,
            top,
            counter: AtomicU64::new(1),
        })
    }

    pub fn state(&self) -> Arc<SharedState> {
        self.state.clone()
    }
}

fn build(
    number: u64,
    snapshot: Snapshot,
    previous: Option<&Generation>,
    memory: &Arc<MemoryStore>,
    top: &Arc<TopLimited>,
) -> Result<Generation, String> {
    crate::log_redact::set_key_header(snapshot.key_header.as_str());
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
    memory.set_max_identities(snapshot.memory_max_identities);
    let limiter = match (previous, &snapshot.redis) {
        (Some(p), redis) if p.limiter.settings() == redis.as_ref() => p.limiter.clone(),
        (_, Some(redis)) => Arc::new(redis_limiter(redis, memory)),
        (_, None) => Arc::new(Limiter::in_memory(memory.clone())),
    };
    let remote_keys = snapshot.keys_redis.as_ref().map(|settings| {
        previous
            .and_then(|p| p.remote_keys.clone())
            .filter(|r| r.settings() == settings)
            .unwrap_or_else(|| Arc::new(RemoteKeys::new(settings.clone())))
    });
    Ok(Generation {
        number,
        snapshot: Arc::new(snapshot),
        upstreams,
        limiter,
        remote_keys,
        top: top.clone(),
        loaded_at: SystemTime::now(),
    })
}

/// A Redis store on Redis's own clock, behind the failure policy of `settings`. Does not
/// connect yet.
fn redis_limiter(settings: &RedisSettings, memory: &Arc<MemoryStore>) -> Limiter {
    let store = RedisStore::new(
        settings.target.clone(),
        &settings.key_prefix,
        settings.timeout,
        Clock::Store,
    )
    .with_late_horizon(settings.breaker.late_answer_horizon());
    Limiter::with_store(Arc::new(store), settings, memory.clone())
}

impl ApplyConfig for Assembler {
    fn apply(&self, snapshot: Snapshot) -> Result<u64, String> {
        let current = self.state.load();
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
        let next = build(number, snapshot, Some(&current), &self.memory, &self.top)?;
        self.state.store(next);
        Ok(number)
    }

    fn current_hash(&self) -> [u8; 32] {
        self.state.load().snapshot.content_hash
    }

    fn current_snapshot(&self) -> Arc<Snapshot> {
        self.state.load().snapshot.clone()
    }
}
