//! The Redis backend: one Lua script call decides every limit of a request atomically.
//!
//! The script (`scripts/redis/*.lua`, concatenated at compile time) runs with EVALSHA and falls
//! back to loading itself on NOSCRIPT, which also covers a failover to a replica that never saw
//! it. The connection is a single multiplexed connection (or cluster connection) created lazily
//! on the runtime of its first caller, the proxy's, so concurrent requests pipeline on it with no
//! lock and no pool.

use std::ops::Range;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::RedisError;
use tokio::sync::OnceCell;

use super::{KeyBuilder, Limit, LimitOutcome, Store, StoreError, Verdict};
use crate::metrics;

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

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
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
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Conn::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            RedisTarget::Cluster(urls) => {
                let client = redis::cluster::ClusterClientBuilder::new(urls.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .retries(2)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
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
            Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        };
        res.map_err(|e| classify(&e))
    }
}

fn classify(e: &RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
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
            let r: Result<String, RedisError> = match self.conn().await? {
                Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
                Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
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
