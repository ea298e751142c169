//! The benchmark's floor: a bare Pingora round-robin proxy with no features, so tollgate's
//! cost can be read against the framework itself (`scripts/bench.sh`).
//! Usage: bare-pingora <listen> <peer> [<peer>...]

use async_trait::async_trait;
use pingora::lb::{selection::RoundRobin, LoadBalancer};
use pingora::prelude::*;
use std::sync::Arc;

struct Bare(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        let b = self
            .0
            .select(b"", 256)
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no peer"))?;
        Ok(Box::new(HttpPeer::new(b, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bare-pingora <listen> <peer>...");
        std::process::exit(2);
    }
    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let lb = LoadBalancer::try_from_iter(args[2..].iter().map(String::as_str)).expect("peers");
    let mut svc = http_proxy_service(&server.configuration, Bare(Arc::new(lb)));
    svc.add_tcp(&args[1]);
    svc.threads = Some(1);
    server.add_service(svc);
    server.run_forever();
}
