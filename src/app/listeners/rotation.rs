//! Certificate rotation without a restart.
//!
//! Each TLS listener's [`SniResolver`] lives as long as the process; rotation swaps the set it
//! serves. Two paths lead there: a configuration load (SIGHUP or an edit of the config file,
//! through [`WithCertificates`]), which has already read and checked the files, and
//! [`CertWatcher`], which polls the certificate and key files themselves. A pair that fails is
//! refused with its file and field, and the running certificates stay.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::reload::{stamp, ApplyConfig, Stamp};
use crate::config::{CertPairSettings, ListenerSettings, Snapshot};
use crate::state::SharedState;
use crate::tls::{self, CertError, CertSet, SniResolver};

/// The resolvers of the TLS listeners, by address.
pub struct TlsListeners {
    entries: Vec<(String, Arc<SniResolver>)>,
}

impl TlsListeners {
    /// One resolver per TLS listener, serving the certificates validation loaded.
    pub fn new(listen: &[ListenerSettings]) -> Arc<Self> {
        tls::metrics::init();
        let entries = listen
            .iter()
            .filter_map(|l| {
                let t = l.tls.as_ref()?;
                let resolver = SniResolver::new(t.loaded.clone());
                Some((l.addr.clone(), Arc::new(resolver)))
            })
            .collect();
        let me = Arc::new(TlsListeners { entries });
        me.refresh_metrics();
        me
    }

    pub fn resolver(&self, addr: &str) -> Option<Arc<SniResolver>> {
        self.entries
            .iter()
            .find(|(a, _)| a == addr)
            .map(|(_, r)| r.clone())
    }

    /// New handshakes on `addr` get `set`.
    pub fn install(&self, addr: &str, set: Arc<CertSet>) {
        if let Some(r) = self.resolver(addr) {
            r.install(set);
        }
        self.refresh_metrics();
    }

    fn refresh_metrics(&self) {
        let sets: Vec<Arc<CertSet>> = self.entries.iter().map(|(_, r)| r.current()).collect();
        tls::metrics::set_expiry(
            sets.iter()
                .flat_map(|s| s.certs.iter().map(|c| (c.label(), c.not_after))),
        );
    }
}

/// Applies a configuration, then installs the certificates it loaded.
pub struct WithCertificates<A: ApplyConfig> {
    inner: Arc<A>,
    tls: Arc<TlsListeners>,
}

impl<A: ApplyConfig> WithCertificates<A> {
    pub fn new(inner: Arc<A>, tls: Arc<TlsListeners>) -> Self {
        WithCertificates { inner, tls }
    }
}

impl<A: ApplyConfig> ApplyConfig for WithCertificates<A> {
    fn apply(&self, snapshot: Snapshot) -> Result<u64, String> {
        // Only sets this load read: a keys-file reload carries the snapshot in force, whose
        // sets may be older than what the watcher installed since.
        let current = self.inner.current_snapshot();
        let already = |addr: &str, set: &Arc<CertSet>| {
            current.listen.iter().any(|l| {
                l.addr == addr && l.tls.as_ref().is_some_and(|t| Arc::ptr_eq(&t.loaded, set))
            })
        };
        let sets: Vec<(String, Arc<CertSet>)> = snapshot
            .listen
            .iter()
            .filter_map(|l| Some((l.addr.clone(), l.tls.as_ref()?.loaded.clone())))
            .filter(|(addr, set)| !already(addr, set))
            .collect();
        let generation = self.inner.apply(snapshot)?;
        for (addr, set) in sets {
            self.tls.install(&addr, set);
        }
        Ok(generation)
    }

    fn current_hash(&self) -> [u8; 32] {
        self.inner.current_hash()
    }

    fn current_snapshot(&self) -> Arc<Snapshot> {
        self.inner.current_snapshot()
    }
}

/// One TLS listener's files as last seen.
struct Watched {
    addr: String,
    pairs: Vec<CertPairSettings>,
    stamps: Vec<Option<Stamp>>,
    /// The last change did not load; it gets one more look before it counts as a failure.
    second_look: bool,
}

impl Watched {
    fn stamps_now(&self) -> Vec<Option<Stamp>> {
        self.pairs
            .iter()
            .flat_map(|p| [stamp(&p.cert), stamp(&p.key)])
            .collect()
    }
}

/// Polls the certificate and key files of the TLS listeners in force.
pub struct CertWatcher {
    state: Arc<SharedState>,
    tls: Arc<TlsListeners>,
    poll: Duration,
}

impl CertWatcher {
    pub fn new(state: Arc<SharedState>, tls: Arc<TlsListeners>, poll: Duration) -> Self {
        CertWatcher { state, tls, poll }
    }

    /// The files of the configuration in force, as they are now: that configuration has just
    /// loaded them, so they are the baseline.
    fn watch_list(&self) -> Vec<Watched> {
        let generation = self.state.load();
        generation
            .snapshot
            .listen
            .iter()
            .filter_map(|l| {
                let t = l.tls.as_ref()?;
                let mut w = Watched {
                    addr: l.addr.clone(),
                    pairs: t.certs.clone(),
                    stamps: Vec::new(),
                    second_look: false,
                };
                w.stamps = w.stamps_now();
                Some(w)
            })
            .collect()
    }

    fn check(&self, w: &mut Watched) {
        let now = w.stamps_now();
        if now != w.stamps {
            w.stamps = now;
            w.second_look = false;
        } else if !w.second_look {
            return;
        }
        match load_all(&w.pairs) {
            Ok(set) => {
                w.second_look = false;
                self.tls.install(&w.addr, Arc::new(set));
                tls::metrics::cert_reload(true);
                log::info!(
                    "certificates of listener {} reloaded after a file change",
                    w.addr
                );
            }
            Err((pair, e)) if !w.second_look => {
                w.second_look = true;
                log::info!(
                    "listener {}: {}.{}: {e}; looking again on the next poll (a pair may be mid-rotation)",
                    w.addr,
                    pair.field,
                    e.part.field()
                );
            }
            Err((pair, e)) => {
                w.second_look = false;
                tls::metrics::cert_reload(false);
                crate::metrics::config_reload(false, 0);
                log::error!(
                    "certificate reload refused, the running certificates stay: listener {}: field `{}.{}`: {e}",
                    w.addr,
                    pair.field,
                    e.part.field()
                );
            }
        }
    }
}

/// Loads every pair of a listener, or names the first that fails.
fn load_all(pairs: &[CertPairSettings]) -> Result<CertSet, (&CertPairSettings, CertError)> {
    let mut certs = Vec::with_capacity(pairs.len());
    for p in pairs {
        certs.push(tls::load_pair(&p.cert, &p.key).map_err(|e| (p, e))?);
    }
    Ok(CertSet { certs })
}

#[async_trait]
impl BackgroundService for CertWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut config = self.state.load().snapshot.content_hash;
        let mut watched = self.watch_list();
        loop {
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let now = self.state.load().snapshot.content_hash;
                    if now != config {
                        config = now;
                        watched = self.watch_list();
                    }
                    for w in &mut watched {
                        self.check(w);
                    }
                }
            }
        }
    }
}
