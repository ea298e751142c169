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
        exit_with(cli::hash_key(std::io::stdin().lock()), "tollgate: ");
    }
    log_redact::init_logger();

    if cli.pingora.test {
        // The message already names the file: no prefix, so editors can jump to it.
        exit_with(app::check(&cli), "");
    }
    if let Err(msg) = app::run(cli) {
        eprintln!("tollgate: {msg}");
        std::process::exit(1);
    }
}

/// Prints the outcome of a one-shot command and exits: 0 and stdout, or 1 and stderr.
fn exit_with(result: Result<String, String>, error_prefix: &str) -> ! {
    match result {
        Ok(msg) => {
            println!("{msg}");
            std::process::exit(0);
        }
        Err(msg) => {
            eprintln!("{error_prefix}{msg}");
            std::process::exit(1);
        }
    }
}
