//! The Redis backend: one Lua script call decides every limit of a request atomically.
//!
//! The script (`scripts/redis/*.lua`, concatenated at compile time) runs with EVALSHA and falls
//! back to loading itself on NOSCRIPT, which also covers a failover to a replica that never saw
//! it. The connection is a single multiplexed connection (or cluster connection) created lazily
//! on the runtime of its first caller, the proxy's, so concurrent requests pipeline on it with no
//! lock and no pool.
//!
//! Outages: no request ever waits for a connection longer than its own `timeout_ms` (every call
//! is wrapped in a timeout), but connecting is never *tied* to a request either. The
//! [`ConnectionManager`] is built without connecting, a background task makes the first
//! connection, and after a connection is lost the manager keeps redialling in the background
//! (every 50 to 250 ms, for about ten seconds per round; the next failed call starts another
//! round). So a Redis that is down at start, or comes back after a crash, is picked up within a
//! quarter of a second, whether or not a request (or the breaker's probe) happens to be waiting.
//!
//! Redis Cluster (`cluster.rs`): the cluster connection is likewise created without waiting
//! (redis-rs connects in the background), and MOVED, ASK, NOSCRIPT and TRYAGAIN are handled
//! there within the request's budget, falling back to `EVAL` rather than a cluster-wide
//! `SCRIPT LOAD` and sending `ASKING` in one pipeline with the call.

use std::ops::Range;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use tokio::sync::OnceCell;

use super::{KeyBuilder, Limit, LimitOutcome, Store, StoreError, Verdict};
use crate::metrics;

mod cluster;
use cluster::ClusterConn;

/// The shipped script: the four algorithms, then the dispatcher that calls them.
pub const RATELIMIT_LUA: &str = concat!(
    include_str!("../../scripts/redis/sliding_log.lua"),
    "\n",
    include_str!("../../scripts/redis/sliding_window.lua"),
    "\n",
    include_str!("../../scripts/redis/fixed_window.lua"),
    "\n",
    include_str!("../../scripts/redis/token_bucket.lua"),
    "\n",
    include_str!("../../scripts/redis/ratelimit.lua"),
);

/// Redial cadence after a lost connection (see the module docs): a jittered exponential
/// backoff from 50 ms, capped at 250 ms, for 40 attempts per round.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(250);
const RECONNECT_ATTEMPTS: usize = 40;

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

enum Conn {
    Single(ConnectionManager),
    /// Redirections, NOSCRIPT and retries are handled in `cluster.rs`.
    Cluster(Box<ClusterConn>),
}

pub struct RedisStore {
    target: RedisTarget,
    keys: KeyBuilder,
    timeout: Duration,
    script: redis::Script,
    conn: OnceCell<Conn>,
}

impl RedisStore {
    /// Builds the store without connecting: the first call connects, on its own runtime.
    /// `timeout` bounds connecting and every command.
    pub fn new(target: RedisTarget, key_prefix: &str, timeout: Duration) -> Self {
        RedisStore {
            target,
            keys: KeyBuilder::new(key_prefix),
            timeout,
            script: redis::Script::new(RATELIMIT_LUA),
            conn: OnceCell::new(),
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        match &self.target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_min_delay(RECONNECT_MIN_DELAY)
                    .set_max_delay(RECONNECT_MAX_DELAY)
                    .set_number_of_retries(RECONNECT_ATTEMPTS);
                // Lazy: returns at once, so a slow or absent Redis cannot make this
                // initialisation (and the OnceCell) wait. The first connection is made by a
                // background task, not inside a request's budget, where a timeout would cancel
                // it over and over.
                let manager = ConnectionManager::new_lazy_with_config(client, config)?;
                let mut warm = manager.clone();
                tokio::spawn(async move {
                    let r: Result<String, RedisError> =
                        redis::cmd("PING").query_async(&mut warm).await;
                    if let Err(e) = r {
                        log::warn!(
                            "rate-limit store: first connection failed ({e}); retrying on use"
                        );
                    }
                });
                Ok(Conn::Single(manager))
            }
            RedisTarget::Cluster(urls) => Ok(Conn::Cluster(Box::new(ClusterConn::connect(
                urls,
                self.timeout,
            )?))),
        }
    }

    async fn conn(&self) -> Result<&Conn, StoreError> {
        self.conn
            .get_or_try_init(|| self.connect())
            .await
            .map_err(|e| classify(&e))
    }

    async fn invoke(
        &self,
        identity: &str,
        limits: &[Limit],
        cost: u64,
        now_us: Option<u64>,
    ) -> Result<Vec<i64>, StoreError> {
        // All keys in one buffer: one allocation per request, however many limits.
        let mut buf = String::with_capacity(64 * limits.len());
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(limits.len());
        for l in limits {
            let start = buf.len();
            self.keys.write_key(&mut buf, identity, l);
            ranges.push(start..buf.len());
        }
        let mut inv = self.script.prepare_invoke();
        for r in &ranges {
            inv.key(&buf[r.clone()]);
        }
        inv.arg(now_us.unwrap_or(0)).arg(cost);
        for l in limits {
            inv.arg(l.algorithm.code()).arg(l.requests).arg(l.window_ms);
        }
        let res = match self.conn().await? {
            Conn::Single(c) => {
                let mut c = c.clone();
                match inv.invoke_async(&mut c).await {
                    // A refused connection is the manager's last failed redial round, kept
                    // until someone asks; asking started a new round. Nothing was sent, so
                    // waiting for that round (within our budget) is safe, and it picks up a
                    // Redis that came back in the meantime at the first try.
                    Err(e) if e.is_connection_refusal() => inv.invoke_async(&mut c).await,
                    r => r,
                }
            }
            Conn::Cluster(c) => {
                let keys: Vec<&str> = ranges.iter().map(|r| &buf[r.clone()]).collect();
                let mut args = Vec::with_capacity(2 + 3 * limits.len());
                args.extend([now_us.unwrap_or(0), cost]);
                for l in limits {
                    args.extend([u64::from(l.algorithm.code()), l.requests, l.window_ms]);
                }
                c.eval(self.script.get_hash(), RATELIMIT_LUA, &keys, &args)
                    .await
            }
        };
        res.map_err(|e| classify(&e))
    }
}

impl RedisStore {
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

fn classify(e: &RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::Server(
                    redis::ServerErrorKind::MasterDown | redis::ServerErrorKind::BusyLoading
                )
        )
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

/// Decodes `{allowed_all, n, (allowed, remaining, retry_ms, reset_ms) * n}`.
fn decode(raw: &[i64], n: usize) -> Result<Verdict, StoreError> {
    if raw.len() != 2 + 4 * n || raw[1] as usize != n {
        return Err(StoreError::Protocol(format!(
            "script returned {} values for {n} limits",
            raw.len()
        )));
    }
    let outcomes = raw[2..]
        .chunks_exact(4)
        .map(|c| LimitOutcome {
            allowed: c[0] == 1,
            remaining: c[1].max(0) as u64,
            retry_after_ms: c[2].max(0) as u64,
            reset_ms: c[3].max(0) as u64,
        })
        .collect();
    Ok(Verdict {
        allowed: raw[0] == 1,
        outcomes,
    })
}

#[async_trait]
impl Store for RedisStore {
    async fn check(
        &self,
        identity: &str,
        limits: &[Limit],
        cost: u64,
        now_us: Option<u64>,
    ) -> Result<Verdict, StoreError> {
        if limits.is_empty() {
            return Ok(Verdict {
                allowed: true,
                outcomes: Vec::new(),
            });
        }
        let started = Instant::now();
        let res = tokio::time::timeout(self.timeout, self.invoke(identity, limits, cost, now_us))
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store("check", started.elapsed());
        decode(&res?, limits.len())
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
            let r: Result<String, RedisError> = match conn {
                Conn::Single(c) => {
                    let mut c = c.clone();
                    match cmd.query_async(&mut c).await {
                        // As in `invoke`: a stale refusal; the fresh round may succeed.
                        Err(e) if e.is_connection_refusal() => cmd.query_async(&mut c).await,
                        r => r,
                    }
                }
                Conn::Cluster(c) => c.ping().await.map(|()| String::new()),
            };
            r.map(|_| ()).map_err(|e| classify(&e))
        };
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store("ping", started.elapsed());
        res
    }

    fn kind(&self) -> &'static str {
        match self.target {
            RedisTarget::Single(_) => "redis",
            RedisTarget::Cluster(_) => "redis_cluster",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_two_limit_answer() {
        let v = decode(&[0, 2, 1, 5, 0, 1000, 0, 0, 1500, 60000], 2).unwrap();
        assert!(!v.allowed);
        assert_eq!(v.outcomes[1].retry_after_ms, 1500);
        assert_eq!(v.retry_after_ms(), 1500);
    }

    #[test]
    fn rejects_a_short_answer() {
        assert!(decode(&[1, 2, 1, 5], 2).is_err());
    }
}
