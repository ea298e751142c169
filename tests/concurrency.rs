//! Concurrency limits (`tiers.<name>.concurrency`) over real sockets: six simultaneous slow
//! requests against `concurrency: 3` spread over two replicas sharing a real Redis give exactly
//! three admitted, and the in-process store does the same on one replica. Slots come back after
//! completion, after an upstream error, after the client goes away, and after a replica is
//! killed holding them (by the lease, `redis.concurrency_lease`).
pub mod common;

use std::time::{Duration, Instant};

use common::*;

const KEY: &str = "busy-key";

/// Tier `busy` (a generous rate limit, at most 3 in flight), key `busy-key`, and a route to a
/// dead upstream for the error case. The in-process store unless `redis`.
fn config(redis: Option<Redis>, echo: &str) -> String {
    let c = ConfigBuilder::new()
        .upstream(Upstream::new("echo", &[echo]).read_timeout("10s"))
        .upstream(Upstream::new(
            "dead",
            &[&format!("127.0.0.1:{}", free_port())],
        ))
        .route(Route::new("/api/", "echo"))
        .route(Route::new("/dead/", "dead"))
        .anonymous_reject()
        .tier("busy", &[limit(1000, "60s")])
        .concurrency("busy", 3)
        .key("bea", KEY, "busy");
    match redis {
        Some(r) => c.redis(r),
        None => c,
    }
    .to_yaml()
}

fn redis(url: &str) -> Redis {
    Redis::url(url)
        .timeout_ms(2000)
        .on_error("fail_closed")
        .concurrency_lease("2s")
}

fn get(port: u16, path: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nx-api-key: {KEY}\r\n\r\n");
    raw_request(port, request.as_bytes()).expect("an answer")
}

/// One slow request per port given, all at once; the answers in the same order.
fn at_once(ports: &[u16], delay_ms: u64) -> Vec<Response> {
    let path = format!("/api/slow?delay_ms={delay_ms}");
    let threads: Vec<_> = ports
        .iter()
        .map(|&p| {
            let path = path.clone();
            std::thread::spawn(move || get(p, &path))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect()
}

fn admitted(answers: &[Response]) -> usize {
    answers.iter().filter(|r| r.status == 200).count()
}

/// Every refusal is the concurrency limit's: 429, `Retry-After: 1`, `violated-policies`.
fn refused_by_concurrency(answers: &[Response]) {
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("problem json");
        assert_eq!(
            body["violated-policies"],
            serde_json::json!(["concurrency"])
        );
    }
}

/// Slow requests held open on raw connections (not read), to keep slots taken.
fn hold(port: u16, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut c = Conn::open(port);
            c.send(
                format!(
                    "GET /api/hold?delay_ms=20000 HTTP/1.1\r\nHost: t\r\nx-api-key: {KEY}\r\n\r\n"
                )
                .as_bytes(),
            );
            c
        })
        .collect()
}

/// Waits until Redis holds `n` leases of the busy key: the held requests are all in (a probe
/// sent earlier would take one of their slots).
fn leases_held(server: &RedisServer, n: usize) {
    let key = format!("tollgate:{{{}}}:concurrency:cc", "id:bea");
    let ok = wait_until(Duration::from_secs(5), || {
        server.cli(&["ZCARD", &key]).trim() == n.to_string()
    });
    assert!(
        ok,
        "{n} leases held: {}",
        server.cli(&["ZRANGE", &key, "0", "-1"])
    );
}

/// Waits (at most `within`) until a quick request on `port` is admitted; returns how long.
fn slot_back(port: u16, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    wait_until(within, || get(port, "/api/quick").status == 200).then(|| start.elapsed())
}

#[test]
fn six_at_once_over_two_replicas_admit_exactly_three() {
    let server = RedisServer::start();
    let echo = Echo::start();
    let yaml = config(Some(redis(&server.url())), &echo.addr());
    let (a, b) = (Tollgate::start(&yaml), Tollgate::start(&yaml));
    let ports = [a.port, b.port, a.port, b.port, a.port, b.port];
    let answers = at_once(&ports, 1500);
    assert_eq!(admitted(&answers), 3, "{:?}", statuses(&answers));
    refused_by_concurrency(&answers);
    // Finished requests gave their slots back: three more fit at once.
    std::thread::sleep(Duration::from_millis(100));
    let again = at_once(&ports[..3], 200);
    assert_eq!(admitted(&again), 3, "{:?}", statuses(&again));
    // An upstream error ends a request too.
    for _ in 0..5 {
        assert_eq!(get(a.port, "/dead/x").status, 502);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(admitted(&at_once(&ports[..3], 200)), 3);
    // No lease is left behind.
    std::thread::sleep(Duration::from_millis(200));
    let keys = server.cli(&["--scan", "--pattern", "tollgate:*:concurrency:cc"]);
    let held = server.cli(&["ZCARD", keys.trim()]);
    assert!(
        keys.trim().is_empty() || held.trim() == "0",
        "{keys} {held}"
    );
}

#[test]
fn a_client_that_goes_away_gives_its_slot_back() {
    let server = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&config(Some(redis(&server.url())), &echo.addr()));
    let held = hold(tg.port, 3);
    leases_held(&server, 3);
    assert!(
        wait_until(Duration::from_secs(5), || get(tg.port, "/api/quick").status
            == 429),
        "three held requests fill the slots"
    );
    drop(held);
    let took = slot_back(tg.port, Duration::from_secs(3));
    assert!(took.is_some(), "the slots came back after the clients left");
}

#[test]
fn a_killed_replica_leaks_its_slots_only_until_the_lease_runs_out() {
    let server = RedisServer::start();
    let echo = Echo::start();
    let yaml = config(Some(redis(&server.url())), &echo.addr());
    let mut doomed = Tollgate::start(&yaml);
    let survivor = Tollgate::start(&yaml);
    let _held = hold(doomed.port, 3);
    leases_held(&server, 3);
    assert!(
        wait_until(Duration::from_secs(5), || get(survivor.port, "/api/quick")
            .status
            == 429),
        "the doomed replica holds every slot"
    );
    doomed.signal(libc::SIGKILL);
    assert!(doomed.wait_exit(Duration::from_secs(5)));
    // Nobody released them: the survivor still sees them held, until the 2 s lease runs out.
    assert_eq!(get(survivor.port, "/api/quick").status, 429);
    let took = slot_back(survivor.port, Duration::from_secs(5));
    assert!(took.is_some(), "the lease freed the slots");
}

#[test]
fn the_in_process_store_admits_exactly_three_and_gives_slots_back() {
    let echo = Echo::start();
    let tg = Tollgate::start(&config(None, &echo.addr()));
    let ports = [tg.port; 6];
    let answers = at_once(&ports, 1500);
    assert_eq!(admitted(&answers), 3, "{:?}", statuses(&answers));
    refused_by_concurrency(&answers);
    assert_eq!(admitted(&at_once(&ports[..3], 200)), 3);
    // A slot comes back once the response has ended (within 100 ms), not before the client
    // reads it.
    std::thread::sleep(Duration::from_millis(150));
    let held = hold(tg.port, 3);
    // No view into the in-process store from here: give the held requests time to get in.
    std::thread::sleep(Duration::from_millis(500));
    assert!(wait_until(Duration::from_secs(5), || get(
        tg.port,
        "/api/quick"
    )
    .status
        == 429));
    drop(held);
    assert!(slot_back(tg.port, Duration::from_secs(3)).is_some());
    let m = tg.metrics();
    assert!(
        metric_value(
            &m,
            "tollgate_ratelimit_decisions_total{decision=\"limited\",limit=\"concurrency\",policy=\"concurrency\",tier=\"busy\"}"
        ) >= 3.0,
        "{m}"
    );
}

fn statuses(answers: &[Response]) -> Vec<u16> {
    answers.iter().map(|r| r.status).collect()
}
