//! Records the git commit the binary is built from, for `tollgate --version`.
//!
//! Order: the `TOLLGATE_GIT_COMMIT` environment variable (a Docker build without `.git` can
//! pass it as a build argument), then `git rev-parse`, then "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=TOLLGATE_GIT_COMMIT");
    // Rebuild when HEAD moves: HEAD itself (branch switch) and the refs it may point to.
    // Paths are only named when they exist: a missing one would rerun this on every build.
    let branch_ref = git(&["rev-parse", "--symbolic-full-name", "HEAD"])
        .filter(|r| r.starts_with("refs/"))
        .and_then(|r| git(&["rev-parse", "--git-path", &r]));
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let packed = git(&["rev-parse", "--git-path", "packed-refs"]);
    for path in [head, branch_ref, packed].into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("TOLLGATE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TOLLGATE_GIT_COMMIT={commit}");
}
