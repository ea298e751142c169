//! A single Redis: one multiplexed connection, redialled in the background after a loss.
//!
//! The [`ConnectionManager`] is built without connecting, a background task makes the first
//! connection, and after a connection is lost the manager keeps redialling (every 50 to 250 ms,
//! for about ten seconds per round; the next failed call starts another round). So a Redis that
//! is down at start, or comes back after a crash, is picked up within a quarter of a second,
//! whether or not a request happens to be waiting.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisError, RedisResult};

use crate::limiter::store::KeySet;

/// Redial cadence after a lost connection: a jittered exponential backoff from 50 ms, capped
/// at 250 ms, for 40 attempts per round.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(250);
const RECONNECT_ATTEMPTS: usize = 40;

/// The manager, without waiting for a connection. `timeout` bounds connecting and every command.
/// `late_horizon` bounds how long redis-rs waits for an answer: callers bound their own wait by
/// `timeout`, and a call that missed it may still bring a late answer.
pub(super) fn connect(
    url: &str,
    timeout: Duration,
    late_horizon: Duration,
) -> RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(late_horizon))
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY)
        .set_number_of_retries(RECONNECT_ATTEMPTS);
    // Lazy: returns at once, so a slow or absent Redis cannot make this initialisation (and the
    // OnceCell) wait. The first connection is made by a background task, not inside a request's
    // budget, where a timeout would cancel it over and over.
    let manager = ConnectionManager::new_lazy_with_config(client, config)?;
    let mut warm = manager.clone();
    tokio::spawn(async move {
        let r: Result<String, RedisError> = redis::cmd("PING").query_async(&mut warm).await;
        if let Err(e) = r {
            log::warn!("rate-limit store: first connection failed ({e}); retrying on use");
        }
    });
    Ok(manager)
}

/// EVALSHA of `script` (loading it on NOSCRIPT).
pub(super) async fn eval(
    c: &ConnectionManager,
    script: &redis::Script,
    keys: &KeySet,
    args: &[i64],
) -> RedisResult<Vec<i64>> {
    let mut inv = script.prepare_invoke();
    for k in keys.iter() {
        inv.key(k);
    }
    for a in args {
        inv.arg(*a);
    }
    let mut c = c.clone();
    match inv.invoke_async(&mut c).await {
        // A refused connection is the manager's last failed redial round, kept until someone
        // asks; asking started a new round. Nothing was sent, so waiting for that round (within
        // our budget) is safe, and it picks up a Redis that came back in the meantime at the
        // first try.
        Err(e) if e.is_connection_refusal() => inv.invoke_async(&mut c).await,
        r => r,
    }
}

pub(super) async fn ping(c: &ConnectionManager, cmd: &Cmd) -> RedisResult<()> {
    let mut c = c.clone();
    let r: RedisResult<String> = match cmd.query_async(&mut c).await {
        // As in `eval`: a stale refusal; the fresh round may succeed.
        Err(e) if e.is_connection_refusal() => cmd.query_async(&mut c).await,
        r => r,
    };
    r.map(|_| ())
}
