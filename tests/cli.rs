//! The command line as an operator meets it: `--help`, `--version` and `--hash-key`, run as
//! the real binary.
pub mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::TOLLGATE;

fn run(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(TOLLGATE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tollgate");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_describes_every_flag_in_one_line_each() {
    let (code, out, _) = run(&["--help"], None);
    assert_eq!(code, 0, "{out}");
    for flag in [
        "--config <FILE>",
        "-c, --conf <FILE>",
        "-t, --test",
        "-u, --upgrade",
        "-d, --daemon",
        "--hash-key",
        "-h, --help",
        "-V, --version",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(flag))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{out}"));
        let words = line.split_once(flag).map_or("", |(_, rest)| rest).trim();
        assert!(words.len() > 10, "{flag} has no description: {line:?}");
    }
    // Pingora's internal doc comments must not leak into tollgate's help.
    for pingora_words in [
        "base set of command line arguments",
        "Whether this server should",
    ] {
        assert!(!out.contains(pingora_words), "{pingora_words:?} in:\n{out}");
    }
    let (code, short, _) = run(&["-h"], None);
    assert_eq!((code, short), (0, out));
}

#[test]
fn version_names_the_commit() {
    let (code, out, _) = run(&["--version"], None);
    assert_eq!(code, 0);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("tollgate {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    let commit = line
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no commit in {line:?}"));
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match git {
        // Built from this checkout: the commit is HEAD's (or an explicit override).
        Some(head) if std::env::var("TOLLGATE_GIT_COMMIT").is_err() => assert_eq!(commit, head),
        _ => assert!(!commit.is_empty(), "{line}"),
    }
}

#[test]
fn hash_key_prints_the_sha256_line() {
    let (code, out, err) = run(&["--hash-key"], Some(b"free-demo-key\n"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "key_sha256: 4a55ea81e1313e68a8feea48e98110bc50e4ca82fed243a92f8de2e9e00e5ecb\n"
    );
    assert!(!out.contains("free-demo-key") && !err.contains("free-demo-key"));
    // CRLF from a Windows clipboard hashes the same key.
    let (_, crlf, _) = run(&["--hash-key"], Some(b"free-demo-key\r\n"));
    assert_eq!(crlf, out);
    // Nothing on stdin: an error, not the digest of an empty key.
    let (code, out, err) = run(&["--hash-key"], Some(b""));
    assert_ne!(code, 0);
    assert!(out.is_empty() && err.contains("no key"), "{out} {err}");
}

#[test]
fn hash_key_output_is_accepted_by_the_config() {
    let (_, line, _) = run(&["--hash-key"], Some(b"some-key\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "listen: [\"127.0.0.1:1\"]\nadmin_listen: \"127.0.0.1:2\"\nupstreams:\n  u: {{ peers: [\"127.0.0.1:3\"] }}\nroutes: [{{ prefix: \"/\", upstream: u }}]\ntiers:\n  free: {{ limits: [] }}\nkeys:\n  - {{ id: a, tier: free, {} }}\n",
        line.trim()
    );
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, yaml).expect("write");
    let (code, out, err) = run(&["--config", path.to_str().expect("utf-8"), "-t"], None);
    assert_eq!(code, 0, "{out} {err}");
}
