//! Fuzzing with proptest (no nightly toolchain here for cargo-fuzz): arbitrary and mutated
//! inputs for the config loader and for every function that reads request headers. The only
//! property for most is "never panics"; where a function promises more (a 401 for a malformed
//! key, a sane request id, a valid traceparent), that is checked too.
//!
//! Bounded: a few thousand cases per target, well under 30 s in a debug build.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, Uri};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tollgate::config::Caller;
use tollgate::config::{load_str, Snapshot};
use tollgate::identity::{self, Rejection};
use tollgate::proxy::headers::strip_prefix;
use tollgate::request_id::{request_id, traceparent};

const SHIPPED: &str = include_str!("../conf/tollgate.yaml");

/// The shipped config, with trusted proxies so that X-Forwarded-For is parsed.
fn snapshot() -> &'static Snapshot {
    static S: OnceLock<Snapshot> = OnceLock::new();
    S.get_or_init(|| {
        let src = SHIPPED.replace(
            "trusted_proxies: []",
            r#"trusted_proxies: ["127.0.0.0/8", "10.0.0.0/8", "::1/128", "fd00::/8"]"#,
        );
        load_str(Path::new("fuzz.yaml"), &src).expect("the shipped config loads")
    })
}

/// Header-value bytes as an HTTP/1 parser hands them over: visible ASCII, SP, HTAB and
/// obs-text (0x80-0xFF); never CR, LF or NUL.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    const COMMON: &[u8] = b",;:.[]-_ 0123456789abcdefABCDEF%";
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|v| {
        v.into_iter()
            .map(|b| match b {
                // Bytes a parser never hands over become ones the functions care about.
                0x00..=0x08 | 0x0a..=0x1f | 0x7f => COMMON[b as usize % COMMON.len()],
                b => b,
            })
            .collect()
    })
}

fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

fn any_ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        1 => Just(None),
        3 => any::<[u8; 4]>().prop_map(|b| Some(IpAddr::from(b))),
        1 => Just(Some(IpAddr::from([127, 0, 0, 1]))),
        1 => Just(Some(IpAddr::from([10, 1, 2, 3]))),
        2 => any::<[u8; 16]>().prop_map(|b| Some(IpAddr::from(b))),
    ]
}

/// One edit of a YAML text, applied at a relative position.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: f64, len: usize },
    Insert { at: f64, text: String },
    DuplicateLine { at: f64 },
    DropLine { at: f64 },
    SwapLines { a: f64, b: f64 },
    Indent { at: f64, spaces: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let yamlish = prop_oneof![
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!binary ".to_string()),
        Just("<<: *a\n".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("#".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("---\n".to_string()),
        Just("...\n".to_string()),
        Just("~".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("1e400".to_string()),
        Just("0ms".to_string()),
        Just("18446744073709551615s".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{feff}".to_string()),
        Just("é".to_string()),
        "[a-z_]{1,12}".prop_map(|s| s),
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ];
    prop_oneof![
        (0.0..1.0f64, 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (0.0..1.0f64, yamlish).prop_map(|(at, text)| Edit::Insert { at, text }),
        (0.0..1.0f64).prop_map(|at| Edit::DuplicateLine { at }),
        (0.0..1.0f64).prop_map(|at| Edit::DropLine { at }),
        (0.0..1.0f64, 0.0..1.0f64).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        (0.0..1.0f64, 0usize..6).prop_map(|(at, spaces)| Edit::Indent { at, spaces }),
    ]
}

fn char_boundary(s: &str, at: f64) -> usize {
    let mut i = ((s.len() as f64) * at) as usize;
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(src: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
    let line = |at: f64, n: usize| ((n as f64 * at) as usize).min(n.saturating_sub(1));
    match e {
        Edit::Delete { at, len } => {
            let i = char_boundary(src, *at);
            let mut j = (i + len).min(src.len());
            while !src.is_char_boundary(j) {
                j += 1;
            }
            format!("{}{}", &src[..i], &src[j..])
        }
        Edit::Insert { at, text } => {
            let i = char_boundary(src, *at);
            format!("{}{}{}", &src[..i], text, &src[i..])
        }
        Edit::DuplicateLine { at } if !lines.is_empty() => {
            let i = line(*at, lines.len());
            let l = lines[i].clone();
            lines.insert(i, l);
            lines.join("\n")
        }
        Edit::DropLine { at } if !lines.is_empty() => {
            lines.remove(line(*at, lines.len()));
            lines.join("\n")
        }
        Edit::SwapLines { a, b } if !lines.is_empty() => {
            let (i, j) = (line(*a, lines.len()), line(*b, lines.len()));
            lines.swap(i, j);
            lines.join("\n")
        }
        Edit::Indent { at, spaces } if !lines.is_empty() => {
            let i = line(*at, lines.len());
            lines[i] = format!("{}{}", " ".repeat(*spaces), lines[i].trim_start());
            lines.join("\n")
        }
        _ => src.to_string(),
    }
}

const YAML_TOKENS: &[&str] = &[
    "listen",
    "admin_listen",
    "redis",
    "url",
    "upstreams",
    "echo",
    "peers",
    "routes",
    "prefix",
    "upstream",
    "tiers",
    "free",
    "limits",
    "requests",
    "window",
    "algorithm",
    "keys",
    "id",
    "key",
    "tier",
    "identity",
    ": ",
    ":",
    "- ",
    "  ",
    "    ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!map ",
    "\"",
    "'",
    "#",
    "\n",
    "\n",
    "\n",
    "60s",
    "0ms",
    "1d",
    "-1",
    "99999999999999999999999",
    "1e400",
    "~",
    "true",
    "null",
    "0.5",
    "token_bucket",
    "sliding_log",
    "\"127.0.0.1:9000\"",
    "? ",
    "|\n",
    ">\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
];

fn hex(n: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(b"0123456789abcdef0".to_vec()), n)
        .prop_map(|v| String::from_utf8(v).unwrap_or_default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Any text: Ok or a ConfigError naming this file, never a panic.
    #[test]
    fn config_loader_never_panics_on_arbitrary_text(src in any::<String>()) {
        let path = Path::new("arbitrary.yaml");
        if let Err(e) = load_str(path, &src) {
            prop_assert_eq!(e.file.as_path(), path);
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// YAML-shaped noise: keys, flow collections, anchors and aliases, tags, odd scalars.
    #[test]
    fn config_loader_never_panics_on_yaml_shaped_text(
        tokens in prop::collection::vec(prop::sample::select(YAML_TOKENS), 0..80)
    ) {
        let _ = load_str(Path::new("yamlish.yaml"), &tokens.concat());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, ..ProptestConfig::default() })]

    /// The shipped config with one to four random edits: still Ok or a ConfigError whose line
    /// is within the file, never a panic.
    #[test]
    fn config_loader_never_panics_on_mutated_shipped_config(
        edits in prop::collection::vec(edit(), 1..5)
    ) {
        let mut src = SHIPPED.to_string();
        for e in &edits {
            src = apply(&src, e);
        }
        match load_str(Path::new("mutated.yaml"), &src) {
            Ok(s) => prop_assert!(!s.routes.is_empty()),
            Err(e) => prop_assert!(
                e.line <= src.lines().count() + 1,
                "line {} beyond the end of a {}-line file: {}", e.line, src.lines().count(), e
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Arbitrary key header bytes: a key entry, an anonymous caller, or a rejection; a key with
    /// bytes outside visible ASCII is always MalformedKey; the raw key never becomes the
    /// store identity.
    #[test]
    fn identity_resolve_never_panics(key in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)), client in any_ip()) {
        let s = snapshot();
        let res = s.caller(key.as_deref(), client);
        if let Some(k) = &key {
            let start = k.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(k.len());
            let end = k.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
            let trimmed = &k[start..end.max(start)];
            if !trimmed.is_empty() && !trimmed.iter().all(|b| b.is_ascii_graphic()) {
                prop_assert!(matches!(res, Err(Rejection::MalformedKey)), "{:?}", res);
            }
            // The store identity of a caller is a digest or `ip:<addr>`, never the raw key.
            if let Ok(id) = &res {
                let sid = id.store_identity().as_str();
                let leaked = trimmed.len() >= 4 && sid.as_bytes().windows(trimmed.len()).any(|w| w == trimmed);
                prop_assert!(!leaked || matches!(id, Caller::Anonymous { .. }), "raw key in {:?}", sid);
            }
        }
    }

    /// Arbitrary X-Forwarded-For headers (several, with any separators and junk): the answer
    /// is the peer or an address that appears in the header, never a panic.
    #[test]
    fn client_ip_never_panics(
        peer in any_ip(),
        xffs in prop::collection::vec(
            prop_oneof![
                2 => header_bytes(120),
                1 => prop::collection::vec(
                        prop_oneof![
                            any::<[u8; 4]>().prop_map(|b| IpAddr::from(b).to_string()),
                            any::<[u8; 16]>().prop_map(|b| IpAddr::from(b).to_string()),
                            Just("10.9.8.7".to_string()),
                            Just("127.0.0.1".to_string()),
                            Just("[::1]:443".to_string()),
                            Just("1.2.3.4:5678".to_string()),
                            Just("unknown".to_string()),
                            Just("".to_string()),
                        ],
                        0..8,
                    ).prop_map(|v| v.join(", ").into_bytes()),
            ],
            0..4,
        ),
    ) {
        let mut headers = HeaderMap::new();
        for x in &xffs {
            if let Some(v) = header_value(x) {
                headers.append("x-forwarded-for", v);
            }
        }
        let got = identity::client_ip(peer, &headers, &snapshot().trusted_proxies);
        match (peer, got) {
            (None, got) => prop_assert!(got.is_none()),
            (Some(p), Some(ip)) => {
                let joined: String = xffs.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect::<Vec<_>>().join(",");
                prop_assert!(ip == p || joined.contains(&ip.to_string()) || joined.contains(&format!("[{ip}]")),
                    "{} came from nowhere (peer {}, xff {:?})", ip, p, joined);
            }
            (Some(_), None) => prop_assert!(false, "a peer but no client"),
        }
    }

    /// Arbitrary X-Request-Id and traceparent: the request id is the client's when sane
    /// (1-128 visible ASCII) and a fresh UUID otherwise; the traceparent is always valid W3C.
    #[test]
    fn request_id_and_traceparent_never_panic(rid in header_bytes(200), tp in prop_oneof![
        header_bytes(80),
        (hex(32..33), hex(16..17), hex(2..3))
            .prop_map(|(t, s, f)| format!("00-{t}-{s}-{f}").into_bytes()),
        (hex(1..4), hex(30..35), hex(15..18), hex(1..4))
            .prop_map(|(v, t, s, f)| format!("{v}-{t}-{s}-{f}").into_bytes()),
    ]) {
        let mut headers = HeaderMap::new();
        if let Some(v) = header_value(&rid) {
            headers.insert("x-request-id", v);
        }
        if let Some(v) = header_value(&tp) {
            headers.insert("traceparent", v);
        }
        let id = request_id(&headers);
        let b = id.as_bytes();
        prop_assert!(!b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()));
        let sane = !rid.is_empty() && rid.len() <= 128 && rid.iter().all(|c| c.is_ascii_graphic());
        if sane {
            prop_assert_eq!(b, rid.as_slice());
        } else {
            prop_assert_eq!(b.len(), 36);
        }
        let t = traceparent(&headers);
        let t = t.to_str().expect("ascii");
        let parts: Vec<&str> = t.trim().split('-').collect();
        prop_assert_eq!(parts.len(), 4, "{}", t);
        prop_assert_eq!(parts[1].len(), 32);
        prop_assert_eq!(parts[2].len(), 16);
        prop_assert!(parts[1].bytes().any(|c| c != b'0') && parts[2].bytes().any(|c| c != b'0'));
    }

    /// Arbitrary request targets and prefixes: None, or a path that starts with '/' and keeps
    /// the query.
    #[test]
    fn strip_prefix_never_panics(
        target in prop_oneof![
            "/[a-zA-Z0-9/._~%!$&'()*+,;=:@-]{0,60}(\\?[a-zA-Z0-9=&%/?]{0,20})?",
            any::<String>().prop_map(|s| format!("/{s}")),
        ],
        prefix in prop_oneof![
            "/[a-z/]{0,12}",
            any::<String>(),
            Just("/proxy/".to_string()),
            Just("/".to_string()),
            Just("".to_string()),
        ],
    ) {
        let Ok(uri) = target.parse::<Uri>() else { return Ok(()); };
        if let Some(out) = strip_prefix(&uri, &prefix) {
            prop_assert!(out.starts_with('/'), "{:?}", out);
            if let Some(q) = uri.query() {
                let suffix = format!("?{q}");
                prop_assert!(out.ends_with(&suffix));
            }
            // What the proxy then does with it must not panic either.
            let _ = out.parse::<Uri>();
        }
    }
}

/// Known YAML hazards: deep nesting (stack), alias bombs (time and memory), huge scalars.
/// Runs on a test thread's 2 MiB stack, like the reloader's worker thread. Before the nesting
/// limit, `- - - ...` overflowed the stack (aborting the process) and `{a: {a: ...` took 38 s.
#[test]
fn config_loader_survives_yaml_bombs() {
    let laughs = {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut prev = 'a';
        for c in 'b'..='j' {
            s.push_str(&format!(
                "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = c;
        }
        s
    };
    let deep_indent: String = (0..3000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    let inputs = [
        "[".repeat(100_000),
        "{a: ".repeat(50_000),
        "a: {".repeat(50_000),
        "- ".repeat(50_000),
        "? ".repeat(50_000),
        deep_indent,
        format!("{}x", " ".repeat(200_000)),
        laughs,
        format!(
            "tiers: {{free: {{limits: [{{requests: {}, window: 1s}}]}}}}",
            "9".repeat(10_000)
        ),
        format!("listen: [\"{}\"]", "a".repeat(1_000_000)),
    ];
    for src in &inputs {
        let t0 = std::time::Instant::now();
        let r = load_str(Path::new("bomb.yaml"), src);
        eprintln!(
            "{:?}...: {:?} in {:?}",
            &src[..12.min(src.len())],
            r.as_ref()
                .err()
                .map(|e| e.to_string().chars().take(120).collect::<String>()),
            t0.elapsed()
        );
        assert!(r.is_err());
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{:?} for {}",
            t0.elapsed(),
            &src[..40.min(src.len())]
        );
    }
}
