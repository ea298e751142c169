//! The process logger: `env_logger` filtered by `RUST_LOG`, with two guards so that a raw API
//! key or token never reaches a log line at any level, `trace` included.
//!
//! * Pingora's own `trace` records are dropped (Pingora's modules are held at `debug`): they
//!   print whole request heads.
//! * Every message that is let through has the values of secret headers (the configured key
//!   header, `authorization`, `proxy-authorization`) replaced by `[redacted]`, in the forms
//!   Pingora prints them: `"x-api-key": "v"` (a header map) and `x-api-key: v\r\n` (a raw,
//!   escaped request buffer, as in a parse error at `debug`).

use std::io::Write;
use std::sync::Arc;

use arc_swap::ArcSwap;
use log::{Level, Log, Metadata, Record};
use once_cell::sync::Lazy;

const ALWAYS_SECRET: [&str; 3] = ["x-api-key", "authorization", "proxy-authorization"];

/// Lower-case names of the headers whose values are withheld.
static SECRET_HEADERS: Lazy<ArcSwap<Vec<String>>> =
    Lazy::new(|| ArcSwap::from_pointee(ALWAYS_SECRET.iter().map(|s| s.to_string()).collect()));

/// Adds the configured key header to the withheld names (called on every config load).
pub fn set_key_header(name: &str) {
    let name = name.to_ascii_lowercase();
    if SECRET_HEADERS.load().contains(&name) {
        return;
    }
    let mut names: Vec<String> = ALWAYS_SECRET.iter().map(|s| s.to_string()).collect();
    names.push(name);
    SECRET_HEADERS.store(Arc::new(names));
}

struct RedactingLogger {
    inner: env_logger::Logger,
}

impl Log for RedactingLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        !is_pingora_trace(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn is_pingora_trace(m: &Metadata) -> bool {
    m.level() == Level::Trace && m.target().starts_with("pingora")
}

/// Installs the logger (`RUST_LOG`, default `info`). Safe to call once per process.
pub fn init_logger() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format(|buf, record| {
        let message = redact(&record.args().to_string());
        writeln!(
            buf,
            "[{} {:<5} {}] {message}",
            buf.timestamp(),
            record.level(),
            record.target()
        )
    });
    let inner = builder.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(RedactingLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// `message` with the value of every secret header replaced by `[redacted]`.
pub fn redact(message: &str) -> String {
    let names = SECRET_HEADERS.load();
    let lower = message.to_ascii_lowercase();
    if !names.iter().any(|n| lower.contains(n.as_str())) {
        return message.to_string();
    }
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let found = names
            .iter()
            .filter_map(|n| lower[at..].find(n.as_str()).map(|i| (at + i, n.len())))
            .min();
        let Some((start, len)) = found else { break };
        let after = start + len;
        match value_span(bytes, start, after) {
            Some((from, to)) => {
                out.push_str(&message[copied..from]);
                out.push_str("[redacted]");
                copied = to;
                at = to.max(after);
            }
            None => at = after,
        }
    }
    out.push_str(&message[copied..]);
    out
}

/// Where the value after a header name at `start..after` lies: `name: v`, `"name": "v"`,
/// `name=v`. None when the name is part of a longer word or no separator follows.
fn value_span(b: &[u8], start: usize, after: usize) -> Option<(usize, usize)> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    // A printed `\r` / `\n` escape right before the name is a line break, not a word.
    let after_escape = start >= 2 && b[start - 2] == b'\\' && matches!(b[start - 1], b'r' | b'n');
    if start > 0 && word(b[start - 1]) && !after_escape {
        return None;
    }
    // A quote around the name or value may itself be printed escaped (`\"`), as in a JSON
    // body shown as a byte string.
    let skip_quote = |p: &mut usize| {
        if b.get(*p) == Some(&b'\\') && b.get(*p + 1) == Some(&b'"') {
            *p += 2;
        } else if b.get(*p) == Some(&b'"') {
            *p += 1;
        }
    };
    let mut p = after;
    skip_quote(&mut p);
    while b.get(p) == Some(&b' ') {
        p += 1;
    }
    if !matches!(b.get(p), Some(b':') | Some(b'=')) {
        return None;
    }
    p += 1;
    while matches!(b.get(p), Some(b' ') | Some(b'\t')) {
        p += 1;
    }
    skip_quote(&mut p);
    let from = p;
    while p < b.len() {
        match b[p] {
            b'"' | b'\r' | b'\n' => break,
            // A printed escape of a quote or a line break ends the value too.
            b'\\' if matches!(b.get(p + 1), Some(b'r') | Some(b'n') | Some(b'"')) => break,
            b'\\' => p += 2,
            _ => p += 1,
        }
    }
    Some((from, p.min(b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_debug_form() {
        let m = r#"Request header: RequestHeader { headers: {"host": "x", "x-api-key": "sekret-1", "authorization": "Bearer tok en"} }"#;
        let r = redact(m);
        assert!(!r.contains("sekret-1") && !r.contains("tok en"), "{r}");
        assert!(r.contains(r#""host": "x""#), "{r}");
        assert!(r.contains(r#""x-api-key": "[redacted]""#), "{r}");
    }

    #[test]
    fn raw_buffer_forms() {
        let m = r"buf: GET / HTTP/1.1\r\nX-Api-Key: sekret-2\r\nHost: x\r\n\r\n";
        let r = redact(m);
        assert!(!r.contains("sekret-2"), "{r}");
        assert!(r.contains(r"Host: x\r\n"), "{r}");
        let m = r#"Body(b"{\"authorization\":\"Bearer abc def\",\"host\":\"h\"}")"#;
        let r = redact(m);
        assert!(!r.contains("abc") && !r.contains("def"), "{r}");
        assert!(r.contains(r#"\"host\":\"h\""#), "{r}");
    }

    #[test]
    fn configured_header_and_word_boundaries() {
        set_key_header("X-Tenant-Secret");
        let r = redact("x-tenant-secret: s3\nmy-authorization: keep");
        assert!(!r.contains("s3"), "{r}");
        assert!(r.contains("my-authorization: keep"), "{r}");
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
