//! `tollgate -t`: a configuration with one deliberate mistake is refused with one message that
//! names the file, the line and the field; a good one is accepted. The fixtures live in
//! `tests/fixtures/config/`, one mistake each.
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The key values written in the fixtures: none may ever appear in an error message.
const SECRETS: &[&str] = &["fixture-secret-alice-0001", "fixture-secret-bob-0002"];

/// Runs `tollgate <args>` from the crate root (so that relative paths are stable), killing it
/// if it runs for more than 20 s.
fn tollgate(args: &[&str]) -> Output {
    let mut child = Command::new(TOLLGATE)
        .args(args)
        .current_dir(ROOT)
        .env_remove("TOLLGATE_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tollgate");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!("tollgate {args:?} did not exit within 20 s: {out:?}");
}

/// `tollgate -t --config tests/fixtures/config/<name>.yaml` must fail with exactly `expected`
/// (after the file path) and never echo a secret.
fn refuses(name: &str, expected: &str) {
    let file = format!("tests/fixtures/config/{name}.yaml");
    let out = tollgate(&["-t", "--config", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{name}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(!out.status.success(), "{name} was accepted: {stdout}");
    assert_eq!(out.status.code(), Some(1), "{name}: exit status");
    assert_eq!(stderr.trim_end(), format!("{file}:{expected}"), "{name}");
    for secret in SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{name}: the -t output echoes a key value"
        );
    }
}

#[test]
fn unknown_tier() {
    refuses(
        "unknown_tier",
        "26:52: field `keys[0].tier`: unknown tier 'gold' (defined: anonymous, free)",
    );
}

#[test]
fn window_without_unit() {
    refuses(
        "window_without_unit",
        "23:30: field `tiers.free.limits[0].window`: '60' has no unit (use ms, s, m, h or d, e.g. \"60s\")",
    );
}

#[test]
fn zero_window() {
    refuses(
        "window_zero",
        "23:30: field `tiers.free.limits[0].window`: must be positive",
    );
}

#[test]
fn sliding_log_above_its_bound() {
    // 1,000,000 (the anonymous tier of the fixture) is accepted; one more is not.
    refuses(
        "sliding_log_too_large",
        "23:16: field `tiers.free.limits[0].requests`: sliding_log keeps the last `requests` admissions (8 bytes each, about 8.4 MB per identity at 1000000); at most 1000000, use sliding_window or token_bucket above",
    );
}

#[test]
fn unknown_field() {
    refuses(
        "unknown_field",
        "13:5: field `routes[0].strip_prefx`: unknown field `strip_prefx`, expected one of \
         `name`, `prefix`, `methods`, `upstream`, `strip_prefix`, `cost`, `preserve_host`",
    );
}

#[test]
fn invalid_yaml() {
    // The flow sequence opened on line 7 is found unclosed where line 8 begins.
    refuses(
        "invalid_yaml",
        "8:5: field `upstreams.echo.peers`: did not find expected ',' or ']', \
         while parsing a flow sequence",
    );
}

#[test]
fn route_to_unknown_upstream() {
    refuses(
        "unknown_upstream",
        "12:5: field `routes[0].upstream`: unknown upstream 'backend' (defined: echo)",
    );
}

#[test]
fn keys_of_one_id_naming_two_tiers() {
    refuses(
        "key_id_two_tiers",
        "27:50: field `keys[1].tier`: keys of one id must name one tier: id 'alice' has 'anonymous' here and 'free' at keys[0]",
    );
}

#[test]
fn duplicate_key_value_is_not_echoed() {
    refuses(
        "duplicate_key_value",
        "27:5: field `keys[1]`: this key is already assigned to another id (keys must be unique)",
    );
}

#[test]
fn missing_file_is_named() {
    let out = tollgate(&[
        "-t",
        "--config",
        "tests/fixtures/config/does_not_exist.yaml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("tests/fixtures/config/does_not_exist.yaml: cannot read:"),
        "{stderr}"
    );
}

#[test]
fn shipped_configuration_is_valid() {
    let out = tollgate(&[
        "-t",
        "--config",
        "conf/tollgate.yaml",
        "-c",
        "conf/pingora.yaml",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.starts_with("conf/tollgate.yaml: ok ("),
        "stdout: {stdout}"
    );
    // The shipped file holds a demo key; -t must not print it either.
    for secret in ["free-demo-key", "internal-demo-key"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}
