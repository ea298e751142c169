//! The composition root: the only place that knows every piece. It validates the config, has
//! [`assemble`] build the first generation, and wires the services into one Pingora server: the
//! proxy, the admin listener, the config reloader and the upstream health checker.

mod assemble;
mod health;

use std::sync::Arc;
use std::time::Duration;

use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::cli::Cli;
use crate::config::reload::Reloader;
use crate::proxy::Gateway;
use crate::{access_log, config, metrics};
use assemble::Assembler;
use health::HealthChecker;

/// How often the config file's metadata is polled for edits.
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
        "{}: ok ({} routes, {} tiers, {} keys)",
        cli.config.display(),
        snapshot.routes.len(),
        snapshot.tiers.len(),
        snapshot.keys.len()
    ))
}

pub fn run(cli: Cli) -> Result<(), String> {
    let snapshot = config::load_file(&cli.config).map_err(|e| e.to_string())?;
    let listen = snapshot.listen.clone();
    let admin_listen = snapshot.admin_listen.clone();
    let log_settings = snapshot.access_log.clone();

    let opt = Opt {
        upgrade: cli.pingora.upgrade,
        daemon: cli.pingora.daemon,
        nocapture: false,
        test: false,
        conf: cli.pingora.conf.clone(),
    };
    let mut server = Server::new(Some(opt)).map_err(|e| format!("pingora conf: {e}"))?;
    // Receives the listening sockets from the old process when started with -u.
    server.bootstrap();

    metrics::init();
    let assembler = Arc::new(Assembler::start(snapshot)?);
    let state = assembler.state();
    metrics::config_reload(true, 1);
    access_log::start(&log_settings).map_err(|e| format!("access log: {e}"))?;

    let reloader = Reloader::new(cli.config.clone(), assembler, CONFIG_POLL);
    server.add_service(background_service("config reloader", reloader));
    server.add_service(background_service(
        "upstream health",
        HealthChecker::new(state.clone()),
    ));

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state.clone()),
        "tollgate proxy",
    );
    for addr in &listen {
        proxy.add_tcp(addr);
    }
    server.add_service(proxy);

    let mut admin = Service::new(
        "tollgate admin".to_string(),
        HttpServer::new_app(AdminApp::new(Arc::clone(&state))),
    );
    admin.threads = Some(1);
    admin.add_tcp(&admin_listen);
    server.add_service(admin);

    log::info!(
        "tollgate listening on {listen:?}, admin on {admin_listen}, store {}",
        state.load().limiter.store_kind()
    );
    server.run_forever()
}
