//! The command line: tollgate's own flags and Pingora's `-c -t -u -d`, each described in
//! tollgate's words (Pingora's `Opt` would show its internal doc comments in `--help`).

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Args, Parser};
use pingora::server::configuration::Opt;
use sha2::{Digest, Sha256};

/// `0.1.0 (commit 1a2b3c4d5e6f)`: the commit comes from build.rs.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TOLLGATE_GIT_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version = VERSION,
    about = "An edge proxy on Pingora that puts per-API-key rate limits in front of any HTTP service",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Cli {
    #[arg(
        long = "config",
        env = "TOLLGATE_CONFIG",
        default_value = "conf/tollgate.yaml",
        value_name = "FILE",
        help = "The gateway configuration: listeners, routes, tiers, keys, Redis"
    )]
    pub config: PathBuf,

    #[arg(
        long = "hash-key",
        help = "Read one API key on stdin and print the `key_sha256:` line to put in `keys:`"
    )]
    pub hash_key: bool,

    #[command(flatten)]
    pub pingora: PingoraFlags,

    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help, help = "Print this help")]
    help: Option<bool>,

    #[arg(short = 'V', long = "version", action = clap::ArgAction::Version, help = "Print the version and the git commit it was built from")]
    version: Option<bool>,
}

/// The flags tollgate hands to Pingora, with the same names as Pingora's `Opt`.
#[derive(Args, Debug, Default, Clone)]
pub struct PingoraFlags {
    #[arg(
        short = 'c',
        long = "conf",
        value_name = "FILE",
        help = "Pingora's own server settings (threads, upgrade_sock, pid_file, grace periods)"
    )]
    pub conf: Option<String>,

    #[arg(
        short = 't',
        long = "test",
        help = "Validate both configuration files and exit: 0 when valid, else the file, line and field at fault"
    )]
    pub test: bool,

    #[arg(
        short = 'u',
        long = "upgrade",
        help = "Graceful upgrade: take over the listening sockets of the running instance via upgrade_sock"
    )]
    pub upgrade: bool,

    #[arg(
        short = 'd',
        long = "daemon",
        help = "Run in the background (pid_file and error_log of the Pingora settings apply)"
    )]
    pub daemon: bool,

    /// Accepted and ignored, so that `cargo test -- --nocapture` style argument lists do not fail.
    #[arg(long, hide = true)]
    pub nocapture: bool,
}

impl PingoraFlags {
    /// Pingora's options for `Server::new` (never its own `-t`: tollgate validates itself).
    pub fn to_opt(&self) -> Opt {
        Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            nocapture: false,
            test: false,
            conf: self.conf.clone(),
        }
    }
}

/// `tollgate --hash-key`: the first line of `input` (without its line ending) as the line to
/// paste into `keys:`. An empty key is an error.
pub fn hash_key(input: impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    let mut input = input;
    input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
    let key = line.strip_suffix('\n').unwrap_or(&line);
    let key = key.strip_suffix('\r').unwrap_or(key);
    if key.is_empty() {
        return Err("no key on standard input (write the key, then a newline)".to_string());
    }
    Ok(format!(
        "key_sha256: {}",
        hex::encode(Sha256::digest(key.as_bytes()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_strips_the_line_ending_only() {
        let a = hash_key(&b"free-demo-key\n"[..]).unwrap();
        let b = hash_key(&b"free-demo-key\r\n"[..]).unwrap();
        let c = hash_key(&b"free-demo-key"[..]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            a,
            format!(
                "key_sha256: {}",
                hex::encode(Sha256::digest(b"free-demo-key"))
            )
        );
        assert_ne!(a, hash_key(&b" free-demo-key\n"[..]).unwrap());
        assert!(hash_key(&b"\n"[..]).is_err());
        assert!(hash_key(&b""[..]).is_err());
    }
}
