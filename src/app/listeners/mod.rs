//! The proxy's listening sockets: plain HTTP/1.1, h2c beside it, and TLS with ALPN h2 and
//! http/1.1, each TLS listener holding an SNI resolver whose certificates rotate without a
//! restart ([`rotation`]). Every proxy service runs Pingora's HTTP proxy under
//! [`crate::listener::Frontline`] (the HTTP/1 wire guards) and shares one per-IP
//! connection-rate filter, decided at accept time, before any TLS handshake.

mod rotation;
mod tls13_floor;

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::config::ListenerSettings;
use crate::listener::{ConnectionRateFilter, Frontline};
use crate::proxy::Gateway;
use crate::state::SharedState;

pub use rotation::{CertWatcher, TlsListeners, WithCertificates};

pub type ProxyService = Service<Frontline<HttpProxy<Gateway>>>;

/// The proxy services for `listen`: one for plain listeners with h2c and one for all others,
/// because Pingora's h2c switch is per service. A group with no listener gets no service.
pub fn proxy_services(
    conf: &Arc<ServerConf>,
    state: &Arc<SharedState>,
    listen: &[ListenerSettings],
    tls: &TlsListeners,
) -> Result<Vec<ProxyService>, String> {
    let is_h2c = |l: &ListenerSettings| l.tls.is_none() && l.http2;
    // One filter for every listener, so that a client's connections count together.
    let rate_state = state.clone();
    let rate = Arc::new(ConnectionRateFilter::new(Arc::new(move || {
        let c = rate_state.load().snapshot.connection_rate?;
        Some((c.per_ip, c.window))
    })));
    let mut out = Vec::new();
    for (h2c, name) in [(false, "tollgate proxy"), (true, "tollgate proxy h2c")] {
        let group: Vec<&ListenerSettings> = listen.iter().filter(|l| is_h2c(l) == h2c).collect();
        if group.is_empty() {
            continue;
        }
        let mut gateway = pingora::proxy::http_proxy(conf, Gateway::new(state.clone()));
        if h2c {
            gateway
                .server_options
                .get_or_insert_with(HttpServerOptions::default)
                .h2c = true;
        }
        let mut service = Service::new(name.to_string(), Frontline::new(gateway));
        service.set_connection_filter(rate.clone());
        let mut floor = Vec::new();
        for l in group {
            add_listener(&mut service, l, tls)?;
            if l.tls.as_ref().is_some_and(|t| t.tls13_only) {
                floor.extend(l.addr.parse::<std::net::SocketAddr>());
            }
        }
        if !floor.is_empty() {
            let floor = tls13_floor::Tls13Floor { addrs: floor };
            service.endpoints().set_pre_tls_callback(Arc::new(floor));
        }
        out.push(service);
    }
    Ok(out)
}

fn add_listener(
    service: &mut ProxyService,
    l: &ListenerSettings,
    tls: &TlsListeners,
) -> Result<(), String> {
    if l.tls.is_none() {
        service.add_tcp(&l.addr);
        return Ok(());
    }
    let resolver = tls
        .resolver(&l.addr)
        .ok_or_else(|| format!("listener {}: no certificate resolver", l.addr))?;
    // The paths are unused: the resolver supplies every certificate.
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| format!("listener {}: {e}", l.addr))?;
    settings.set_cert_resolver(resolver);
    if l.http2 {
        settings.enable_h2();
    } else {
        settings.set_alpn(ALPN::H1);
    }
    service.add_tls_with_settings(&l.addr, None, settings);
    Ok(())
}
