//! The [`Limiter`]: a store plus what to do when it cannot answer.
//!
//! Order of a decision: an unlimited tier needs no store; a cached denial answers locally; an
//! open circuit breaker skips the store; otherwise the store decides within `timeout_ms`. When
//! the store fails, `on_error` picks fail-open, fail-closed or the in-process limits, for that
//! call only.
//!
//! A call that timed out is not thrown away: it keeps running in a task of its own (at most
//! [`MAX_LATE_CALLS`] at once) and, when Redis answers after all, a denial warms the over-limit
//! cache (the client already over its limit is refused again without a round trip) and the
//! breaker learns that the store is alive.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::{Breaker, BreakerState, Observer, Permit};
use super::over_limit_cache::OverLimitCache;
use super::store::LateAnswer;
use super::{
    Budget, Clock, Lease, MemoryStore, OnError, RedisSettings, Store, StoreError, Verdict,
};
use crate::metrics;

/// Timed-out calls kept waiting for their late answer at once, per limiter: bounds the memory
/// an outage can tie up before the breaker opens.
pub const MAX_LATE_CALLS: usize = 10_000;

/// Who produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configured store (Redis, or memory when there is no Redis).
    Store,
    /// The over-limit cache: a denial Redis gave earlier, still running.
    Cache,
    /// The in-process fallback during a store failure (`on_error: local`).
    Local,
}

/// The answer to [`Limiter::acquire_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOutcome {
    /// The request holds a slot; `local`: in the in-process store (release it there).
    Held { local: bool },
    /// Every slot is taken.
    Full { retry_ms: u64 },
    /// The store failed: admitted without a slot (`on_error: fail_open`).
    FailOpen(StoreError),
    /// The store failed: refused (`on_error: fail_closed`).
    FailClosed(StoreError),
}

impl SlotOutcome {
    fn from_lease(lease: Lease, local: bool) -> Self {
        match lease {
            Lease::Granted => SlotOutcome::Held { local },
            Lease::Full { retry_ms } => SlotOutcome::Full { retry_ms },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Decided {
        verdict: Verdict,
        source: Source,
    },
    /// The store failed and `on_error: fail_open` lets the request through unlimited.
    FailOpen(StoreError),
    /// The store failed and `on_error: fail_closed` refuses the request.
    FailClosed(StoreError),
}

pub struct Limiter {
    primary: Arc<dyn Store>,
    local: Arc<MemoryStore>,
    on_error: OnError,
    timeout: Duration,
    breaker: Arc<Breaker>,
    over_limit: Option<Arc<OverLimitCache>>,
    late_calls: Arc<AtomicUsize>,
    last_fallback_log_ms: AtomicU64,
    epoch: Instant,
    settings: Option<RedisSettings>,
}

impl Limiter {
    /// Single node, no Redis: the in-process store is the store.
    pub fn in_memory(local: Arc<MemoryStore>) -> Self {
        Limiter {
            primary: local.clone(),
            local,
            on_error: OnError::FailOpen,
            timeout: Duration::from_secs(1),
            breaker: Arc::new(Breaker::disabled()),
            over_limit: None,
            late_calls: Arc::default(),
            last_fallback_log_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            settings: None,
        }
    }

    /// `primary` (a Redis store built from `settings`) with the failure policy of `settings`.
    pub fn with_store(
        primary: Arc<dyn Store>,
        settings: &RedisSettings,
        local: Arc<MemoryStore>,
    ) -> Self {
        metrics::breaker_state(BreakerState::Closed as i64);
        let observer: Observer = Box::new(|t| {
            metrics::breaker_state(t.to as i64);
            metrics::breaker_transition(t.to.label(), t.open_for);
        });
        Limiter {
            primary,
            local,
            on_error: settings.on_error,
            timeout: settings.timeout,
            breaker: Arc::new(
                Breaker::new(settings.breaker, Some(observer)).with_call_budget(settings.timeout),
            ),
            over_limit: settings
                .over_limit_cache
                .then(|| Arc::new(OverLimitCache::new(Clock::Store))),
            late_calls: Arc::default(),
            last_fallback_log_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            settings: Some(settings.clone()),
        }
    }

    /// The over-limit cache on `clock`: the clock the store decides at (a manual clock in tests;
    /// the default stands in for Redis `TIME` with the local monotonic clock).
    pub fn with_cache_clock(mut self, clock: Clock) -> Self {
        if self.over_limit.is_some() {
            self.over_limit = Some(Arc::new(OverLimitCache::new(clock)));
        }
        self
    }

    /// The Redis settings this limiter was built from (None: in-memory). A reload with equal
    /// settings keeps this limiter, its connection and its breaker.
    pub fn settings(&self) -> Option<&RedisSettings> {
        self.settings.as_ref()
    }

    pub fn store_kind(&self) -> &'static str {
        self.primary.kind()
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Decides one request. The over-limit cache keys a denial by every budget's identity and
    /// `scope` (the tier, route and method the budgets were planned for), and `generation`
    /// ties it to the config it was made under.
    pub async fn decide(
        &self,
        budgets: &[Budget<'_>],
        cost: u64,
        scope: &str,
        generation: u64,
    ) -> Outcome {
        if super::limit_count(budgets) == 0 {
            return Outcome::Decided {
                verdict: Verdict {
                    allowed: true,
                    outcomes: Vec::new(),
                },
                source: Source::Store,
            };
        };
        if let Some(cache) = &self.over_limit {
            if let Some(verdict) =
                cache.get(budgets.iter().map(|b| b.identity), scope, generation, cost)
            {
                return Outcome::Decided {
                    verdict,
                    source: Source::Cache,
                };
            }
        }
        let permit = self.breaker.permit();
        if let Permit::Reject = permit {
            metrics::store_error(StoreError::CircuitOpen.kind());
            return self.fallback(StoreError::CircuitOpen, budgets, cost);
        }
        match self.primary.check_keeping_late(budgets, cost).await {
            Ok(verdict) => {
                self.breaker.record(permit, false);
                if let Some(cache) = &self.over_limit {
                    cache.put(
                        budgets.iter().map(|b| b.identity),
                        (scope, generation),
                        cost,
                        &verdict,
                    );
                }
                Outcome::Decided {
                    verdict,
                    source: Source::Store,
                }
            }
            Err((e, late)) => {
                metrics::store_error(e.kind());
                self.breaker.record(permit, true);
                if let Some(late) = late {
                    let identities = budgets.iter().map(|b| b.identity.to_owned()).collect();
                    self.await_late_answer(late, identities, (scope, generation), cost);
                }
                self.fallback(e, budgets, cost)
            }
        }
    }

    /// Lets a timed-out call finish in the background; see the module docs.
    fn await_late_answer(
        &self,
        late: LateAnswer,
        identities: Vec<String>,
        (scope, generation): (&str, u64),
        cost: u64,
    ) {
        if self.late_calls.fetch_add(1, Ordering::AcqRel) >= MAX_LATE_CALLS {
            self.late_calls.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let in_flight = self.late_calls.clone();
        let breaker = self.breaker.clone();
        let cache = self.over_limit.clone();
        let scope = scope.to_owned();
        tokio::spawn(async move {
            if let Ok(verdict) = late.await {
                breaker.late_answer();
                if let Some(cache) = cache {
                    cache.put(
                        identities.iter().map(String::as_str),
                        (&scope, generation),
                        cost,
                        &verdict,
                    );
                }
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    fn fallback(&self, e: StoreError, budgets: &[Budget<'_>], cost: u64) -> Outcome {
        self.log_fallback(&e);
        match self.on_error {
            OnError::FailOpen => Outcome::FailOpen(e),
            OnError::FailClosed => Outcome::FailClosed(e),
            OnError::Local => Outcome::Decided {
                verdict: self.local.check_sync(budgets, cost),
                source: Source::Local,
            },
        }
    }

    /// At most one line per second, so an outage does not flood the log.
    fn log_fallback(&self, e: &StoreError) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_fallback_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_fallback_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "rate-limit store unavailable ({e}); applying on_error={:?}",
                self.on_error
            );
        }
    }

    /// The usage of `budgets` in the store, charging nothing (the admin API).
    pub async fn peek(&self, budgets: &[Budget<'_>]) -> Result<Vec<super::Usage>, StoreError> {
        self.primary.peek(budgets).await
    }

    /// Clears the counters of `budgets` in the store and, so that a fallback during an outage
    /// starts fresh too, in the in-process store.
    pub async fn reset(&self, budgets: &[Budget<'_>]) -> Result<(), StoreError> {
        self.local.reset_sync(budgets);
        let result = self.primary.reset(budgets).await;
        // After the store forgot, so a request in between cannot cache a stale denial again.
        if let Some(cache) = &self.over_limit {
            cache.clear();
        }
        result
    }

    /// Takes a concurrency slot of `identity` (at most `max` in flight) for the request
    /// `token`. The store's failure policy applies as for a check; an open breaker skips the
    /// store.
    pub async fn acquire_slot(&self, identity: &str, token: u64, max: u64) -> SlotOutcome {
        let lease = self
            .settings
            .as_ref()
            .map_or(super::DEFAULT_CONCURRENCY_LEASE, |s| s.concurrency_lease);
        let res = match self.breaker.is_open() {
            true => Err(StoreError::CircuitOpen),
            false => self.primary.acquire(identity, token, max, lease).await,
        };
        let local = match res {
            Ok(lease) => return SlotOutcome::from_lease(lease, self.settings.is_none()),
            Err(e) => e,
        };
        metrics::store_error(local.kind());
        self.log_fallback(&local);
        match self.on_error {
            OnError::FailOpen => SlotOutcome::FailOpen(local),
            OnError::FailClosed => SlotOutcome::FailClosed(local),
            OnError::Local => {
                SlotOutcome::from_lease(self.local.acquire_sync(identity, token, max, lease), true)
            }
        }
    }

    /// Gives a slot back, in the background: called from a drop, it must not wait. Without a
    /// runtime (never on the proxy) the lease frees the slot.
    pub fn release_slot(self: &Arc<Self>, identity: Box<str>, token: u64, local: bool) {
        if local {
            self.local.release_sync(&identity, token);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limiter = self.clone();
        rt.spawn(async move {
            if let Err(e) = limiter.primary.release(&identity, token).await {
                metrics::store_error(e.kind());
                log::debug!("concurrency slot not released ({e}); its lease frees it");
            }
        });
    }

    /// `HGET hash field` in the store within `timeout_ms` (the `keys_redis` lookup).
    pub async fn lookup_key(&self, hash: &str, field: &str) -> Result<Option<String>, StoreError> {
        tokio::time::timeout(self.timeout, self.primary.hget(hash, field))
            .await
            .unwrap_or(Err(StoreError::Timeout))
    }

    /// For `/readyz`: the store answers a PING within `timeout_ms`.
    pub async fn ready(&self) -> Result<(), StoreError> {
        tokio::time::timeout(self.timeout, self.primary.ping())
            .await
            .unwrap_or(Err(StoreError::Timeout))
    }
}
