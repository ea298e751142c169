//! Batched decisions on a single Redis: requests waiting for a decision at the same moment go
//! out as ONE script call that decides them in order (`scripts/redis/ratelimit.lua`).
//!
//! A dispatcher task owns the calls. It takes the first queued request, adds whatever else is
//! queued at that instant (up to [`MAX_BATCH`]), sends one EVALSHA, and when it returns hands
//! each request its slice of the answer and starts over. Nothing ever waits on a timer to fill
//! a batch: at low load a batch is one request and the latency is that of a single call; under
//! load the batch is whatever queued during the previous round trip. The script is atomic, so a
//! batch is decided exactly as the same requests arriving back to back: no answer changes.
//!
//! Each request keeps its own budget and fallback: the caller waits for its answer within its
//! own `timeout_ms` (and applies its own `on_error` when that runs out). A request whose budget
//! has run out before its batch is sent is left out, so it is never counted: it was served by
//! its fallback. One that was sent in time but answered after its budget still gets its answer,
//! as a late answer for the limiter (the breaker, the over-limit cache).
//!
//! Redis Cluster sends batches of one request (`cluster.rs`): a script's declared keys must
//! share one slot (Redis 7 answers CROSSSLOT otherwise, `allow-cross-slot-keys` included), so a
//! batch could only hold requests of one slot, and with thousands of identities spread over
//! 16,384 slots such batches would hardly ever hold more than one request.

use std::future::Future;
use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, RedisResult};
use tokio::sync::{mpsc, oneshot};

use crate::limiter::store::KeySet;

/// Requests per call at most: bounds how long one script holds Redis (~10 µs each).
pub(super) const MAX_BATCH: usize = 64;

/// One request's part of a call.
struct Job {
    keys: KeySet,
    /// now_us, cost, number of limits, then algorithm, limit and window of each.
    args: Vec<i64>,
    /// The end of the request's budget: not sent after it.
    deadline: Instant,
    reply: oneshot::Sender<RedisResult<Vec<i64>>>,
}

impl Job {
    fn still_wanted(&self, now: Instant) -> bool {
        now < self.deadline && !self.reply.is_closed()
    }
}

/// The queue to a dispatcher. Dropping every clone ends the dispatcher once its last call
/// returns.
#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts a dispatcher for `conn` on the current runtime.
    pub(super) fn spawn(conn: ConnectionManager, script: redis::Script) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(conn, script, rx));
        Batcher { tx }
    }

    /// Queues one request (`args`: now, cost, number of limits, then each limit) and returns
    /// its answer, `allowed_all, n, (allowed, remaining, retry, reset) * n`, to come.
    pub(super) fn submit(
        &self,
        keys: KeySet,
        args: Vec<i64>,
        deadline: Instant,
    ) -> impl Future<Output = RedisResult<Vec<i64>>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send(Job {
            keys,
            args,
            deadline,
            reply,
        });
        async move {
            sent.map_err(|_| gone("the rate-limit dispatcher stopped"))?;
            answer
                .await
                .map_err(|_| gone("not sent: its budget ran out while queued"))?
        }
    }
}

fn gone(why: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Io, why))
}

async fn dispatch(
    conn: ConnectionManager,
    script: redis::Script,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Out of budget while queued: its caller has applied its fallback; deciding it now
        // would count a request that the fallback served (or refused).
        let now = Instant::now();
        batch.retain(|j| j.still_wanted(now));
        if !batch.is_empty() {
            if let Err(e) = call(&conn, &script, &mut batch).await {
                // A refused connection is the manager's last failed redial round, kept until
                // someone asks; asking started a new round. Nothing was sent, so one retry is
                // safe, for the requests still within their budget.
                let now = Instant::now();
                batch.retain(|j| j.still_wanted(now));
                if !batch.is_empty() {
                    let _ = call(&conn, &script, &mut batch).await;
                }
                fail(&mut batch, &e);
            }
        }
        batch.clear();
    }
}

/// One EVALSHA (loading the script on NOSCRIPT) for the whole batch, answers handed out. A
/// refused connection is handed back with the batch untouched, for one retry.
async fn call(
    conn: &ConnectionManager,
    script: &redis::Script,
    batch: &mut Vec<Job>,
) -> Result<(), RedisError> {
    let mut inv = script.prepare_invoke();
    inv.arg(batch.len());
    for job in batch.iter() {
        for k in job.keys.iter() {
            inv.key(k);
        }
        for a in &job.args {
            inv.arg(*a);
        }
    }
    let mut c = conn.clone();
    match inv.invoke_async::<Vec<i64>>(&mut c).await {
        Ok(flat) => split(&flat, batch),
        Err(e) if e.is_connection_refusal() => return Err(e),
        Err(e) => fail(batch, &e),
    }
    Ok(())
}

/// Hands every request of the batch the error.
fn fail(batch: &mut Vec<Job>, e: &RedisError) {
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// Hands each request its `2 + 4n` values of the flat answer (and the time the script used,
/// when its `now` was -1).
fn split(flat: &[i64], batch: &mut Vec<Job>) {
    let mut at = 0;
    for job in batch.drain(..) {
        let len = 2 + 4 * job.keys.len() + usize::from(job.args.first() == Some(&-1));
        let part = flat.get(at..at + len).map(<[i64]>::to_vec);
        at += len;
        let _ = job.reply.send(part.ok_or_else(|| {
            RedisError::from((
                ErrorKind::Parse,
                "the batch answer is shorter than its requests",
            ))
        }));
    }
}
