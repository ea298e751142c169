//! The Redis backend: one Lua script call decides every limit of a request atomically.
//!
//! The script (`scripts/redis/*.lua`, concatenated at compile time) runs with EVALSHA and falls
//! back to loading itself on NOSCRIPT, which also covers a failover to a replica that never saw
//! it. The connection is a single multiplexed connection (or cluster connection) created lazily
//! on the runtime of its first caller, the proxy's, with no lock and no pool. On a single Redis,
//! decisions go through a dispatcher (`batch.rs`) that sends every request waiting at that moment
//! as one script call; on a cluster each request is its own call (see `batch.rs` for why).
//!
//! Outages: no request ever waits for a connection longer than its own `timeout_ms` (every call
//! is wrapped in a timeout), but connecting is never *tied* to a request either (`single.rs`
//! redials in the background). A check that misses its budget is handed back still running
//! ([`Store::check_keeping_late`]): redis-rs waits for its answer up to the late-answer horizon,
//! so that the limiter can use an answer that comes after all.
//!
//! Redis Cluster (`cluster.rs`): the cluster connection is likewise created without waiting
//! (redis-rs connects in the background), and MOVED, ASK, NOSCRIPT and TRYAGAIN are handled
//! there within the request's budget, falling back to `EVAL` rather than a cluster-wide
//! `SCRIPT LOAD` and sending `ASKING` in one pipeline with the call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::RedisError;
use tokio::sync::OnceCell;

use super::{KeyBuilder, KeySet, LateAnswer, Lease, Store, StoreError};
use crate::limiter::{limit_count, Budget, Clock, RedisTarget, Usage, Verdict};
use crate::metrics;
use decode::{classify, decode, decode_usage};

mod batch;
mod cluster;
mod decode;
mod leases;
mod single;
mod split;
use batch::Batcher;
use cluster::ClusterConn;
pub use leases::CONCURRENCY_LUA;
pub use split::{slot_of, REFUND_LUA};

static RATELIMIT_SHA: once_cell::sync::Lazy<String> =
    once_cell::sync::Lazy::new(|| redis::Script::new(RATELIMIT_LUA).get_hash().to_string());
static REFUND_SHA: once_cell::sync::Lazy<String> =
    once_cell::sync::Lazy::new(|| redis::Script::new(REFUND_LUA).get_hash().to_string());

fn ratelimit_sha() -> &'static str {
    &RATELIMIT_SHA
}

fn refund_sha() -> &'static str {
    &REFUND_SHA
}

/// The four algorithms, which every script that reads counters starts with.
macro_rules! algorithms {
    () => {
        concat!(
            include_str!("../../../../scripts/redis/sliding_log.lua"),
            "\n",
            include_str!("../../../../scripts/redis/sliding_window.lua"),
            "\n",
            include_str!("../../../../scripts/redis/fixed_window.lua"),
            "\n",
            include_str!("../../../../scripts/redis/token_bucket.lua"),
            "\n",
        )
    };
}

/// The shipped script: the four algorithms, then the dispatcher that calls them.
pub const RATELIMIT_LUA: &str = concat!(
    algorithms!(),
    include_str!("../../../../scripts/redis/ratelimit.lua")
);
/// The read-only usage script of the admin API.
pub const PEEK_LUA: &str = concat!(
    algorithms!(),
    include_str!("../../../../scripts/redis/peek.lua")
);
/// Clears an identity's counters.
pub const RESET_LUA: &str = include_str!("../../../../scripts/redis/reset.lua");

/// A script and its body, for EVALSHA with an EVAL fallback.
struct Lua {
    script: redis::Script,
    body: &'static str,
}

impl Lua {
    fn new(body: &'static str) -> Self {
        Lua {
            script: redis::Script::new(body),
            body,
        }
    }
}

enum Conn {
    /// The connection for peek, reset and ping; decisions go through the batcher's dispatcher.
    Single(ConnectionManager, Batcher),
    /// Redirections, NOSCRIPT and retries are handled in `cluster.rs`; budgets over several
    /// slots in `split.rs`.
    Cluster(Arc<ClusterConn>),
}

/// How long a call that missed its budget may still be answered, unless the limiter says.
const DEFAULT_LATE_HORIZON: Duration = Duration::from_secs(2);

type PendingRedis = Pin<Box<dyn Future<Output = Result<Vec<i64>, RedisError>> + Send>>;

pub struct RedisStore {
    target: RedisTarget,
    keys: KeyBuilder,
    timeout: Duration,
    /// How long a call that missed `timeout` may still be answered (redis-rs's own response
    /// timeout); see [`Store::check_keeping_late`].
    late_horizon: Duration,
    clock: Clock,
    ratelimit: Arc<Lua>,
    peek: Lua,
    reset: Lua,
    concurrency: Lua,
    conn: OnceCell<Conn>,
}

impl RedisStore {
    /// Builds the store without connecting: the first call connects, on its own runtime.
    /// `timeout` bounds connecting and every command.
    pub fn new(target: RedisTarget, key_prefix: &str, timeout: Duration, clock: Clock) -> Self {
        RedisStore {
            target,
            keys: KeyBuilder::new(key_prefix),
            timeout,
            late_horizon: DEFAULT_LATE_HORIZON.max(timeout),
            clock,
            ratelimit: Arc::new(Lua::new(RATELIMIT_LUA)),
            peek: Lua::new(PEEK_LUA),
            reset: Lua::new(RESET_LUA),
            concurrency: Lua::new(CONCURRENCY_LUA),
            conn: OnceCell::new(),
        }
    }

    /// How long a timed-out call may still bring its answer (at least `timeout`). Set before
    /// the first call.
    pub fn with_late_horizon(mut self, horizon: Duration) -> Self {
        self.late_horizon = horizon.max(self.timeout);
        self
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let (timeout, late) = (self.timeout, self.late_horizon);
        match &self.target {
            RedisTarget::Single(url) => {
                let manager = single::connect(url, timeout, late)?;
                let batcher = Batcher::spawn(manager.clone(), self.ratelimit.script.clone());
                Ok(Conn::Single(manager, batcher))
            }
            RedisTarget::Cluster(urls) => Ok(Conn::Cluster(Arc::new(ClusterConn::connect(
                urls, timeout, late,
            )?))),
        }
    }

    async fn conn(&self) -> Result<&Conn, StoreError> {
        self.conn
            .get_or_try_init(|| self.connect())
            .await
            .map_err(|e| classify(&e))
    }

    /// One script call: `KEYS` are every limit's key; `ARGV` is now (0: Redis `TIME`), the
    /// cost (none for peek and reset), then algorithm, limit and window of each limit, in the
    /// same order.
    async fn invoke(
        &self,
        lua: &Lua,
        budgets: &[Budget<'_>],
        cost: Option<u64>,
    ) -> Result<Vec<i64>, StoreError> {
        let (keys, args) = self.keys_and_args(budgets, cost);
        let deadline = Instant::now() + self.timeout;
        // The shared connection belongs to the proxy's runtime: a first call from the admin
        // service (peek, reset) must not create it on its own one-thread runtime, so it uses a
        // connection of its own until a request has made the shared one.
        let owned;
        let conn = match (cost, self.conn.get()) {
            (None, None) => {
                owned = self.connect().await.map_err(|e| classify(&e))?;
                &owned
            }
            _ => self.conn().await?,
        };
        let res = match conn {
            Conn::Single(c, _) => single::eval(c, &lua.script, &keys, &args).await,
            Conn::Cluster(c) => {
                let keys: Vec<&str> = keys.iter().collect();
                c.eval(lua.script.get_hash(), lua.body, &keys, &args, deadline)
                    .await
            }
        };
        res.map_err(|e| classify(&e))
    }

    /// Signed, because `now` -1 asks the script to report the time it used (`split.rs`).
    /// `now` for a script: the manual clock's time (tests), or 0 for Redis `TIME`.
    fn now_arg(&self) -> i64 {
        self.clock.fixed_us().unwrap_or(0) as i64
    }

    fn keys_and_args(&self, budgets: &[Budget<'_>], cost: Option<u64>) -> (KeySet, Vec<i64>) {
        let keys = self.keys.keys(budgets);
        let mut args: Vec<i64> = Vec::with_capacity(2 + 3 * keys.len());
        args.push(self.clock.fixed_us().unwrap_or(0) as i64);
        args.extend(cost.map(|c| c as i64));
        for l in budgets.iter().flat_map(|b| b.limits) {
            args.extend([
                i64::from(l.algorithm.code()),
                l.requests as i64,
                l.window_ms as i64,
            ]);
        }
        (keys, args)
    }

    /// One request's part of a rate-limit call: its keys, and `ARGV` now (0: Redis `TIME`),
    /// cost, number of limits, then algorithm, limit and window of each limit.
    fn request_args(&self, budgets: &[Budget<'_>], cost: u64) -> (KeySet, Vec<i64>) {
        let keys = self.keys.keys(budgets);
        let now = self.clock.fixed_us().unwrap_or(0) as i64;
        (keys, split::request_args(budgets, now, cost))
    }

    /// The rate-limit script call of one request as an owned future, so that a call which
    /// outlives its budget can be handed on. No new attempt (redirection, retry) starts after
    /// `deadline`: a late call never charges a refused request more than the attempt already
    /// sent. On a single Redis the request joins the dispatcher's next batch, which leaves it out
    /// once `deadline` has passed; on a cluster it is a batch of one.
    fn check_call(
        &self,
        conn: &Conn,
        budgets: &[Budget<'_>],
        cost: u64,
        deadline: Instant,
    ) -> LateAnswer {
        let (keys, mut args) = self.request_args(budgets, cost);
        let lua = self.ratelimit.clone();
        let fut: PendingRedis = match conn {
            Conn::Single(_, batcher) => Box::pin(batcher.submit(keys, args, deadline)),
            Conn::Cluster(c) => {
                let c = c.clone();
                args.insert(0, 1);
                Box::pin(async move {
                    let keys: Vec<&str> = keys.iter().collect();
                    c.eval(lua.script.get_hash(), lua.body, &keys, &args, deadline)
                        .await
                })
            }
        };
        let n = limit_count(budgets);
        Box::pin(async move {
            fut.await
                .map_err(|e| classify(&e))
                .and_then(|raw| decode(&raw, n))
        })
    }

    /// One check within `timeout`; on a timeout the call itself comes back, still running,
    /// with the error.
    async fn check_within(
        &self,
        budgets: &[Budget<'_>],
        cost: u64,
    ) -> Result<Verdict, (StoreError, Option<LateAnswer>)> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let conn = match tokio::time::timeout(self.timeout, self.conn()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err((e, None)),
            Err(_) => return Err((StoreError::Timeout, None)),
        };
        let mut call = self.check_call(conn, budgets, cost, deadline);
        let res = match tokio::time::timeout_at(deadline.into(), &mut call).await {
            Ok(r) => Some(r),
            Err(_) => answered_meanwhile(&mut call).await,
        };
        metrics::observe_store("check", started.elapsed());
        match res {
            Some(r) => r.map_err(|e| (e, None)),
            None => Err((StoreError::Timeout, Some(call))),
        }
    }

    /// `invoke` within the store's timeout, timed as `op`.
    async fn timed(
        &self,
        op: &'static str,
        lua: &Lua,
        budgets: &[Budget<'_>],
        cost: Option<u64>,
    ) -> Result<Vec<i64>, StoreError> {
        let started = Instant::now();
        let res = tokio::time::timeout(self.timeout, self.invoke(lua, budgets, cost))
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store(op, started.elapsed());
        res
    }
}

impl RedisStore {
    /// The groups of budgets by hash slot, when a cluster holds them in more than one.
    fn split_groups(&self, budgets: &[Budget<'_>]) -> Option<Vec<Vec<usize>>> {
        if !matches!(self.target, RedisTarget::Cluster(_)) {
            return None;
        }
        let groups = split::group_by_slot(budgets);
        (groups.len() > 1).then_some(groups)
    }

    /// Budgets in several hash slots of a cluster: one call per slot, refunds when they
    /// disagree (`split.rs`), within the store's timeout like any check. No late answer: a
    /// split decision that missed its budget is refunded where it admitted, not used.
    async fn check_split(
        &self,
        groups: Vec<Vec<usize>>,
        budgets: &[Budget<'_>],
        cost: u64,
    ) -> Result<Verdict, StoreError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let fut = async {
            let Conn::Cluster(c) = self.conn().await? else {
                return Err(StoreError::Protocol("hash slots without a cluster".into()));
            };
            let fixed = self.clock.fixed_us();
            split::check_split(c, &self.keys, groups, budgets, cost, fixed, deadline)
                .await
                .map_err(|e| classify(&e))
        };
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store("check", started.elapsed());
        res
    }

    /// PING over a fresh connection to the first seed that answers; nothing is kept.
    async fn ping_standalone(&self) -> Result<(), StoreError> {
        let urls: &[String] = match &self.target {
            RedisTarget::Single(url) => std::slice::from_ref(url),
            RedisTarget::Cluster(urls) => urls,
        };
        let mut last = StoreError::Unavailable("no seed node".into());
        for url in urls {
            let attempt = async {
                let client = redis::Client::open(url.as_str())?;
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut c).await
            };
            match attempt.await {
                Ok(_) => return Ok(()),
                Err(e) => last = classify(&e),
            }
        }
        Err(last)
    }
}

/// On a busy host the budget's timer and the answer become ready in the same scheduling round,
/// and the timer may be seen first while redis-rs's connection task has not yet handed the
/// answer over. Let that task run once: an answer already there is not a failure (the time is
/// spent either way, and a fallback would be worse than the store's verdict).
async fn answered_meanwhile(call: &mut LateAnswer) -> Option<Result<Verdict, StoreError>> {
    tokio::task::yield_now().await;
    match std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => None,
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn check(&self, budgets: &[Budget<'_>], cost: u64) -> Result<Verdict, StoreError> {
        self.check_keeping_late(budgets, cost)
            .await
            .map_err(|(e, _late)| e)
    }

    async fn check_keeping_late(
        &self,
        budgets: &[Budget<'_>],
        cost: u64,
    ) -> Result<Verdict, (StoreError, Option<LateAnswer>)> {
        if let Some(groups) = self.split_groups(budgets) {
            return self
                .check_split(groups, budgets, cost)
                .await
                .map_err(|e| (e, None));
        }
        self.check_within(budgets, cost).await
    }

    async fn peek(&self, budgets: &[Budget<'_>]) -> Result<Vec<Usage>, StoreError> {
        let raw = self.timed("peek", &self.peek, budgets, None).await?;
        decode_usage(&raw, budgets)
    }

    async fn reset(&self, budgets: &[Budget<'_>]) -> Result<(), StoreError> {
        // Only KEYS matter to the reset script; `timed` adds the limits' arguments anyway.
        self.timed("reset", &self.reset, budgets, None)
            .await
            .map(drop)
    }

    async fn acquire(
        &self,
        identity: &str,
        token: u64,
        max: u64,
        lease: Duration,
    ) -> Result<Lease, StoreError> {
        self.acquire_lease(identity, token, max, lease).await
    }

    async fn release(&self, identity: &str, token: u64) -> Result<(), StoreError> {
        self.release_lease(identity, token).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let fut = async {
            let cmd = redis::cmd("PING");
            // Readiness probes usually arrive before the first request. The shared connection
            // must not be created by them: its tasks would live on the admin listener's
            // one-thread runtime and carry every request's Redis I/O. Until a request has
            // created it on the proxy's runtime, probe with a throwaway connection.
            let Some(conn) = self.conn.get() else {
                return self.ping_standalone().await;
            };
            let r = match conn {
                Conn::Single(c, _) => single::ping(c, &cmd).await,
                Conn::Cluster(c) => c.ping().await,
            };
            r.map_err(|e| classify(&e))
        };
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store("ping", started.elapsed());
        res
    }

    async fn hget(&self, hash: &str, field: &str) -> Result<Option<String>, StoreError> {
        let started = Instant::now();
        let fut = async {
            let r = match self.conn().await? {
                Conn::Single(c, _) => {
                    let mut cmd = redis::cmd("HGET");
                    cmd.arg(hash).arg(field);
                    cmd.query_async(&mut c.clone()).await
                }
                Conn::Cluster(c) => c.hget(hash, field).await,
            };
            r.map_err(|e| classify(&e))
        };
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store("key_lookup", started.elapsed());
        res
    }

    fn kind(&self) -> &'static str {
        match self.target {
            RedisTarget::Single(_) => "redis",
            RedisTarget::Cluster(_) => "redis_cluster",
        }
    }
}
