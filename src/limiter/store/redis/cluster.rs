//! Redis Cluster: one script call per request, routed by the identity's hash tag, with the
//! cluster's redirections handled here rather than inside redis-rs.
//!
//! redis-rs 1.8.1 (`cluster_async`) is used for what it does well: the slot map, one
//! multiplexed connection per node, reconnecting, and refreshing the slot map whenever a node
//! answers MOVED or cannot be reached. It is built with `retries(0)`, so every redirection or
//! transient error comes back to us at once and [`ClusterConn::eval`] decides, within the
//! request's budget:
//!
//! * **NOSCRIPT** → the same call as `EVAL` with the script body, to the same node. The script
//!   cache is not replicated (Redis 7), so a promoted replica or a newly added master lacks it.
//!   `redis::Script::invoke_async` would answer with `SCRIPT LOAD`, which redis-rs fans out to the
//!   primaries *of its current slot map*: a new master that so far only receives ASK
//!   redirections is not in it, so the load never reaches the node that needs it, and while a
//!   dead master is still in the map the fan-out fails as a whole.
//! * **ASK** (the slot is being migrated and the keys are already on the target) → `ASKING` and
//!   the call sent as one pipeline on a connection of our own to the target (one per node,
//!   made on first use, shared with MOVED). redis-rs sends
//!   `ASKING`, waits for its reply, then sends the command; on a multiplexed connection another
//!   request's command can slip in between, use up the one-shot ASKING flag, and the call comes
//!   back MOVED (the same race as redis-plus-plus issue #281). Under load that failed dozens of
//!   redirected calls per slot move in `tests/cluster.rs`. A pipeline is written as one message, so nothing
//!   gets between the two.
//! * **MOVED** → the call sent straight to the node named, on a connection of our own (redis-rs
//!   refreshes its slot map meanwhile, but the node it reads the new map from may not have heard
//!   of the move yet: retrying through the stale map failed requests in
//!   `tests/cluster_proxy.rs`). If that node redirects again, the views are still converging:
//!   back off and start over.
//! * **TRYAGAIN** (a multi-key call while its slot moves and only some keys have moved or
//!   exist), **CLUSTERDOWN**, **MASTERDOWN**, **LOADING**, **READONLY**, lost or refused
//!   connections → a short backoff (1 ms doubling, capped at a quarter of the budget), then
//!   again. redis-rs's own retry waits start at 1.28 s, far beyond any sane budget. A timed-out
//!   call is not retried (the script may have run; the budget is spent anyway). A connection
//!   lost after the call was sent can, like any retrying client, count one request twice: that
//!   errs towards denying, never towards admitting.
//!
//! Nothing here waits past the caller's `timeout`: [`super::RedisStore::check`] wraps the whole
//! call, and at most [`MAX_ATTEMPTS`] attempts are made.
//!
//! **Watchdog.** redis-rs stops serving every call while it refreshes its slot map, and the
//! refresh takes its connection map's `tokio::sync::RwLock` for writing; an in-flight call that
//! was granted the read side but is not polled during the refresh holds it forever (the class
//! of deadlock valkey-glide fixed in its fork, PR #2643). `tests/cluster_proxy.rs` hit it on one
//! of three gateways when a master died under load: the refresh never finished, and that
//! gateway stayed on its `on_error` fallback after the replica had long been promoted. So when
//! no call at all has succeeded for a stall period (ten budgets, at least 2 s) while calls keep
//! failing or hanging, the connection is replaced by a fresh one built from the seed nodes (at most once per stall
//! period); the old one goes away with its last in-flight call. A partial outage (one shard
//! down, others answering) never triggers it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisError, RedisResult, ServerErrorKind,
};

/// Attempts per call (redirections and retries included), on top of the time budget.
pub(super) const MAX_ATTEMPTS: usize = 12;
const BACKOFF_MIN: Duration = Duration::from_millis(1);

pub(super) struct ClusterConn {
    client: ClusterClient,
    /// The current connection; replaced by the watchdog (see the module docs).
    conn: ArcSwap<ClusterConnection>,
    epoch: Instant,
    /// Milliseconds since `epoch` when the oldest call not followed by any success started
    /// (0: the last call succeeded, or none was made).
    unanswered_since_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last replacement (0: none yet).
    last_rebuild_ms: AtomicU64,
    stall: Duration,
    /// How to reach a node: the first seed URL's settings (credentials, TLS, protocol, db),
    /// with the node's host and port. Used for ASK targets.
    seed: ConnectionInfo,
    timeout: Duration,
    late_horizon: Duration,
    backoff_max: Duration,
    /// One connection per redirection target, made on first use.
    ask_conns: Mutex<HashMap<(String, u16), MultiplexedConnection>>,
}

impl ClusterConn {
    /// Returns at once: redis-rs connects to the seeds and reads the slot map in a background
    /// task on the current runtime, and calls made meanwhile wait for it (within their budget).
    /// A request's timeout therefore never cancels the connecting itself, and a cluster that is
    /// down at start is picked up when it comes back.
    /// `late_horizon`: how long redis-rs waits for an answer (past `timeout`, for late answers).
    pub(super) fn connect(
        urls: &[String],
        timeout: Duration,
        late_horizon: Duration,
    ) -> RedisResult<Self> {
        let seed = urls
            .first()
            .ok_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no cluster node")))?
            .as_str()
            .into_connection_info()?;
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(late_horizon)
            // Redirections and retries are ours (see the module docs).
            .retries(0)
            .build()?;
        let conn = pending(&client, timeout, late_horizon);
        Ok(ClusterConn {
            client,
            conn: ArcSwap::from_pointee(conn),
            epoch: Instant::now(),
            unanswered_since_ms: AtomicU64::new(0),
            last_rebuild_ms: AtomicU64::new(0),
            stall: (timeout * 10).max(Duration::from_secs(2)),
            seed,
            timeout,
            late_horizon,
            backoff_max: (timeout / 4).max(BACKOFF_MIN),
            ask_conns: Mutex::new(HashMap::new()),
        })
    }

    fn connection(&self) -> ClusterConnection {
        ClusterConnection::clone(&self.conn.load())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Called as a call starts: replaces the connection when calls have gone unanswered for
    /// `stall` (measured from call starts, so calls that hang until the caller's timeout
    /// cancels them count too).
    fn begin(&self) {
        let now = self.now_ms();
        let since = self.unanswered_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            let _ = self.unanswered_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return;
        }
        let stall = self.stall.as_millis() as u64;
        let last_rebuild = self.last_rebuild_ms.load(Ordering::Relaxed);
        if now.saturating_sub(since) >= stall
            && now.saturating_sub(last_rebuild) >= stall
            && self
                .last_rebuild_ms
                .compare_exchange(last_rebuild, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "rate-limit store: no cluster call answered for {} ms; reconnecting from the seed nodes",
                now.saturating_sub(since)
            );
            self.conn.store(Arc::new(pending(
                &self.client,
                self.timeout,
                self.late_horizon,
            )));
            // The new connection gets a full period to prove itself.
            self.unanswered_since_ms.store(now, Ordering::Relaxed);
        }
    }

    fn observe<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if r.is_ok() {
            self.unanswered_since_ms.store(0, Ordering::Relaxed);
        }
        r
    }

    /// Runs the script (EVALSHA `sha`, or EVAL `body` once a node lacked it) on the node that
    /// owns the keys' slot. No new attempt starts after `deadline` (the request's budget): a
    /// call that outlives it is only waited on for its late answer.
    pub(super) async fn eval(
        &self,
        sha: &str,
        body: &str,
        keys: &[&str],
        args: &[i64],
        deadline: Instant,
    ) -> RedisResult<Vec<i64>> {
        self.begin();
        let r = self.eval_inner(sha, body, keys, args, deadline).await;
        self.observe(r)
    }

    async fn eval_inner(
        &self,
        sha: &str,
        body: &str,
        keys: &[&str],
        args: &[i64],
        deadline: Instant,
    ) -> RedisResult<Vec<i64>> {
        let mut conn = self.connection();
        let script_cmd = |name: &str, script: &str| {
            let mut c = redis::cmd(name);
            c.arg(script).arg(keys.len()).arg(keys).arg(args);
            c
        };
        let evalsha = script_cmd("EVALSHA", sha);
        let mut eval: Option<Cmd> = None;
        let mut backoff = BACKOFF_MIN;
        let mut last = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 && Instant::now() >= deadline {
                break;
            }
            let cmd = eval.as_ref().unwrap_or(&evalsha);
            let err = match cmd.query_async::<Vec<i64>>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let in_budget = Instant::now() < deadline;
            let err = match err.kind() {
                ErrorKind::Server(ServerErrorKind::Ask) if in_budget => {
                    match self.redirect(&err, cmd, true).await {
                        Ok(v) => return Ok(v),
                        Err(e) => e,
                    }
                }
                ErrorKind::Server(ServerErrorKind::Moved) if in_budget => {
                    match self.redirect(&err, cmd, false).await {
                        Ok(v) => return Ok(v),
                        Err(e) => e,
                    }
                }
                _ => err,
            };
            match err.kind() {
                ErrorKind::Server(ServerErrorKind::NoScript) => {
                    eval.get_or_insert_with(|| script_cmd("EVAL", body));
                    last = Some(err);
                    continue;
                }
                _ if retryable(&err) => {}
                _ => return Err(err),
            }
            last = Some(err);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.backoff_max);
        }
        Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::Io, "no attempt made"))))
    }

    /// `cmd` sent straight to the node a redirection names: for ASK with `ASKING` in front, as
    /// one pipeline; for MOVED alone (redis-rs refreshes its slot map meanwhile, but the node it
    /// asks for the new map may not have heard of the move yet).
    async fn redirect(&self, to: &RedisError, cmd: &Cmd, asking: bool) -> RedisResult<Vec<i64>> {
        let (host, port) = to
            .redirect_node()
            .and_then(|(addr, _slot)| {
                let (host, port) = addr.rsplit_once(':')?;
                Some((
                    host.trim_matches(['[', ']']).to_string(),
                    port.parse().ok()?,
                ))
            })
            .ok_or_else(|| to.clone())?;
        let mut conn = self.node_conn(&host, port).await?;
        let r = if asking {
            let mut pipe = redis::pipe();
            pipe.cmd("ASKING").ignore().add_command(cmd.clone());
            pipe.query_async::<(Vec<i64>,)>(&mut conn)
                .await
                .map(|(v,)| v)
        } else {
            cmd.query_async::<Vec<i64>>(&mut conn).await
        };
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.lock_conns().remove(&(host, port));
                }
                Err(e)
            }
        }
    }

    async fn node_conn(&self, host: &str, port: u16) -> RedisResult<MultiplexedConnection> {
        let key = (host.to_string(), port);
        if let Some(c) = self.lock_conns().get(&key) {
            return Ok(c.clone());
        }
        let addr = match self.seed.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        let client = redis::Client::open(self.seed.clone().set_addr(addr))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.late_horizon));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(self.lock_conns().entry(key).or_insert(conn).clone())
    }

    fn lock_conns(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, u16), MultiplexedConnection>> {
        self.ask_conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For `/readyz`: one primary answers PING. Not every node: redis-rs would fan a plain PING
    /// out to all nodes, replicas included, so one dead replica would turn every gateway
    /// unready at once, although limiting works (and `on_error` covers what does not).
    /// One plain command, routed by its key.
    pub(super) async fn hget(&self, hash: &str, field: &str) -> RedisResult<Option<String>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(hash).arg(field);
        cmd.query_async(&mut self.connection()).await
    }

    pub(super) async fn ping(&self) -> RedisResult<()> {
        self.begin();
        let r = self
            .connection()
            .route_command(
                redis::cmd("PING"),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await
            .map(|_| ());
        self.observe(r)
    }
}

/// A cluster connection that connects in the background (on the current runtime).
fn pending(client: &ClusterClient, timeout: Duration, late_horizon: Duration) -> ClusterConnection {
    let config = ClusterConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(late_horizon);
    client.get_pending_async_connection_with_config(config)
}

/// Transient in a cluster: worth another attempt after a short pause.
fn retryable(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::TryAgain
                | ServerErrorKind::Moved
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Ask
        ) | ErrorKind::ClusterConnectionNotFound
    ) || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
}
