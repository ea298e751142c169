//! `tollgate`: parse the command line, validate, run.

use clap::Parser;

use tollgate::{app, cli, cli::Cli, log_redact};

// glibc malloc was ~10% of the proxy's CPU in the benchmark profiles (bench/NOTES.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Pingora leaves SIGHUP at its default action (terminate). Ignore it until the reloader
    // installs its handler, so a reload sent during start-up cannot kill the process.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    if cli.hash_key {
        match cli::hash_key(std::io::stdin().lock()) {
            Ok(line) => {
                println!("{line}");
                std::process::exit(0);
            }
            Err(msg) => {
                eprintln!("tollgate: {msg}");
                std::process::exit(1);
            }
        }
    }
    log_redact::init_logger();

    if cli.pingora.test {
        match app::check(&cli) {
            Ok(msg) => {
                println!("{msg}");
                std::process::exit(0);
            }
            Err(msg) => {
                eprintln!("{msg}");
                std::process::exit(1);
            }
        }
    }
    if let Err(msg) = app::run(cli) {
        eprintln!("tollgate: {msg}");
        std::process::exit(1);
    }
}
