//! The README's policy cookbook: every recipe in `conf/examples/` loads as shipped and, run on
//! its own gateway in front of a real upstream, limits what it says it limits.
pub mod common;

use std::path::Path;

use common::policies::burst;
use common::*;
use reqwest::Method;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join("conf/examples").join(name)).expect("example")
}

/// The example as shipped, with this test's listeners and upstream.
fn start(name: &str, echo: &Echo) -> Tollgate {
    let yaml = example(name)
        .replace("[\"0.0.0.0:8080\"]", "[\"{LISTEN}\"]")
        .replace("\"127.0.0.1:9091\"", "\"{ADMIN}\"")
        .replace("127.0.0.1:9000", &echo.addr())
        .replace("10.0.0.0/8", "127.0.0.1");
    Tollgate::start(&yaml)
}

fn headers(
    pairs: &[(&'static str, &'static str)],
) -> impl Fn(usize) -> Vec<(&'static str, String)> + Send + Sync + 'static {
    let pairs: Vec<(&'static str, String)> =
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    move |_| pairs.clone()
}

#[test]
fn every_example_loads_as_shipped() {
    let dir = Path::new(ROOT).join("conf/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("conf/examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            tollgate::config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 4, "{n} examples");
}

#[test]
fn login_bruteforce() {
    let echo = Echo::start();
    let tg = start("login-bruteforce.yaml", &echo);
    let b = burst(&tg.url("/login"), Method::POST, 20, |i| {
        vec![("x-forwarded-for", format!("198.51.100.{}", i % 2 + 1))]
    });
    assert_eq!((b.ok, b.limited), (10, 10), "5 per address: {b:?}");
    let b = burst(&tg.url("/login"), Method::GET, 10, |_| {
        vec![("x-forwarded-for", "198.51.100.1".into())]
    });
    assert_eq!(b.ok, 10, "GET /login is not an attempt: {b:?}");
}

#[test]
fn expensive_endpoint() {
    let echo = Echo::start();
    let tg = start("expensive-endpoint.yaml", &echo);
    let free = burst(
        &tg.url("/v1/charges"),
        Method::POST,
        10,
        headers(&[("x-api-key", "cookbook-free-key")]),
    );
    let paid = burst(
        &tg.url("/v1/charges"),
        Method::POST,
        10,
        headers(&[("x-api-key", "cookbook-paid-key")]),
    );
    // Generous: the 1 s window may turn once during the burst on a loaded machine.
    assert!(
        (2..=4).contains(&free.ok) && free.limited >= 6,
        "free: {free:?}"
    );
    assert_eq!(paid.ok, 10, "paid: {paid:?}");
    let reads = burst(
        &tg.url("/v1/charges"),
        Method::GET,
        10,
        headers(&[("x-api-key", "cookbook-free-key")]),
    );
    assert_eq!(reads.ok, 10, "reads: {reads:?}");
}

#[test]
fn tenant_header() {
    let echo = Echo::start();
    let tg = start("tenant-header.yaml", &echo);
    let r = client()
        .get(tg.url("/x"))
        .header("x-api-key", "cookbook-partner-key")
        .header("x-tenant", "acme")
        .send()
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["ratelimit-policy"].to_str().unwrap(),
        "\"tenant.per_second\";q=100;w=1"
    );
    let without = burst(
        &tg.url("/x"),
        Method::GET,
        150,
        headers(&[("x-api-key", "cookbook-partner-key")]),
    );
    assert_eq!(without.ok, 150, "{without:?}");
}

#[test]
fn protect_backend() {
    let echo = Echo::start();
    let tg = start("protect-backend.yaml", &echo);
    let started = std::time::Instant::now();
    let b = burst(&tg.url("/search"), Method::GET, 200, |i| match i % 2 {
        0 => vec![("x-api-key", "cookbook-paid-key".to_string())],
        _ => vec![],
    });
    // A bucket of 50 refilled at 50/s: 50 plus what refills during the burst.
    let refilled = (50.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        b.ok >= 50 && b.ok <= 50 + refilled + 1 && b.limited > 0,
        "{b:?} in {:?}",
        started.elapsed()
    );
    let r = client().get(tg.url("/search")).send().expect("request");
    if r.status() == 429 {
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["violated-policies"][0], "protect-search-backend.0");
    }
}
