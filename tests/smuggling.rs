//! Request smuggling: framing tricks sent to tollgate, judged by what a real upstream receives.
//!
//! The upstream is a raw TCP recorder (`common::recorder`): it parses what arrives strictly (one
//! framing per request, CRLF only) and answers each complete request with `200 ok`. For every
//! case the client must get a 4xx (or a closed connection), or exactly the requests it framed,
//! and the upstream must never receive a request the client did not see answered: above all
//! never `GET /smuggled`, whatever hides it.
pub mod common;

use std::time::Duration;

use common::recorder::{Recorder, Seen};
use common::*;

const KEY: &str = "internal-demo-key";
/// The request a trick tries to slip past tollgate.
const SMUGGLED: &str =
    "GET /proxy/smuggled HTTP/1.1\r\nHost: x\r\nx-api-key: internal-demo-key\r\n\r\n";

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A 4xx, or the connection closed without an answer; nothing complete upstream.
    Reject,
    /// One 200 and exactly one complete request upstream with this body.
    Single(&'static [u8]),
    /// Either of those (the RFC leaves the choice to the server).
    Either(&'static [u8]),
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /proxy/target HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n{headers}\r\n{body}")
        .into_bytes()
}

fn chunk_of(s: &str) -> String {
    format!("{:x}\r\n{s}\r\n", s.len())
}

/// Runs one case and checks it; returns a line for the summary.
fn run(tg: &Tollgate, up: &Recorder, name: &str, bytes: &[u8], expect: Expect) -> String {
    up.take();
    let mut c = Conn::open(tg.port);
    c.send(bytes);
    let (answers, closed) = c.answers(Duration::from_millis(1500));
    std::thread::sleep(Duration::from_millis(200));
    let seen = up.take();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let summary = format!(
        "{name}: client {statuses:?}{}, upstream {:?}",
        if closed { " closed" } else { "" },
        seen.iter()
            .map(|s| (&s.line, s.complete, s.body.len()))
            .collect::<Vec<_>>()
    );
    eprintln!("{summary}");

    for s in &seen {
        assert!(
            !s.line.contains("smuggled"),
            "{name}: smuggled request reached the upstream: {s:?}"
        );
        let h = s.head.to_ascii_lowercase();
        assert!(
            !(h.contains("\r\ntransfer-encoding:") && h.contains("\r\ncontent-length:")),
            "{name}: upstream got both framings: {s:?}"
        );
        assert!(
            !s.head.replace("\r\n", "").contains('\n'),
            "{name}: bare LF upstream: {s:?}"
        );
        assert!(
            !s.head
                .split("\r\n")
                .skip(1)
                .any(|l| l.starts_with([' ', '\t'])),
            "{name}: obs-fold upstream: {s:?}"
        );
    }
    let complete: Vec<&Seen> = seen.iter().filter(|s| s.complete).collect();
    let ok_answers = statuses.iter().filter(|s| (200..300).contains(*s)).count();
    assert_eq!(
        complete.len(),
        ok_answers,
        "{name}: the upstream got requests the client did not see answered: {summary}"
    );
    assert!(
        statuses.iter().all(|s| *s < 500),
        "{name}: a 5xx: {summary}"
    );
    for a in &answers {
        if (400..500).contains(&a.status) {
            assert_eq!(
                a.header("content-type"),
                Some("application/problem+json"),
                "{name}: a 4xx without problem+json: {a:?}"
            );
        }
    }

    let rejected = complete.is_empty()
        && (statuses.first().is_some_and(|s| (400..500).contains(s))
            || (answers.is_empty() && closed));
    let single = |body: &[u8]| {
        statuses.first() == Some(&200) && complete.len() == 1 && complete[0].body == body
    };
    let pass = match expect {
        Expect::Reject => rejected,
        Expect::Single(body) => single(body),
        Expect::Either(body) => rejected || single(body),
    };
    assert!(pass, "{name}: expected {expect:?}: {summary}");
    summary
}

type Case = (&'static str, Vec<u8>, Expect);

fn cases() -> Vec<Case> {
    [
        transfer_encoding_cases(),
        content_length_cases(),
        line_cases(),
        chunk_cases(),
        authority_cases(),
    ]
    .concat()
}

/// Transfer-Encoding against Content-Length, and obfuscated Transfer-Encoding.
fn transfer_encoding_cases() -> Vec<Case> {
    let hello_chunked = format!("{}0\r\n\r\n", chunk_of("hello"));
    let s = SMUGGLED;
    vec![
        // Content-Length against Transfer-Encoding: chunked wins, the connection closes.
        (
            "CL.TE",
            post(
                &format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", 5 + s.len()),
                &format!("0\r\n\r\n{s}"),
            ),
            Expect::Single(b""),
        ),
        (
            "TE.CL",
            post(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                &format!("{}0\r\n\r\n", chunk_of(s)),
            ),
            Expect::Single(SMUGGLED.as_bytes()),
        ),
        (
            "CL 0 with chunked body",
            post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", &format!("{hello_chunked}{s}")),
            Expect::Either(b"hello"),
        ),
        // Obfuscated Transfer-Encoding.
        ("TE xchunked", post("Transfer-Encoding: xchunked\r\n", &format!("{hello_chunked}{s}")), Expect::Reject),
        (
            "TE chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", &format!("{hello_chunked}{s}")),
            Expect::Reject,
        ),
        (
            "TE chunked then TE identity",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n",
                &format!("{hello_chunked}{s}"),
            ),
            Expect::Reject,
        ),
        (
            "TE xchunked with CL",
            post("Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        ("TE 'chunked ' (trailing space)", post("Transfer-Encoding: chunked \r\n", &hello_chunked), Expect::Either(b"hello")),
        ("TE tab chunked", post("Transfer-Encoding:\tchunked\r\n", &hello_chunked), Expect::Either(b"hello")),
        ("TE CHUNKED (case)", post("Transfer-Encoding: CHUNKED\r\n", &hello_chunked), Expect::Either(b"hello")),
        (
            "TE with space before colon",
            post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "TE in HTTP/1.0",
            format!("POST /proxy/t HTTP/1.0\r\nHost: x\r\nx-api-key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n{hello_chunked}").into_bytes(),
            Expect::Reject,
        ),
        (
            "TE obs-folded",
            post("Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
    ]
}

/// Duplicate, conflicting and malformed Content-Length.
fn content_length_cases() -> Vec<Case> {
    let s = SMUGGLED;
    vec![
        // Content-Length forms.
        (
            "CL duplicate, same value",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            Expect::Either(b"hello"),
        ),
        (
            "CL list, same value",
            post("Content-Length: 5, 5\r\n", "hello"),
            Expect::Either(b"hello"),
        ),
        (
            "CL conflicting",
            post(
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                &format!("hello{s}"),
            ),
            Expect::Reject,
        ),
        (
            "CL list conflicting",
            post("Content-Length: 5, 6\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL negative",
            post("Content-Length: -5\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL plus sign",
            post("Content-Length: +5\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL hex",
            post("Content-Length: 0x5\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL trailing junk",
            post("Content-Length: 5a\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL exponent",
            post("Content-Length: 1e1\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL empty",
            post("Content-Length: \r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "CL overflow",
            post(
                "Content-Length: 99999999999999999999999\r\n",
                &format!("hello{s}"),
            ),
            Expect::Reject,
        ),
    ]
}

/// Line endings, folding and bytes that end a header early.
fn line_cases() -> Vec<Case> {
    let s = SMUGGLED;
    vec![
        // Line endings and folding.
        (
            "bare LF head",
            format!(
                "POST /proxy/t HTTP/1.1\nHost: x\nx-api-key: {KEY}\nContent-Length: 5\n\nhello"
            )
            .into_bytes(),
            Expect::Either(b"hello"),
        ),
        (
            "bare CR in head",
            post("X-A: 1\rContent-Length: 0\r\n", &format!("hello{s}")),
            Expect::Reject,
        ),
        (
            "obs-fold",
            post("X-Folded: a\r\n b\r\nContent-Length: 5\r\n", "hello"),
            Expect::Either(b"hello"),
        ),
        (
            "NUL in a header",
            post("X-A: a\0b\r\nContent-Length: 5\r\n", "hello"),
            Expect::Reject,
        ),
    ]
}

/// Chunk sizes, extensions and trailers.
fn chunk_cases() -> Vec<Case> {
    let s = SMUGGLED;
    vec![
        // Chunk sizes and extensions.
        (
            "chunk size not hex",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("zz\r\nhello\r\n0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk size negative",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("-5\r\nhello\r\n0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk size 0x prefix",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0x5\r\nhello\r\n0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk longer than its size",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("3\r\nhello\r\n0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk without CRLF",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("5\r\nhelloX0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk size with space",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("5 5\r\nhello\r\n0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk extension",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5;name=value\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::Either(b"hello"),
        ),
        (
            "chunk extension quoted",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::Either(b"hello"),
        ),
        (
            "chunk size with leading zeros",
            post(
                "Transfer-Encoding: chunked\r\n",
                "0000000000000000000005\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::Either(b"hello"),
        ),
        (
            "chunk size over 64 bits",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("10000000000000005\r\nhello\r\n0\r\n\r\n{s}"),
            ),
            Expect::Reject,
        ),
        (
            "chunk size bare LF",
            post("Transfer-Encoding: chunked\r\n", "5\nhello\n0\n\n"),
            Expect::Either(b"hello"),
        ),
        (
            "trailer fields",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
            ),
            Expect::Either(b"hello"),
        ),
    ]
}

/// Two Host fields, or an authority that disagrees with Host.
fn authority_cases() -> Vec<Case> {
    vec![
        // Authority tricks.
        (
            "two Host headers",
            format!("GET /proxy/t HTTP/1.1\r\nHost: a\r\nHost: b\r\nx-api-key: {KEY}\r\n\r\n")
                .into_bytes(),
            Expect::Reject,
        ),
        (
            "absolute-form with a different Host",
            format!("GET http://a/proxy/t HTTP/1.1\r\nHost: b\r\nx-api-key: {KEY}\r\n\r\n")
                .into_bytes(),
            Expect::Reject,
        ),
    ]
}

#[test]
fn framing_tricks_never_smuggle_a_request() {
    let up = Recorder::start();
    let tg = Tollgate::start(&standard(None, &format!("127.0.0.1:{}", up.port)).to_yaml());
    let mut failures = Vec::new();
    for (name, bytes, expect) in cases() {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&tg, &up, name, &bytes, expect)
        }));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn an_honest_request_after_a_tricky_one_still_works() {
    let up = Recorder::start();
    let tg = Tollgate::start(&standard(None, &format!("127.0.0.1:{}", up.port)).to_yaml());
    let _ = raw_exchange(
        tg.port,
        &post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello"),
        Duration::from_secs(3),
    );
    let r = raw_request(
        tg.port,
        format!(
            "GET /proxy/fine HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("answer");
    assert_eq!(r.status, 200);
    let seen = up.take();
    assert_eq!(seen.iter().filter(|s| s.complete).count(), 1, "{seen:?}");
    assert!(seen[0].line.starts_with("GET /fine "), "{seen:?}");
}
