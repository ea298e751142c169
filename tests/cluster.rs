//! The Redis store against a real three-master Redis Cluster (`common::cluster`).
//!
//! * every algorithm is exact on every master: identities are chosen so their hash-tag slots
//!   land on each of the three masters (checked with `CLUSTER KEYSLOT` against `CLUSTER NODES`
//!   and `CLUSTER SLOTS`, and afterwards by finding the keys on that master);
//! * a concurrent burst admits exactly the limit, for every algorithm, on every master;
//! * the cluster, a single Redis and the in-process store answer any sequence identically;
//! * a master killed with SIGKILL: the store fails (the policy's business) only until the replica
//!   is promoted, then answers again on the same connection, script included;
//! * a slot moved to another master under load: MOVED and ASK are followed, no call fails, and
//!   the limit stays exact.
//!
//! Tests in this file run one at a time (a cluster is six processes on a small machine).

pub mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{cli, sliding_log_entries, RedisCluster};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tollgate::limiter::{
    Algorithm, Budget, Clock, KeyBuilder, Limit, MemoryStore, RedisStore, RedisTarget, Store,
    StoreError, Verdict,
};

const PREFIX: &str = "tgtest";
/// A multiple of one hour, in µs (as in `limiter_exactness.rs`).
const B: u64 = 1_699_999_200_000_000;
const MS: u64 = 1_000;
const W: u64 = 60_000;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn lim(name: &str, algorithm: Algorithm, requests: u64, window_ms: u64) -> Limit {
    Limit {
        name: name.into(),
        requests,
        window_ms,
        algorithm,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

struct Env {
    // Stores first: their connections go before the runtime and the servers.
    cluster_store: Arc<RedisStore>,
    single_store: RedisStore,
    memory: MemoryStore,
    /// The manual clock all three stores decide at.
    clock: Clock,
    rt: tokio::runtime::Runtime,
    _single: common::RedisServer,
    cluster: RedisCluster,
}

impl Env {
    fn start() -> Env {
        let cluster = RedisCluster::start();
        let single = common::RedisServer::start();
        let clock = Clock::manual(now_us());
        Env {
            cluster_store: Arc::new(RedisStore::new(
                RedisTarget::Cluster(cluster.urls()),
                PREFIX,
                Duration::from_secs(2),
                clock.clone(),
            )),
            single_store: RedisStore::new(
                RedisTarget::Single(single.url()),
                PREFIX,
                Duration::from_secs(2),
                clock.clone(),
            ),
            memory: MemoryStore::with_clock(clock.clone()),
            clock,
            rt: runtime(),
            _single: single,
            cluster,
        }
    }

    /// One request on all three stores; asserts they agree; returns the verdict. The two
    /// Redis stores are asked at the same moment (joined), so a key's real-time TTL runs out
    /// in both or in neither; memory, which has no TTLs, is asked after them.
    fn all(&self, id: &str, limits: &[Limit], cost: u64, now: u64) -> Verdict {
        self.clock.set_us(now);
        let budgets = [Budget::new(id, limits)];
        let (c, s) = self.rt.block_on(async {
            tokio::join!(
                self.cluster_store.check(&budgets, cost),
                self.single_store.check(&budgets, cost)
            )
        });
        let (c, s) = (c.expect("cluster check"), s.expect("single check"));
        let m = self
            .rt
            .block_on(self.memory.check(&budgets, cost))
            .expect("memory check");
        assert_eq!(
            c, s,
            "cluster vs single redis: id {id} cost {cost} now {now} {limits:?}"
        );
        assert_eq!(
            c, m,
            "cluster vs memory: id {id} cost {cost} now {now} {limits:?}"
        );
        c
    }

    /// Identities (`<tag>-<n>`) whose hash-tag slot is owned by each master, `per_master` each.
    fn identities(&self, tag: &str, per_master: usize) -> HashMap<u16, Vec<String>> {
        let kb = KeyBuilder::new(PREFIX);
        let probe = lim("x", Algorithm::SlidingLog, 1, 1);
        self.cluster.spread(per_master, |n| {
            let id = format!("{tag}-{n}");
            let key = kb.key(&id, &probe);
            (id, key)
        })
    }
}

/// The key of `limit` for `id` is stored on the master `port` (and nowhere else among masters).
fn assert_lives_on(cluster: &RedisCluster, port: u16, id: &str, limit: &Limit) {
    let key = KeyBuilder::new(PREFIX).key(id, limit);
    assert_eq!(
        cli(port, &["EXISTS", &key]),
        "1",
        "{key} not on master {port}"
    );
    for m in cluster.master_ports() {
        if m != port {
            // A non-owner answers MOVED (an error, printed on stdout by redis-cli), never 1.
            assert_ne!(cli(m, &["EXISTS", &key]), "1", "{key} also on {m}");
        }
    }
}

#[test]
fn every_algorithm_is_exact_on_every_master() {
    let _g = serial();
    let env = Env::start();
    let ids = env.identities("exact", 2);
    let mut masters: Vec<u16> = ids.keys().copied().collect();
    masters.sort_unstable();
    assert_eq!(masters.len(), 3);
    for (&master, list) in &ids {
        for id in list {
            let slot = env
                .cluster
                .keyslot(&KeyBuilder::new(PREFIX).key(id, &lim("x", Algorithm::SlidingLog, 1, 1)));
            assert_eq!(env.cluster.master_of(slot), master, "{id} slot {slot}");
            for a in Algorithm::ALL {
                let l = lim(a.as_str(), a, 5, W);
                // Five fit at one instant, the sixth does not, whatever the algorithm.
                for i in 1..=5u64 {
                    let v = env.all(id, std::slice::from_ref(&l), 1, B + i * MS);
                    assert!(v.allowed, "{a} request {i} on {master}");
                    assert_eq!(v.outcomes[0].remaining, 5 - i, "{a} on {master}");
                }
                let v = env.all(id, std::slice::from_ref(&l), 1, B + 6 * MS);
                assert!(!v.allowed, "{a}: sixth request admitted on {master}");
                assert!(v.retry_after_ms() > 0);
                // A cost above what is left is refused whole and records nothing.
                assert!(!env.all(id, std::slice::from_ref(&l), 3, B + 7 * MS).allowed);
                // A window later (two for the sliding window's weighted previous counter) the
                // whole limit is back.
                let later = B + 2 * W * MS + 7 * MS;
                assert!(
                    env.all(id, std::slice::from_ref(&l), 5, later).allowed,
                    "{a}"
                );
                assert!(
                    !env.all(id, std::slice::from_ref(&l), 1, later).allowed,
                    "{a}"
                );
                assert_lives_on(&env.cluster, master, id, &l);
            }
            // Several limits of one identity in one script call: one slot, all or nothing.
            let tier = [
                lim("a", Algorithm::SlidingLog, 2, W),
                lim("b", Algorithm::FixedWindow, 5, W),
                lim("c", Algorithm::TokenBucket, 10, W),
                lim("d", Algorithm::SlidingWindow, 10, W),
            ];
            assert!(env.all(id, &tier, 1, B).allowed);
            assert!(env.all(id, &tier, 1, B + MS).allowed);
            let v = env.all(id, &tier, 1, B + 2 * MS);
            assert!(
                !v.allowed && !v.outcomes[0].allowed && v.outcomes[1..].iter().all(|o| o.allowed)
            );
            for l in &tier {
                assert_lives_on(&env.cluster, master, id, l);
            }
        }
    }
}

#[test]
fn a_concurrent_burst_admits_exactly_the_limit_on_every_master() {
    let _g = serial();
    let env = Env::start();
    let ids = env.identities("burst", 1);
    const LIMIT: u64 = 50;
    const CALLS: usize = 200;
    for (&master, list) in &ids {
        let id = &list[0];
        let tiers: Vec<Vec<Limit>> = Algorithm::ALL
            .into_iter()
            .map(|a| vec![lim(&format!("one-{}", a.as_str()), a, LIMIT, W)])
            .chain(std::iter::once(
                Algorithm::ALL
                    .into_iter()
                    .map(|a| lim(&format!("multi-{}", a.as_str()), a, LIMIT, W))
                    .collect(),
            ))
            .collect();
        for tier in tiers {
            // Everyone at the same instant: no algorithm may admit more than LIMIT.
            env.clock.set_us(now_us());
            let tier = Arc::new(tier);
            let admitted = env.rt.block_on(async {
                let mut tasks = Vec::new();
                for _ in 0..CALLS {
                    let store = env.cluster_store.clone();
                    let tier = tier.clone();
                    let id = id.clone();
                    tasks.push(tokio::spawn(async move {
                        store.check(&[Budget::new(&id, &tier)], 1).await
                    }));
                }
                let mut n = 0;
                for t in tasks {
                    if t.await.expect("task").expect("cluster check").allowed {
                        n += 1;
                    }
                }
                n
            });
            assert_eq!(admitted, LIMIT, "master {master}, tier {tier:?}");
            for l in tier.iter() {
                assert_lives_on(&env.cluster, master, id, l);
            }
        }
    }
}

/// A generated request: how the clock moves before it, and its cost.
#[derive(Debug, Clone)]
struct Event {
    step: u8,
    frac: u64,
    cost: u64,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let cost = prop_oneof![12 => 1..=3u64, 1 => 1..=60u64];
    prop::collection::vec(
        (0u8..8, 0u64..=1000, cost).prop_map(|(step, frac, cost)| Event { step, frac, cost }),
        1..120,
    )
}

fn delta_us(e: &Event, limit: u64, window_ms: u64) -> u64 {
    match e.step {
        0 | 1 => 0,
        2 | 3 => e.frac,
        4..=6 => e.frac * window_ms * 1000 / (500 * limit),
        _ => e.frac * window_ms * 1000 / 500,
    }
}

#[test]
fn cluster_single_redis_and_memory_agree_on_any_sequence() {
    let _g = serial();
    let env = Env::start();
    // Cycle the generated cases over identities on all three masters.
    let ids: Vec<String> = {
        let mut by_master: Vec<(u16, Vec<String>)> =
            env.identities("agree", 4).into_iter().collect();
        by_master.sort();
        by_master.into_iter().flat_map(|(_, v)| v).collect()
    };
    let case = Cell::new(0usize);
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let algo = prop::sample::select(Algorithm::ALL.to_vec());
    // Windows of 1-10 s: a key's TTL (down to the time left in its window) then rarely falls
    // inside the scheduling jitter of this loaded machine.
    let tier = prop::collection::vec((algo, 1u64..50, 1_000u64..10_000), 1..=3);
    proptest!(config, |(tier in tier, evs in events())| {
        let n = case.get();
        case.set(n + 1);
        // A fresh limit name per case, so the identity's keys start empty.
        let id = &ids[n % ids.len()];
        let limits: Vec<Limit> = tier
            .iter()
            .enumerate()
            .map(|(i, &(a, l, w))| lim(&format!("c{n}l{i}"), a, l, w))
            .collect();
        // Real time (run 8x fast) plus the generated deltas: Redis expires keys on its own
        // clock, so the synthetic clock must never run slower than real time between two
        // calls, even when one call is delayed by the scheduler (see limiter_exactness.rs).
        let start_sys = now_us();
        let start = Instant::now();
        let mut offset = 0;
        for e in &evs {
            offset += delta_us(e, limits[0].requests, limits[0].window_ms);
            let now = start_sys + 8 * start.elapsed().as_micros() as u64 + offset;
            let v = env.all(id, &limits, e.cost, now);
            prop_assert_eq!(v.allowed, v.outcomes.iter().all(|o| o.allowed));
        }
    });
}

/// Calls `check` in a loop from `tasks` tasks until `stop`; returns the per-call log.
#[derive(Default)]
struct Tally {
    admitted: AtomicU64,
    denied: AtomicU64,
    errors: Mutex<Vec<(Duration, StoreError)>>,
    max_latency_us: AtomicU64,
    /// (started, took) of every call slower than 100 ms.
    slow: Mutex<Vec<(Duration, Duration)>>,
    /// Set to stop the tasks.
    stop: AtomicBool,
}

fn drive(
    rt: &tokio::runtime::Runtime,
    store: Arc<RedisStore>,
    id: String,
    tier: Vec<Limit>,
    tasks: usize,
    pace: Duration,
    epoch: Instant,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let tier = Arc::new(tier);
    let handles = (0..tasks)
        .map(|_| {
            let (store, id, tier, tally) = (store.clone(), id.clone(), tier.clone(), tally.clone());
            rt.spawn(async move {
                while !tally.stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = store.check(&[Budget::new(&id, &tier)], 1).await;
                    let took = t.elapsed();
                    tally
                        .max_latency_us
                        .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                    if took > Duration::from_millis(100) {
                        tally
                            .slow
                            .lock()
                            .unwrap()
                            .push((epoch.elapsed() - took, took));
                    }
                    match r {
                        Ok(v) if v.allowed => {
                            tally.admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            tally.denied.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tally.errors.lock().unwrap().push((epoch.elapsed(), e));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    // Paced, so the test controls how fast the limit is reached and six
                    // redis-servers and the test share two cores.
                    tokio::time::sleep(pace).await;
                }
            })
        })
        .collect();
    (tally, handles)
}

#[test]
fn a_killed_master_fails_over_and_the_store_answers_again() {
    let _g = serial();
    let mut env = Env::start();
    let ids = env.identities("failover", 1);
    let mut masters: Vec<u16> = ids.keys().copied().collect();
    masters.sort_unstable();
    let victim_master = masters[0];
    let id = ids[&victim_master][0].clone();
    let control = ids[&masters[1]][0].clone();
    let l = lim("pm", Algorithm::SlidingLog, 100_000, W);
    let key = KeyBuilder::new(PREFIX).key(&id, &l);
    let slot = env.cluster.keyslot(&key);
    const STORE_TIMEOUT: Duration = Duration::from_millis(500);
    let store = Arc::new(RedisStore::new(
        RedisTarget::Cluster(env.cluster.urls()),
        PREFIX,
        STORE_TIMEOUT,
        Clock::Store,
    ));
    // Warm up: connected, script loaded everywhere it is needed.
    for i in 0..20 {
        let v = env
            .rt
            .block_on(store.check(&[Budget::new(&id, std::slice::from_ref(&l))], 1));
        assert!(v.expect("warm-up").allowed, "warm-up {i}");
    }
    let epoch = Instant::now();
    let (tally, handles) = drive(
        &env.rt,
        store.clone(),
        id.clone(),
        vec![l.clone()],
        4,
        Duration::from_millis(5),
        epoch,
    );
    std::thread::sleep(Duration::from_millis(500));
    let before_kill = tally.admitted.load(Ordering::Relaxed) + 20;
    let killed_at = epoch.elapsed();
    let killed = env.cluster.kill_master_of(slot);
    assert_eq!(killed, victim_master);
    let promoted = env
        .cluster
        .wait_failover(slot, killed, Duration::from_secs(60));
    let promoted_at = epoch.elapsed();
    // The store must answer again on its existing connection, without being rebuilt by us.
    let recovered = common::wait_until(Duration::from_secs(20), || {
        env.rt
            .block_on(store.check(&[Budget::new(&id, std::slice::from_ref(&l))], 1))
            .is_ok()
    });
    let recovered_at = epoch.elapsed();
    // Calls already in flight at that moment may still time out: let them finish.
    std::thread::sleep(STORE_TIMEOUT + Duration::from_millis(200));
    let errors_so_far = tally.errors.lock().unwrap().len();
    // ...and keep answering: two more seconds of load with no error at all.
    std::thread::sleep(Duration::from_secs(2));
    tally.stop.store(true, Ordering::Relaxed);
    env.rt.block_on(async {
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    });
    let errors = tally.errors.lock().unwrap();
    let first_err = errors.first().map(|e| e.0);
    let last_err = errors.last().map(|e| e.0);
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for (_, e) in errors.iter() {
        *kinds.entry(e.to_string()).or_default() += 1;
    }
    // How much of the log survived the crash (replication is asynchronous).
    let survived: u64 = sliding_log_entries(promoted, &key).parse().unwrap_or(0);
    eprintln!(
        "failover: killed {killed} at {killed_at:?}, {promoted} promoted at {promoted_at:?}, store \
         answering at {recovered_at:?}; errors {} (first {first_err:?}, last {last_err:?}): {kinds:?}; \
         admitted before kill >= {before_kill}, entries on the new master {survived}, total admitted {}",
        errors.len(),
        tally.admitted.load(Ordering::Relaxed) + 20,
    );
    assert!(
        recovered,
        "the store did not answer within 20 s of the promotion; errors: {kinds:?}"
    );
    assert_eq!(
        errors.len(),
        errors_so_far,
        "errors after the store had recovered: {kinds:?}"
    );
    if let Some(last) = last_err {
        assert!(
            last <= recovered_at + STORE_TIMEOUT + Duration::from_millis(200),
            "an error at {last:?}, after recovery at {recovered_at:?}"
        );
    }
    // Scripts are not replicated: the promoted replica never had it, so the store put it
    // there itself (EVAL on NOSCRIPT) without any restart.
    let sha = redis::Script::new(tollgate::limiter::RATELIMIT_LUA)
        .get_hash()
        .to_string();
    assert_eq!(cli(promoted, &["SCRIPT", "EXISTS", &sha]), "1");
    assert!(
        !kinds.keys().any(|k| k.contains("NoScript")),
        "NOSCRIPT reached the caller: {kinds:?}"
    );
    // The other masters were never involved beyond the cluster-wide FAIL window.
    let c = env
        .rt
        .block_on(store.check(&[Budget::new(&control, std::slice::from_ref(&l))], 1));
    assert!(c.expect("control identity").allowed);
    drop(errors);
    drop(store);
    env.cluster.wait_stable(Duration::from_secs(30));
}

/// What happened to a load while one slot moved.
struct MoveReport {
    tally: Arc<Tally>,
    move_started: Duration,
    moved_at: Duration,
    key: String,
    to: u16,
}

/// Drives `tier` for one identity (paced, 8 tasks) with a store whose budget is `timeout`, and
/// moves the identity's slot to another master (`to_new_master`: one added for the purpose, as
/// when scaling out) once 20 requests went through; stops when `LIMIT + 200` were decided.
fn move_under_load(
    env: &mut Env,
    tier: Vec<Limit>,
    to_new_master: bool,
    timeout: Duration,
) -> MoveReport {
    let ids = env.identities("migrate", 1);
    let mut masters: Vec<u16> = ids.keys().copied().collect();
    masters.sort_unstable();
    let from = masters[0];
    let to = if to_new_master {
        env.cluster.add_master()
    } else {
        masters[1]
    };
    let id = ids[&from][0].clone();
    let key = KeyBuilder::new(PREFIX).key(&id, &tier[0]);
    let slot = env.cluster.keyslot(&key);
    assert_eq!(env.cluster.master_of(slot), from);
    let limit = tier[0].requests;
    let store = Arc::new(RedisStore::new(
        RedisTarget::Cluster(env.cluster.urls()),
        PREFIX,
        timeout,
        Clock::Store,
    ));
    let epoch = Instant::now();
    let (tally, handles) = drive(
        &env.rt,
        store,
        id,
        tier,
        8,
        Duration::from_millis(20),
        epoch,
    );
    // Some requests in, but far from the limit: the limit must be reached across the move.
    assert!(common::wait_until(Duration::from_secs(30), || {
        tally.admitted.load(Ordering::Relaxed) >= 20
    }));
    let move_started = epoch.elapsed();
    env.cluster
        .reshard_slot(slot, from, to, Duration::from_millis(400));
    let moved_at = epoch.elapsed();
    assert!(common::wait_until(Duration::from_secs(60), || {
        tally.admitted.load(Ordering::Relaxed) + tally.denied.load(Ordering::Relaxed) > limit + 200
    }));
    std::thread::sleep(Duration::from_millis(300));
    tally.stop.store(true, Ordering::Relaxed);
    env.rt.block_on(async {
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    });
    eprintln!(
        "slot {slot} moved {from} -> {to}{} between {move_started:?} and {moved_at:?}: admitted \
         {}, denied {}, errors {}, max latency {} ms; slow calls (started, took): {:?}",
        if to_new_master { " (new master)" } else { "" },
        tally.admitted.load(Ordering::Relaxed),
        tally.denied.load(Ordering::Relaxed),
        tally.errors.lock().unwrap().len(),
        tally.max_latency_us.load(Ordering::Relaxed) / 1000,
        tally.slow.lock().unwrap(),
    );
    MoveReport {
        tally,
        move_started,
        moved_at,
        key,
        to,
    }
}

#[test]
fn a_slot_moved_under_load_keeps_the_limit_exact_with_no_failed_call() {
    let _g = serial();
    let mut env = Env::start();
    const LIMIT: u64 = 600;
    let tier = vec![lim("pm", Algorithm::SlidingLog, LIMIT, W)];
    // A production-like budget (the shipped default is 50 ms; this box is loaded).
    let r = move_under_load(&mut env, tier, false, Duration::from_millis(250));
    let errors = r.tally.errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "calls failed during the move: {:?}",
        &errors[..errors.len().min(10)]
    );
    assert_eq!(
        r.tally.admitted.load(Ordering::Relaxed),
        LIMIT,
        "not exact across the move"
    );
    assert_eq!(sliding_log_entries(r.to, &r.key), LIMIT.to_string());
}

#[test]
fn a_slot_moved_to_a_new_master_under_load_keeps_the_limit_exact() {
    let _g = serial();
    let mut env = Env::start();
    const LIMIT: u64 = 600;
    let tier = vec![lim("pm", Algorithm::SlidingLog, LIMIT, W)];
    // The new master has never seen the script: the first ASK to it meets NOSCRIPT.
    let r = move_under_load(&mut env, tier, true, Duration::from_millis(250));
    let errors = r.tally.errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "calls failed during the move: {:?}",
        &errors[..errors.len().min(10)]
    );
    assert_eq!(
        r.tally.admitted.load(Ordering::Relaxed),
        LIMIT,
        "not exact across the move"
    );
    assert_eq!(sliding_log_entries(r.to, &r.key), LIMIT.to_string());
}

/// Redis refuses a multi-key command while its slot is being migrated and only some of the
/// keys exist on the node asked (TRYAGAIN), before any script runs. A tier with several limits
/// whose keys are partly expired (here: a token bucket that refills at once) therefore cannot
/// be decided during that window: those calls fail, which the limiter turns into its
/// `on_error` policy. Only during the window: never before it, never after it.
#[test]
fn a_multi_key_tier_fails_only_while_its_slot_moves() {
    let _g = serial();
    let mut env = Env::start();
    const LIMIT: u64 = 600;
    let tier = vec![
        lim("pm", Algorithm::SlidingLog, LIMIT, W),
        // Refills within microseconds: its key is usually absent (expired).
        lim("burst", Algorithm::TokenBucket, 1_000_000, W),
    ];
    let timeout = Duration::from_millis(250);
    let r = move_under_load(&mut env, tier, false, timeout);
    let errors = r.tally.errors.lock().unwrap();
    for (at, e) in errors.iter() {
        assert!(
            *at >= r.move_started && *at <= r.moved_at + timeout + Duration::from_millis(100),
            "error {e} at {at:?}, outside the move ({:?}..{:?})",
            r.move_started,
            r.moved_at
        );
    }
    // Failed calls recorded nothing, except one whose answer came back after its deadline.
    let admitted = r.tally.admitted.load(Ordering::Relaxed);
    let stored: u64 = sliding_log_entries(r.to, &r.key).parse().unwrap();
    assert_eq!(admitted, LIMIT);
    assert!(
        stored >= LIMIT && stored <= LIMIT + errors.len() as u64,
        "{stored} stored"
    );
}
