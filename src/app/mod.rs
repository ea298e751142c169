//! The composition root: the only place that knows every piece. It validates the config, has
//! [`assemble`] build the first generation, and wires the services into one Pingora server: the
//! proxy (its plain, h2c and TLS [`listeners`]), the admin listener, the config reloader, the
//! certificate watcher and the upstream health checker.

mod assemble;
mod health;
mod listeners;

use std::sync::Arc;
use std::time::Duration;

use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::cli::Cli;
use crate::config::reload::Reloader;
use crate::{access_log, config, metrics};
use assemble::Assembler;
use health::HealthChecker;
use listeners::{CertWatcher, TlsListeners, WithCertificates};

/// How often the config file's and the certificate files' metadata is polled for edits.
const CONFIG_POLL: Duration = Duration::from_millis(500);

/// `tollgate -t`: validates both files without starting anything.
pub fn check(cli: &Cli) -> Result<String, String> {
    let snapshot = config::load_file(&cli.config).map_err(|e| e.to_string())?;
    if let Some(path) = &cli.pingora.conf {
        ServerConf::load_from_yaml(path).map_err(|e| {
            let cause = e.cause.as_ref().map(|c| c.to_string()).unwrap_or_default();
            format!("{path}: {cause}")
        })?;
    }
    Ok(format!(
        "{}: ok ({} routes, {} tiers, {} keys of {} ids)",
        cli.config.display(),
        snapshot.routes.len(),
        snapshot.tiers.len(),
        snapshot.keys.len(),
        snapshot.keys.id_count()
    ))
}

pub fn run(cli: Cli) -> Result<(), String> {
    let snapshot = config::load_file(&cli.config).map_err(|e| e.to_string())?;
    let listen = snapshot.listen.clone();
    let admin_listen = snapshot.admin_listen.clone();
    let log_settings = snapshot.access_log.clone();

    let opt = cli.pingora.to_opt();
    let mut server = Server::new(Some(opt)).map_err(|e| format!("pingora conf: {e}"))?;
    // Receives the listening sockets from the old process when started with -u.
    server.bootstrap();

    metrics::init();
    let assembler = Arc::new(Assembler::start(snapshot)?);
    let state = assembler.state();
    metrics::config_reload(true, 1);
    access_log::start(&log_settings).map_err(|e| format!("access log: {e}"))?;

    let tls = TlsListeners::new(&listen);
    let target = Arc::new(WithCertificates::new(assembler, tls.clone()));
    let reloader = Reloader::new(cli.config.clone(), target, CONFIG_POLL);
    server.add_service(background_service("config reloader", reloader));
    let watcher = CertWatcher::new(state.clone(), tls.clone(), CONFIG_POLL);
    server.add_service(background_service("certificate watcher", watcher));
    server.add_service(background_service(
        "upstream health",
        HealthChecker::new(state.clone()),
    ));

    for proxy in listeners::proxy_services(&server.configuration, &state, &listen, &tls)? {
        server.add_service(proxy);
    }

    let mut admin = Service::new(
        "tollgate admin".to_string(),
        HttpServer::new_app(AdminApp::new(Arc::clone(&state))),
    );
    admin.threads = Some(1);
    admin.add_tcp(&admin_listen);
    server.add_service(admin);

    let addrs: Vec<String> = listen
        .iter()
        .map(|l| match (&l.tls, l.http2) {
            (Some(_), true) => format!("https://{} (h2, http/1.1)", l.addr),
            (Some(_), false) => format!("https://{}", l.addr),
            (None, true) => format!("http://{} (h2c, http/1.1)", l.addr),
            (None, false) => format!("http://{}", l.addr),
        })
        .collect();
    log::info!(
        "tollgate listening on {addrs:?}, admin on {admin_listen}, store {}",
        state.load().limiter.store_kind()
    );
    server.run_forever()
}
