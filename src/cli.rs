//! The command line: tollgate's own `--config` plus Pingora's `-c -t -u -d`, in one parser.

use std::path::PathBuf;

use clap::Parser;
use pingora::server::configuration::Opt;

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "An edge proxy on Pingora that puts per-API-key rate limits in front of any HTTP service"
)]
pub struct Cli {
    /// The gateway configuration (routes, tiers, keys, Redis).
    #[arg(
        long = "config",
        env = "TOLLGATE_CONFIG",
        default_value = "conf/tollgate.yaml"
    )]
    pub config: PathBuf,

    #[command(flatten)]
    pub pingora: Opt,
}
