//! `keys_file`: a TSV of keys beside the config, streamed into the key table. A large file
//! loads and serves; a bad line is refused with its line number while the old keys serve; an
//! appended key works after an edit without a signal, a removed one is refused after a SIGHUP,
//! and a ConfigMap symlink swap of the file is followed. An id in both `keys:` and the file is
//! refused by `tollgate -t`.
pub mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

/// `id<TAB>tier<TAB>sha256(key)`.
fn line(id: &str, tier: &str, key: &str) -> String {
    format!(
        "{id}\t{tier}\t{}\n",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

/// `n` keys `key-<i>` of ids `cust-<i>`, alternately in `free` and `paid`.
fn many(n: usize) -> String {
    let mut s = String::with_capacity(n * 90);
    s.push_str("# id\ttier\tsha256\n");
    for i in 0..n {
        let tier = if i % 2 == 0 { "free" } else { "paid" };
        let _ = write!(
            s,
            "{}",
            line(&format!("cust-{i}"), tier, &format!("key-{i}"))
        );
    }
    s
}

fn config(echo: &str) -> String {
    standard(None, echo)
        .tier("paid", &[limit(600, "60s")])
        .keys_file("keys.tsv")
        .to_yaml()
}

/// Writes `keys.tsv` in `tg`'s folder atomically (temp file and rename).
fn write_keys(dir: &std::path::Path, tsv: &str) {
    let tmp = dir.join(".keys.tsv.tmp");
    std::fs::write(&tmp, tsv).expect("write keys");
    std::fs::rename(&tmp, dir.join("keys.tsv")).expect("rename keys");
}

/// Starts tollgate with `tsv` as its keys file.
fn start(echo: &Echo, tsv: &str) -> Tollgate {
    Tollgate::start_with_files(&config(&echo.addr()), &[("keys.tsv", tsv)])
}

fn call(tg: &Tollgate, key: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(tg.url("/api/x"))
        .header("x-api-key", key)
        .send()
        .expect("request");
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_file_of_100000_keys_loads_and_serves() {
    let echo = Echo::start();
    let tg = start(&echo, &many(100_000));
    for i in [0usize, 1, 4_242, 99_999] {
        let (code, up) = call(&tg, &format!("key-{i}"));
        assert_eq!(code, 200, "key-{i}");
        assert_eq!(up["headers"]["x-tollgate-key-id"], format!("cust-{i}"));
        let tier = if i % 2 == 0 { "free" } else { "paid" };
        assert_eq!(up["headers"]["x-tollgate-tier"], tier);
    }
    assert_eq!(call(&tg, "key-100000").0, 401);
    // The YAML keys are still there beside the file's.
    assert_eq!(call(&tg, "free-demo-key").0, 200);
}

#[test]
fn a_bad_line_is_refused_by_number_and_the_old_keys_serve() {
    let echo = Echo::start();
    let good = format!(
        "{}{}",
        line("one", "free", "k-one"),
        line("two", "free", "k-two")
    );
    let tg = start(&echo, &good);
    assert_eq!(call(&tg, "k-one").0, 200);
    let failures = || tg.metric("tollgate_config_reloads_total{result=\"failure\"}");
    let before = failures();

    let bad = format!(
        "{}{}three\tgold\t{}\n",
        line("one", "free", "k-one"),
        line("new", "free", "k-new"),
        "0".repeat(64)
    );
    write_keys(tg.dir.path(), &bad);
    assert!(
        wait_until(Duration::from_secs(5), || failures() > before),
        "no failed reload counted: {}",
        tg.logs()
    );
    let logs = tg.logs();
    assert!(
        logs.contains("keys.tsv:3:7: field `tier`: not a configured tier"),
        "{logs}"
    );
    // The whole file is refused: the old keys serve, the new line's key does not.
    assert_eq!(call(&tg, "k-one").0, 200);
    assert_eq!(call(&tg, "k-two").0, 200);
    assert_eq!(call(&tg, "k-new").0, 401);
}

#[test]
fn an_appended_key_works_after_an_edit_without_a_signal() {
    let echo = Echo::start();
    let tg = start(&echo, &many(1_000));
    assert_eq!(call(&tg, "fresh-key").0, 401);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(tg.dir.path().join("keys.tsv"))
        .expect("open keys");
    f.write_all(line("fresh", "paid", "fresh-key").as_bytes())
        .expect("append");
    drop(f);
    assert!(
        wait_until(Duration::from_secs(5), || call(&tg, "fresh-key").0 == 200),
        "the appended key was not picked up: {}",
        tg.logs()
    );
    assert!(tg.logs().contains("keys file change"), "a keys-only reload");
    assert_eq!(call(&tg, "key-999").0, 200);
}

#[test]
fn a_removed_key_is_refused_after_a_reload() {
    let echo = Echo::start();
    let both = format!(
        "{}{}",
        line("one", "free", "k-one"),
        line("two", "free", "k-two")
    );
    let tg = start(&echo, &both);
    assert_eq!(call(&tg, "k-two").0, 200);
    // Written in place with the same length and mtime second would still be seen: the SIGHUP
    // re-reads the keys file whatever its metadata says.
    write_keys(tg.dir.path(), &line("one", "free", "k-one"));
    tg.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || call(&tg, "k-two").0 == 401),
        "the removed key still works"
    );
    assert_eq!(call(&tg, "k-one").0, 200);
}

#[test]
fn a_configmap_symlink_swap_of_the_keys_file_is_followed() {
    // keys.tsv -> ..data/keys.tsv, ..data -> ..<version>, swapped by renaming ..data.
    let echo = Echo::start();
    let tg = start(&echo, &line("one", "free", "k-one"));
    let dir = tg.dir.path();
    let version = |name: &str, tsv: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("version dir");
        std::fs::write(d.join("keys.tsv"), tsv).expect("write keys");
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).expect("symlink");
        std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    };
    version("..v1", &line("one", "free", "k-one"));
    let link = dir.join("keys.link");
    std::os::unix::fs::symlink("..data/keys.tsv", &link).expect("symlink");
    std::fs::rename(&link, dir.join("keys.tsv")).expect("link keys.tsv");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(call(&tg, "k-one").0, 200);
    version("..v2", &line("two", "free", "k-two"));
    assert!(
        wait_until(Duration::from_secs(5), || call(&tg, "k-two").0 == 200),
        "the swapped keys file was not picked up: {}",
        tg.logs()
    );
    assert_eq!(call(&tg, "k-one").0, 401);
}

#[test]
fn an_id_in_both_yaml_and_the_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("keys.tsv"),
        format!(
            "{}{}",
            line("zed", "free", "k-zed"),
            line("alice", "free", "k-a2")
        ),
    )
    .expect("write keys");
    let yaml = standard(None, "127.0.0.1:9")
        .listen("127.0.0.1:1")
        .admin_listen("127.0.0.1:2")
        .keys_file("keys.tsv")
        .to_yaml();
    let path = dir.path().join("tollgate.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(TOLLGATE)
        .arg("-t")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("tollgate -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "{}:2:1: field `id`: id 'alice' is also defined in `keys:` of the config",
        dir.path().join("keys.tsv").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
