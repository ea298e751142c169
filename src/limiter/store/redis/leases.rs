//! Concurrency slots on Redis: `scripts/redis/concurrency.lua`, one call to take a slot and one
//! to give it back, each within the store's timeout like a check. The lease set of an identity
//! lives in its hash slot (`{<identity>}:concurrency:cc`), beside its counters.

use std::time::{Duration, Instant};

use super::{classify, single, Conn, RedisStore};
use crate::limiter::store::{Lease, StoreError};
use crate::metrics;

/// The lease script, self-contained.
pub const CONCURRENCY_LUA: &str = include_str!("../../../../scripts/redis/concurrency.lua");

const ACQUIRE: i64 = 1;
const RELEASE: i64 = 2;

impl RedisStore {
    pub(super) async fn acquire_lease(
        &self,
        identity: &str,
        token: u64,
        max: u64,
        lease: Duration,
    ) -> Result<Lease, StoreError> {
        let lease_ms = lease.as_millis().max(1) as i64;
        let args = [self.now_arg(), ACQUIRE, token as i64, max as i64, lease_ms];
        let raw = self.lease_call("acquire", identity, &args).await?;
        match raw.as_slice() {
            [1, ..] => Ok(Lease::Granted),
            [0, _, retry] => Ok(Lease::Full {
                retry_ms: (*retry).max(1) as u64,
            }),
            _ => Err(StoreError::Protocol(format!(
                "concurrency acquire returned {} values",
                raw.len()
            ))),
        }
    }

    pub(super) async fn release_lease(&self, identity: &str, token: u64) -> Result<(), StoreError> {
        let args = [self.now_arg(), RELEASE, token as i64];
        self.lease_call("release", identity, &args).await.map(drop)
    }

    async fn lease_call(
        &self,
        op: &'static str,
        identity: &str,
        args: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let keys = self.keys.concurrency_key(identity);
        let lua = &self.concurrency;
        let fut = async {
            let res = match self.conn().await? {
                Conn::Single(c, _) => single::eval(c, &lua.script, &keys, args).await,
                Conn::Cluster(c) => {
                    let keys: Vec<&str> = keys.iter().collect();
                    c.eval(lua.script.get_hash(), lua.body, &keys, args, deadline)
                        .await
                }
            };
            res.map_err(|e| classify(&e))
        };
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        metrics::observe_store(op, started.elapsed());
        res
    }
}
