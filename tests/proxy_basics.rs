//! Smoke test: the proxy forwards through a real tollgate to a real echo upstream.
pub mod common;
use common::*;

#[test]
fn forwards_to_the_upstream() {
    let redis = RedisServer::start();
    let echo = Echo::start();
    let tg = Tollgate::start(&standard(Some(&redis.url()), &echo.addr()).to_yaml());
    let r = client()
        .get(tg.url("/proxy/hello?x=1"))
        .header("x-api-key", "free-demo-key")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let body: serde_json::Value = r.json().unwrap();
    eprintln!("{h:?}\n{body}");
    assert_eq!(body["path"], "/hello");
}
