//! Every message configuration validation can give, one row each: the bad YAML, the
//! `line:col: field` it must name and the message itself, checked through the library's
//! `load_str` (the function `tollgate -t` and every reload call). No row may echo a key value.
//! A new validation message needs a new row here.

use std::path::Path;

/// The sections of a minimal valid file, one line each, so that a row can replace one of them
/// and its line numbers stay easy to read.
macro_rules! upstreams {
    () => {
        "upstreams: { u: { peers: [\"127.0.0.1:9000\"] } }\n"
    };
}
macro_rules! routes {
    () => {
        "routes: [{ prefix: /, upstream: u }]\n"
    };
}
macro_rules! tiers {
    () => {
        "tiers: { t: { limits: [] } }\n"
    };
}
macro_rules! base {
    () => {
        concat!(upstreams!(), routes!(), tiers!())
    };
}

/// A key value written in the rows; it must never come back in a message.
const SECRET: &str = "row-secret-key-0001";

pub struct Row {
    pub yaml: &'static str,
    /// `line:col: field `name`` as printed, or "" for an error about the whole file.
    pub at: &'static str,
    pub message: &'static str,
}

pub const fn row(yaml: &'static str, at: &'static str, message: &'static str) -> Row {
    Row { yaml, at, message }
}

#[path = "config_errors/keys_file.rs"]
mod keys_file;
#[path = "config_errors/limits.rs"]
mod limits;
#[path = "config_errors/policies.rs"]
mod policies;
#[path = "config_errors/routing.rs"]
mod routing;

use keys_file::{KEYS_FILE, LONG_LINE};
use limits::{DURATIONS, FILE, IDENTITY, KEYS, PARSING, TIERS};
use policies::{CAPACITY, POLICIES, POLICY_LIMITS, ROUTE_MATCH};
use routing::{LISTEN, REDIS, ROUTES, UPSTREAMS};

const TABLES: &[(&str, &[Row])] = &[
    ("listen", LISTEN),
    ("redis", REDIS),
    ("upstreams", UPSTREAMS),
    ("routes", ROUTES),
    ("route_match", ROUTE_MATCH),
    ("tiers", TIERS),
    ("policies", POLICIES),
    ("policy_limits", POLICY_LIMITS),
    ("durations", DURATIONS),
    ("identity", IDENTITY),
    ("capacity", CAPACITY),
    ("keys", KEYS),
    ("file", FILE),
    ("parsing", PARSING),
];

/// What `tollgate -t` would print for `yaml` (after the file name), or "accepted".
fn verdict(yaml: &str) -> String {
    match tollgate::config::load_str(Path::new("t.yaml"), yaml) {
        Ok(_) => "accepted".to_string(),
        Err(e) => e.to_string(),
    }
}

fn expected(row: &Row) -> String {
    if row.at.is_empty() {
        format!("t.yaml: {}", row.message)
    } else {
        format!("t.yaml:{}: {}", row.at, row.message)
    }
}

#[test]
fn every_validation_message_names_line_column_and_field() {
    let mut wrong = Vec::new();
    for (table, rows) in TABLES {
        for (i, row) in rows.iter().enumerate() {
            let got = verdict(row.yaml);
            if got != expected(row) {
                wrong.push(format!(
                    "{table}[{i}]\n  yaml:     {:?}\n  expected: {}\n  got:      {got}",
                    row.yaml,
                    expected(row)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// What `tollgate -t` would print for a config with `keys_file: keys.tsv` holding `tsv`, with
/// the folder left out, or "accepted".
fn tsv_verdict(yaml: &str, tsv: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{}{}tiers: {{ t: {{ limits: [] }}, u: {{ limits: [] }} }}\nkeys_file: keys.tsv\n{yaml}",
        upstreams!(),
        routes!()
    );
    std::fs::write(dir.path().join("keys.tsv"), tsv).expect("write keys.tsv");
    let path = dir.path().join("t.yaml");
    match tollgate::config::load_str(&path, &config) {
        Ok(_) => "accepted".to_string(),
        Err(e) => e
            .to_string()
            .replace(&format!("{}/", dir.path().display()), ""),
    }
}

#[test]
fn every_keys_file_message_names_line_column_and_field() {
    let mut wrong = Vec::new();
    for (i, row) in KEYS_FILE.iter().enumerate() {
        let got = tsv_verdict(row.yaml, row.tsv);
        let expected = format!("keys.tsv:{}: {}", row.at, row.message);
        assert!(!got.contains(SECRET), "keys_file[{i}] echoes a key: {got}");
        if got != expected {
            wrong.push(format!(
                "keys_file[{i}]\n  tsv:      {:?}\n  expected: {expected}\n  got:      {got}",
                row.tsv
            ));
        }
    }
    let long = format!("a\tt\t{}\n", "0".repeat(5000));
    let got = tsv_verdict("", &long);
    if got != format!("keys.tsv:1:1: field `id`: {LONG_LINE}") {
        wrong.push(format!("long line: {got}"));
    }
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn no_message_echoes_a_key_value() {
    for (table, rows) in TABLES {
        for (i, row) in rows.iter().enumerate() {
            let got = verdict(row.yaml);
            assert!(!got.contains(SECRET), "{table}[{i}] echoes the key: {got}");
        }
    }
}

#[test]
fn the_minimal_file_of_the_rows_is_valid() {
    assert_eq!(verdict(base!()), "accepted");
}

#[test]
fn nesting_past_the_limit_is_refused_with_its_position() {
    let yaml = format!("{}x: {}\n", base!(), "[".repeat(70));
    assert_eq!(
        verdict(&yaml),
        "t.yaml:4:67: nested more than 64 levels deep"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.yaml");
    let e = tollgate::config::load_file(&path).expect_err("a missing file is refused");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read: ", path.display())),
        "{shown}"
    );
    assert_eq!((e.line, e.field.as_str()), (0, ""));
}

/// The fixed text of every message the validation modules give (`cx.at(field, "...")`, or
/// the literal start of a `format!`), read from their source, so that a message added without
/// a row fails here.
fn messages_in_source() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/validate");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/config/validate") {
        let path = entry.expect("dir entry").path();
        let source = std::fs::read_to_string(&path).expect("read source");
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
        for call in source.split("cx.at(").skip(1) {
            if let Some(text) = message_argument(call) {
                out.push((file.clone().unwrap_or_default(), text));
            }
        }
    }
    out
}

/// The fixed start of the second argument of one `cx.at(` call, when it is a literal.
fn message_argument(call: &str) -> Option<String> {
    let (mut depth, mut in_string, mut comma) = (0i32, false, None);
    for (i, c) in call.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' | '[' if !in_string => depth += 1,
            ')' | ']' if !in_string && depth == 0 => break,
            ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                comma = Some(i);
                break;
            }
            _ => {}
        }
    }
    let second = call[comma? + 1..].trim_start();
    let second = second.strip_prefix("format!(").unwrap_or(second);
    let literal = second.strip_prefix('"')?;
    let end = literal.find(['"', '{', '\\', '\''])?;
    let fixed = &literal[..end];
    (fixed.len() >= 4).then(|| fixed.to_string())
}

#[test]
fn every_message_in_the_source_has_a_row() {
    let found = messages_in_source();
    assert!(found.len() >= 40, "found only {} messages", found.len());
    let missing: Vec<_> = found
        .iter()
        .filter(|(_, text)| {
            !TABLES
                .iter()
                .any(|(_, rows)| rows.iter().any(|r| r.message.contains(text.as_str())))
                && !KEYS_FILE.iter().any(|r| r.message.contains(text.as_str()))
                && !LONG_LINE.contains(text.as_str())
        })
        .collect();
    assert!(missing.is_empty(), "messages without a row: {missing:?}");
}

/// The certificate checks need real files: pairs made here (rcgen), each refusal naming the
/// field of the file at fault and the file itself.
#[test]
fn certificate_files_are_refused_by_the_field_of_the_file_at_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write_pair = |stem: &str| {
        let ck = rcgen::generate_simple_self_signed(vec!["api.test".to_string()]).expect("rcgen");
        let (cert, key) = (
            dir.path().join(format!("{stem}.pem")),
            dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&cert, ck.cert.pem()).expect("write cert");
        std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
        (cert, key)
    };
    let (cert, key) = write_pair("a");
    let (_, other_key) = write_pair("b");
    let garbled = dir.path().join("garbled.key");
    std::fs::write(
        &garbled,
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
    )
    .expect("write key");
    let yaml = |key: &Path| {
        format!(
            "listen: [{{ addr: \"127.0.0.1:8443\", tls: {{ certs: [{{ cert: \"{}\", key: \"{}\" }}] }} }}]\n{}",
            cert.display(),
            key.display(),
            base!()
        )
    };
    assert_eq!(verdict(&yaml(&key)), "accepted");
    let missing = dir.path().join("missing.key");
    let cases = [
        (
            missing.clone(),
            format!(
                "{}: cannot read: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            cert.clone(),
            format!(
                "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found",
                cert.display()
            ),
        ),
        (
            other_key.clone(),
            format!(
                "{}: the private key does not match the certificate {}",
                other_key.display(),
                cert.display()
            ),
        ),
        (
            garbled.clone(),
            format!("{}: not valid PEM: ", garbled.display()),
        ),
    ];
    for (key, message) in cases {
        let yaml = yaml(&key);
        let column = yaml.find("key: \"").map_or(0, |i| i + 1);
        let at = format!("t.yaml:1:{column}: field `listen[0].tls.certs[0].key`: ");
        let got = verdict(&yaml);
        assert!(got.starts_with(&format!("{at}{message}")), "{got}");
    }
}
