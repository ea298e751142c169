//! Binary upgrade (`tollgate -u` + SIGQUIT to the old process) and SIGTERM, both under load.

pub mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::load::{self, start_load, LoadSpec};
use common::*;

fn yaml(redis_url: &str, echo: &str) -> String {
    ConfigBuilder::new()
        .redis(Redis::url(redis_url))
        .upstream(
            Upstream::new("echo", &[echo])
                .health_interval("200ms")
                .read_timeout("5s"),
        )
        .route(Route::new("/api/", "echo"))
        .anonymous_tier("anonymous")
        .tier("anonymous", &[limit(5, "60s")])
        .tier("load", &[limit(1_000_000, "60s").algorithm("fixed_window")])
        .key("loader", "load-key", "load")
        .to_yaml()
}

fn log_files(tg: &Tollgate) -> BTreeSet<PathBuf> {
    std::fs::read_dir(tg.dir.path())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default()
}

/// Access-log lines (one JSON object per answered request) in one process's output.
fn access_lines(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"request_id\""))
        .count()
}

/// Alive and not a zombie (the harness reaps retired processes only when dropped).
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID this test spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn binary_upgrade_under_load_loses_no_request() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let mut tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let old_pid = tg.pid();
    let old_logs = log_files(&tg);

    let mut spec = LoadSpec::new(tg.port, "/api/up", "load-key");
    spec.workers = 4;
    spec.per_conn = 25;
    spec.pause = Duration::from_millis(3);
    let load = start_load(spec);
    std::thread::sleep(Duration::from_millis(700));

    // The new process first (it waits in bootstrap for the sockets), then SIGQUIT the old one.
    let new_pid = tg.spawn(true);
    std::thread::sleep(Duration::from_millis(300));
    let t_quit = Instant::now();
    send_signal(old_pid, libc::SIGQUIT);

    // The new process serves on the handed-over sockets (admin too) ...
    let admin = tg.admin_port;
    assert!(
        wait_until(Duration::from_secs(15), || {
            http_get(admin, "/healthz").is_some_and(|(s, _)| s == 200)
        }),
        "admin listener lost"
    );
    // ... and the old one drains (about 5 s of accepting, then the 1 s grace) and exits.
    let exited = wait_until(Duration::from_secs(20), || !pid_alive(old_pid));
    let old_lifetime = t_quit.elapsed();
    std::thread::sleep(Duration::from_millis(800));
    let samples = load.stop();
    assert!(exited, "the old process did not exit; logs:\n{}", tg.logs());
    assert!(tg.is_alive(), "the new process died; logs:\n{}", tg.logs());
    assert!(pid_alive(new_pid));

    let new_logs: Vec<PathBuf> = log_files(&tg).difference(&old_logs).cloned().collect();
    assert_eq!(new_logs.len(), 1, "{new_logs:?}");
    let old_log = old_logs.iter().next().expect("old log").clone();
    let served_old = access_lines(&old_log);
    let served_new = access_lines(&new_logs[0]);

    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    let retried = samples.iter().filter(|s| s.retried).count();
    let reused = samples.iter().filter(|s| s.reused).count();
    eprintln!(
        "upgrade: {} requests ({reused} on reused connections), statuses {:?}, {retried} resent \
         after the server closed an idle keep-alive connection, max latency {:?}; \
         old process (pid {old_pid}) served {served_old}, new (pid {new_pid}) served {served_new}; \
         old process exited {old_lifetime:?} after SIGQUIT",
        samples.len(),
        load::status_counts(&samples),
        load::max_latency(&samples),
    );
    assert!(
        failed.is_empty(),
        "{} failed requests during the upgrade, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        served_old > 0 && served_new > 0,
        "both processes must serve"
    );
    assert!(reused > 0, "no request went over a reused connection");
    assert!(
        served_old + served_new + 5 >= samples.len(),
        "access log lines ({served_old} + {served_new}) fall short of {} requests",
        samples.len()
    );
    // Requests keep flowing after the old process is gone.
    let r = client()
        .get(tg.url("/api/after"))
        .header("x-api-key", "load-key")
        .send()
        .expect("request after upgrade");
    assert_eq!(r.status(), 200);
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let mut tg = Tollgate::start(&yaml(&redis.url(), &echo.addr()));
    let port = tg.port;

    // In flight: slow requests on fresh and on reused connections.
    let mut warm = Conn::connect(port, Duration::from_secs(5)).expect("connect");
    let h = vec![("x-api-key".to_string(), "load-key".to_string())];
    assert_eq!(warm.get("/api/warm", &h, false).expect("warm").status, 200);
    let mut conns = vec![warm];
    for _ in 0..5 {
        conns.push(Conn::connect(port, Duration::from_secs(5)).expect("connect"));
    }
    let mut handles = Vec::new();
    for mut c in conns {
        let h = h.clone();
        handles.push(std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = c.get("/api/slow?delay_ms=500", &h, false);
            (
                r.map(|r| r.status).map_err(|e| format!("{e:?}")),
                t0.elapsed(),
            )
        }));
    }
    std::thread::sleep(Duration::from_millis(150));
    let t_term = Instant::now();
    tg.signal(libc::SIGTERM);

    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let exited = tg.wait_exit(Duration::from_secs(15));
    let exit_after = t_term.elapsed();
    eprintln!("SIGTERM: in-flight results {results:?}; exited {exit_after:?} after SIGTERM");
    for (r, took) in &results {
        assert_eq!(r.as_ref().ok(), Some(&200), "in-flight request: {r:?}");
        assert!(*took >= Duration::from_millis(450), "{took:?}");
    }
    assert!(
        exited,
        "tollgate did not exit after SIGTERM; logs:\n{}",
        tg.logs()
    );
    // Nothing listens any more.
    assert!(!port_open(port), "the listener is still open after exit");
}
