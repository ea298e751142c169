//! Upstream pools: round robin over healthy peers, with active health checks.
//!
//! Each pool wraps Pingora's `LoadBalancer<RoundRobin>`. Pools are rebuilt on reload only when
//! their settings change, so a reload keeps the health state of untouched upstreams. A
//! background service (`app::health`) runs the checks of whatever pools are current.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{selection::RoundRobin, Backend, LoadBalancer};
use pingora::prelude::HttpPeer;

use crate::config::UpstreamSettings;

pub struct UpstreamPool {
    pub settings: UpstreamSettings,
    lb: LoadBalancer<RoundRobin>,
    epoch: Instant,
    next_check_ms: AtomicU64,
    /// Passive health: a peer that refused a connection is skipped until this time (ms since
    /// `epoch`), so requests stop paying a connect failure each until the next active check.
    down_until_ms: Vec<(SocketAddr, AtomicU64)>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("name", &self.settings.name)
            .finish()
    }
}

impl UpstreamPool {
    /// Resolves the peers (DNS names are resolved once, here) and sets up the health check.
    pub fn build(settings: &UpstreamSettings) -> Result<Self, String> {
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(settings.peers.iter().map(String::as_str))
                .map_err(|e| format!("upstream '{}': cannot resolve peers: {e}", settings.name))?;
        let timeout = settings.connect_timeout.min(Duration::from_secs(2));
        match &settings.health_check.path {
            Some(path) => {
                let mut hc = HttpHealthCheck::new(&settings.host, settings.tls);
                let uri = path
                    .parse()
                    .map_err(|_| format!("upstream '{}': bad health check path", settings.name))?;
                hc.req.set_uri(uri);
                hc.peer_template.options.connection_timeout = Some(timeout);
                hc.peer_template.options.read_timeout = Some(timeout);
                if settings.tls {
                    hc.peer_template.sni = settings.sni.clone();
                }
                if settings.http2 {
                    set_h2_only(&mut hc.peer_template);
                }
                lb.set_health_check(Box::new(hc));
            }
            None => {
                let mut hc = TcpHealthCheck::new();
                hc.peer_template.options.connection_timeout = Some(timeout);
                lb.set_health_check(hc);
            }
        }
        let down_until_ms = lb
            .backends()
            .get_backend()
            .iter()
            .filter_map(|b| b.addr.as_inet().copied())
            .map(|a| (a, AtomicU64::new(0)))
            .collect();
        Ok(UpstreamPool {
            settings: settings.clone(),
            lb,
            epoch: Instant::now(),
            next_check_ms: AtomicU64::new(0),
            down_until_ms,
        })
    }

    /// The next healthy peer in round-robin order that is not in `exclude` (peers that already
    /// failed this request).
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<Backend> {
        let now = self.now_ms();
        let usable = |b: &Backend, healthy: bool, passive: bool| {
            healthy
                && b.addr.as_inet().is_none_or(|a| {
                    !exclude.contains(a) && (!passive || !self.passively_down(a, now))
                })
        };
        self.lb
            .select_with(b"", 256, |b, h| usable(b, h, true))
            // Every peer recently refused: try them anyway rather than fail outright.
            .or_else(|| self.lb.select_with(b"", 256, |b, h| usable(b, h, false)))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn passively_down(&self, addr: &SocketAddr, now: u64) -> bool {
        self.down_until_ms
            .iter()
            .any(|(a, until)| a == addr && until.load(Ordering::Relaxed) > now)
    }

    /// Records a connect failure: the peer is skipped for one health-check interval (at most
    /// 5 s), after which it gets traffic again if the active check still passes.
    pub fn mark_failed(&self, addr: &SocketAddr) {
        let hold = self
            .settings
            .health_check
            .interval
            .min(Duration::from_secs(5));
        let until = self.now_ms() + hold.as_millis() as u64;
        for (a, u) in &self.down_until_ms {
            if a == addr {
                u.store(until, Ordering::Relaxed);
            }
        }
    }

    pub fn peer_count(&self) -> usize {
        self.settings.peers.len()
    }

    /// A peer for `backend` with this upstream's TLS and timeouts.
    pub fn peer(&self, backend: &Backend) -> HttpPeer {
        let s = &self.settings;
        let mut peer = HttpPeer::new(backend, s.tls, s.sni.clone());
        peer.options.connection_timeout = Some(s.connect_timeout);
        peer.options.read_timeout = Some(s.read_timeout);
        peer.options.write_timeout = Some(s.write_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if s.http2 {
            set_h2_only(&mut peer);
        }
        peer
    }

    /// Runs the health check if its interval has passed.
    pub async fn check_if_due(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.next_check_ms.load(Ordering::Relaxed) {
            return;
        }
        let next = now + self.settings.health_check.interval.as_millis() as u64;
        self.next_check_ms.store(next, Ordering::Relaxed);
        self.lb.backends().run_health_check(true).await;
    }
}

/// HTTP/2 only: with TLS Pingora offers ALPN h2 alone, without TLS it speaks h2c by prior
/// knowledge. Streams share connections, as a gRPC client's would.
fn set_h2_only(peer: &mut HttpPeer) {
    peer.options.set_http_version(2, 2);
    peer.options.max_h2_streams = 100;
}
