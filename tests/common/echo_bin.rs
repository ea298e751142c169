//! Where the tests find the `tollgate-echo` binary.
//!
//! The echo upstream is a workspace member of its own (`echo/`), so Cargo gives the gateway's
//! tests no `CARGO_BIN_EXE_tollgate-echo`. It lands in the same target directory as `tollgate`,
//! though: the first test of a test binary that needs it runs `cargo build -p tollgate-echo` with
//! the same profile and target directory (a no-op when it is fresh), so a plain
//! `cargo test --test NAME` never runs a stale or missing echo. `TOLLGATE_ECHO_BIN` overrides it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::process::TOLLGATE;

/// The path of a fresh `tollgate-echo`, next to the `tollgate` binary under test.
pub fn echo_bin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(locate)
}

fn locate() -> PathBuf {
    if let Some(path) = std::env::var_os("TOLLGATE_ECHO_BIN") {
        return PathBuf::from(path);
    }
    let profile_dir = Path::new(TOLLGATE)
        .parent()
        .expect("the tollgate binary lives in a profile directory");
    let path = profile_dir.join("tollgate-echo");
    build(profile_dir);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p tollgate-echo`",
        path.display()
    );
    path
}

/// `cargo build -p tollgate-echo` into the profile directory that holds `tollgate`.
fn build(profile_dir: &Path) {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir
        .parent()
        .expect("a profile directory lives in a target directory");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "tollgate-echo",
            "--bin",
            "tollgate-echo",
        ])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        // Run outside cargo (no cargo on PATH, a read-only tree): an existing binary still serves.
        other => eprintln!("warning: cargo build -p tollgate-echo: {other:?}; using what is there"),
    }
}
