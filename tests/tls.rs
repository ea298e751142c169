//! TLS termination over real sockets: certificates generated here, SNI selection, the TLS 1.3
//! floor, ALPN, `X-Forwarded-Proto: https`, rotation under load, refused bad certificates, and
//! `tollgate -t` on certificate files.

pub mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{self as t, Pair};
use common::{Echo, Listener, Tollgate, TOLLGATE};

const KEY: (&str, &str) = ("x-api-key", "internal-demo-key");

/// The standard harness config with `listen` replaced by `listeners`.
fn config_with(echo: &Echo, listeners: &[Listener]) -> String {
    common::standard(None, &echo.addr())
        .listeners(listeners)
        .to_yaml()
}

/// A TLS listener on `{LISTEN}` serving `pairs` (the first is the default).
fn tls_listener(pairs: &[&Pair]) -> Listener {
    pairs
        .iter()
        .fold(Listener::new("{LISTEN}"), |l, p| l.cert(&p.cert, &p.key))
}

#[test]
fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let api = t::gen_pair(dir.path(), "api", &["api.test"]);
    let admin = t::gen_pair(dir.path(), "admin", &["admin.test", "*.admin.test"]);
    let echo = Echo::start();
    let tg = Tollgate::start(&config_with(&echo, &[tls_listener(&[&api, &admin])]));
    let rt = t::runtime();
    rt.block_on(async {
        let cases = [
            ("api.test", &api),
            ("admin.test", &admin),
            ("x.admin.test", &admin),
            ("unknown.test", &api),
            ("127.0.0.1", &api), // an IP address: the client sends no SNI
        ];
        for (sni, want) in cases {
            let s = t::connect(tg.port, sni, t::h1_client()).await.unwrap();
            assert!(
                t::served_cert(&s) == want.der,
                "SNI {sni}: wrong certificate"
            );
        }
    });
}

#[test]
fn requests_over_tls_are_forwarded_as_https_and_alpn_offers_h2() {
    let dir = tempfile::tempdir().unwrap();
    let api = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    let plain = common::free_port();
    let h1_only = common::free_port();
    let listeners = [
        tls_listener(&[&api]),
        Listener::new(&format!("127.0.0.1:{plain}")),
        Listener::new(&format!("127.0.0.1:{h1_only}"))
            .cert(&api.cert, &api.key)
            .http2(false),
    ];
    let tg = Tollgate::start(&config_with(&echo, &listeners));
    let rt = t::runtime();
    rt.block_on(async {
        let mut s = t::connect(tg.port, "api.test", t::h1_client())
            .await
            .unwrap();
        for _ in 0..3 {
            let r = t::get(&mut s, "/api/x", &[KEY]).await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
        }
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", plain))
            .await
            .unwrap();
        let r = t::get(&mut tcp, "/api/x", &[KEY]).await.unwrap();
        assert_eq!(r.json()["headers"]["x-forwarded-proto"], "http");

        let both = t::client_config(rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"]);
        let s = t::connect(tg.port, "api.test", both.clone()).await.unwrap();
        assert_eq!(
            t::alpn(&s).as_deref(),
            Some(&b"h2"[..]),
            "http2 defaults to true"
        );
        let s = t::connect(h1_only, "api.test", both).await.unwrap();
        assert_eq!(t::alpn(&s).as_deref(), Some(&b"http/1.1"[..]));
    });
}

#[test]
fn min_version_1_3_refuses_a_tls_1_2_client() {
    let dir = tempfile::tempdir().unwrap();
    let api = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    let floor = tls_listener(&[&api]).min_version("\"1.3\"");
    let tg = Tollgate::start(&config_with(&echo, &[floor]));
    let rt = t::runtime();
    rt.block_on(async {
        let tls12 = t::client_config(&[&rustls::version::TLS12], &[b"http/1.1"]);
        let refused = t::connect(tg.port, "api.test", tls12).await;
        assert!(refused.is_err(), "a TLS 1.2-only client must be refused");
        let tls13 = t::client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
        let mut s = t::connect(tg.port, "api.test", tls13).await.unwrap();
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(t::get(&mut s, "/api/x", &[KEY]).await.unwrap().status, 200);
    });
    // Without min_version a TLS 1.2 client is served.
    let tg = Tollgate::start(&config_with(&echo, &[tls_listener(&[&api])]));
    rt.block_on(async {
        let tls12 = t::client_config(&[&rustls::version::TLS12], &[b"http/1.1"]);
        let mut s = t::connect(tg.port, "api.test", tls12).await.unwrap();
        assert_eq!(t::get(&mut s, "/api/x", &[KEY]).await.unwrap().status, 200);
    });
}

/// Until `deadline`, whether a new handshake is served `want`.
async fn wait_for_cert(port: u16, want: &[u8], deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Ok(s) = t::connect(port, "api.test", t::h1_client()).await {
            if t::served_cert(&s) == want {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    reconnects: AtomicU64,
}

/// Requests on one keep-alive connection until `stop`; any error counts as a failure, and a
/// fresh connection after one as a reconnect.
async fn keepalive_worker(port: u16, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let mut s = t::connect(port, "api.test", t::h1_client()).await.unwrap();
    while !stop.load(Ordering::Relaxed) {
        match t::get(&mut s, "/api/x", &[KEY]).await {
            Ok(r) if r.status == 200 => load.ok.fetch_add(1, Ordering::Relaxed),
            _ => {
                load.failed.fetch_add(1, Ordering::Relaxed);
                load.reconnects.fetch_add(1, Ordering::Relaxed);
                s = t::connect(port, "api.test", t::h1_client()).await.unwrap();
                continue;
            }
        };
    }
}

/// A new TLS connection per request until `stop`.
async fn handshake_worker(port: u16, load: Arc<Load>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let r = match t::connect(port, "api.test", t::h1_client()).await {
            Ok(mut s) => t::get(&mut s, "/api/x", &[KEY]).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(r) if r.status == 200 => load.ok.fetch_add(1, Ordering::Relaxed),
            _ => load.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[test]
fn rotation_under_load_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    let tg = Tollgate::start(&config_with(&echo, &[tls_listener(&[&v1])]));
    let rt = t::runtime();
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(tokio::spawn(keepalive_worker(
                tg.port,
                load.clone(),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(handshake_worker(
            tg.port,
            load.clone(),
            stop.clone(),
        )));
        tokio::time::sleep(Duration::from_millis(500)).await;

        // By file change: the key first, then the certificate, as a rotation would.
        let scratch = tempfile::tempdir().unwrap();
        let v2 = t::gen_pair(scratch.path(), "v2", &["api.test"]);
        t::replace_file(&v1.key, &v2.key_pem);
        tokio::time::sleep(Duration::from_millis(300)).await;
        t::replace_file(&v1.cert, &v2.cert_pem);
        assert!(
            wait_for_cert(tg.port, &v2.der, Duration::from_secs(10)).await,
            "the rotated certificate was not served; logs:\n{}",
            tg.logs()
        );

        // By SIGHUP after a config edit naming new files.
        let v3 = t::gen_pair(dir.path(), "v3", &["api.test"]);
        tg.write_config(&config_with(&echo, &[tls_listener(&[&v3])]));
        tg.signal(libc::SIGHUP);
        assert!(
            wait_for_cert(tg.port, &v3.der, Duration::from_secs(10)).await,
            "the certificate of the new config was not served; logs:\n{}",
            tg.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
    });
    let ok = load.ok.load(Ordering::Relaxed);
    eprintln!("{ok} requests during two rotations");
    assert!(ok > 20, "too little load to mean anything: {ok} requests");
    assert_eq!(load.failed.load(Ordering::Relaxed), 0, "failed requests");
    assert_eq!(
        load.reconnects.load(Ordering::Relaxed),
        0,
        "dropped connections"
    );
    assert!(tg.metric("tollgate_tls_cert_reloads_total{result=\"success\"}") >= 1.0);
    assert!(tg
        .metrics()
        .contains("tollgate_tls_cert_expiry_seconds{name=\"api.test\"}"));
}

#[test]
fn a_bad_certificate_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    let yaml = config_with(&echo, &[tls_listener(&[&v1])]);
    let tg = Tollgate::start(&yaml);
    let rt = t::runtime();
    let other = t::gen_pair(tempfile::tempdir().unwrap().path(), "other", &["api.test"]);
    let steps: [(&std::path::Path, &str, &str); 3] = [
        (
            &v1.cert,
            "not a certificate\n",
            "listen[0].tls.certs[0].cert",
        ),
        (&v1.key, &other.key_pem, "does not match the certificate"),
        (&v1.key, "", "no PEM private key"),
    ];
    for (i, (path, contents, expect)) in steps.iter().enumerate() {
        t::replace_file(path, contents);
        let failures = (i + 1) as f64;
        let refused = common::wait_until(Duration::from_secs(10), || {
            tg.metric("tollgate_tls_cert_reloads_total{result=\"failure\"}") >= failures
        });
        assert!(refused, "step {i}: not refused; logs:\n{}", tg.logs());
        assert!(tg.logs().contains(expect), "step {i}: log lacks {expect:?}");
        assert!(tg.logs().contains(&path.display().to_string()));
        rt.block_on(async {
            let mut s = t::connect(tg.port, "api.test", t::h1_client())
                .await
                .unwrap();
            assert!(
                t::served_cert(&s) == v1.der,
                "step {i}: the old certificate must stay"
            );
            assert_eq!(t::get(&mut s, "/api/x", &[KEY]).await.unwrap().status, 200);
        });
        t::replace_file(&v1.cert, &v1.cert_pem);
        t::replace_file(&v1.key, &v1.key_pem);
    }
    // A reload naming a missing file is refused whole, by SIGHUP too.
    let before = tg.metric("tollgate_config_reloads_total{result=\"failure\"}");
    let missing = yaml.replace(&v1.key.display().to_string(), "/nonexistent/api.key");
    tg.write_config(&missing);
    tg.signal(libc::SIGHUP);
    let refused = common::wait_until(Duration::from_secs(10), || {
        tg.metric("tollgate_config_reloads_total{result=\"failure\"}") > before
    });
    assert!(refused, "logs:\n{}", tg.logs());
    assert!(tg.logs().contains("/nonexistent/api.key"));
    rt.block_on(async {
        let s = t::connect(tg.port, "api.test", t::h1_client())
            .await
            .unwrap();
        assert!(t::served_cert(&s) == v1.der);
    });
}

/// Runs `tollgate -t` on `yaml` written into `dir`; returns (exit ok, stdout + stderr).
fn check(dir: &std::path::Path, yaml: &str) -> (bool, String) {
    let path = dir.join("tollgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(TOLLGATE)
        .arg("--config")
        .arg(&path)
        .arg("-t")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_mode_validates_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    t::gen_pair(&dir.path().join("tls"), "api", &["api.test"]);
    let other = t::gen_pair(dir.path(), "other", &["other.test"]);
    let yaml = |cert: &str, key: &str, version: &str| {
        common::standard(None, "127.0.0.1:9")
            .admin_listen("127.0.0.1:9091")
            .listeners(&[Listener::new("127.0.0.1:8443")
                .cert(Path::new(cert), Path::new(key))
                .min_version(version)])
            .to_yaml()
    };

    // Relative paths are resolved against the config file's folder, whatever the cwd.
    let (ok, out) = check(dir.path(), &yaml("tls/api.pem", "tls/api.key", "\"1.3\""));
    assert!(ok, "{out}");
    let (ok, _) = check(dir.path(), &yaml("tls/api.pem", "tls/api.key", "1.2"));
    assert!(ok, "an unquoted 1.2 is accepted");

    let cases = [
        (
            yaml("tls/missing.pem", "tls/api.key", "\"1.2\""),
            "5:13: field `listen[0].tls.certs[0].cert`",
            "missing.pem: cannot read",
        ),
        (
            yaml("tls/api.key", "tls/api.key", "\"1.2\""),
            "field `listen[0].tls.certs[0].cert`",
            "no PEM certificate",
        ),
        (
            yaml("tls/api.pem", "tls/api.pem", "\"1.2\""),
            "field `listen[0].tls.certs[0].key`",
            "no PEM private key",
        ),
        (
            yaml("tls/api.pem", &other.key.display().to_string(), "\"1.2\""),
            "field `listen[0].tls.certs[0].key`",
            "does not match the certificate",
        ),
        (
            yaml("tls/api.pem", "tls/api.key", "\"1.1\""),
            "field `listen[0].tls.min_version`",
            "must be \"1.2\" or \"1.3\"",
        ),
    ];
    for (yaml, field, message) in cases {
        let (ok, out) = check(dir.path(), &yaml);
        assert!(!ok, "must be refused: {yaml}");
        assert!(out.contains("tollgate.yaml:"), "names the file: {out}");
        assert!(out.contains(field), "names {field}: {out}");
        assert!(out.contains(message), "says {message}: {out}");
    }
}

/// `connection_rate` is decided at accept, before any TLS handshake, and a client's TLS and
/// plain connections count together (one filter for every listener).
#[test]
fn connection_rate_refuses_before_the_handshake_across_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let api = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    let plain = common::free_port();
    let listeners = [
        tls_listener(&[&api]),
        Listener::new(&format!("127.0.0.1:{plain}")),
    ];
    let base = || common::standard(None, &echo.addr()).listeners(&listeners);
    // Started without a limit: the harness's readiness probes count for nothing.
    let tg = Tollgate::start(&base().to_yaml());
    tg.write_config(&base().connection_rate(3, Some("30s")).to_yaml());
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            tg.metric("tollgate_config_generation") >= 2.0
        }),
        "the limit was not loaded: {}",
        tg.logs()
    );
    t::runtime().block_on(async {
        for _ in 0..2 {
            let mut s = t::connect(tg.port, "api.test", t::h1_client())
                .await
                .unwrap();
            assert_eq!(t::get(&mut s, "/api/x", &[KEY]).await.unwrap().status, 200);
        }
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", plain))
            .await
            .unwrap();
        assert_eq!(
            t::get(&mut tcp, "/api/x", &[KEY]).await.unwrap().status,
            200
        );
        let refused = t::connect(tg.port, "api.test", t::h1_client()).await;
        assert!(
            refused.is_err(),
            "the fourth connection must be closed at accept"
        );
    });
    assert_eq!(
        tg.metric("tollgate_connections_refused_total{reason=\"rate\"}"),
        1.0
    );
}

/// A keys-file reload carries the snapshot in force: it must not put back the certificate a
/// file-change rotation replaced since.
#[test]
fn a_keys_file_reload_keeps_a_rotated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = t::gen_pair(dir.path(), "api", &["api.test"]);
    let echo = Echo::start();
    let digest = |key: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    let yaml = common::standard(None, &echo.addr())
        .listeners(&[tls_listener(&[&v1])])
        .keys_file("keys.tsv")
        .to_yaml();
    let first = format!("one\tfree\t{}\n", digest("k-one"));
    let tg = Tollgate::start_with_files(&yaml, &[("keys.tsv", &first)]);
    let rt = t::runtime();
    let v2 = t::gen_pair(tempfile::tempdir().unwrap().path(), "v2", &["api.test"]);
    t::replace_file(&v1.key, &v2.key_pem);
    t::replace_file(&v1.cert, &v2.cert_pem);
    rt.block_on(async {
        assert!(
            wait_for_cert(tg.port, &v2.der, Duration::from_secs(10)).await,
            "not rotated: {}",
            tg.logs()
        );
    });
    let keys = format!("{first}two\tfree\t{}\n", digest("k-two"));
    t::replace_file(&tg.dir.path().join("keys.tsv"), &keys);
    rt.block_on(async {
        let start = Instant::now();
        let mut answered = false;
        while start.elapsed() < Duration::from_secs(10) && !answered {
            let mut s = t::connect(tg.port, "api.test", t::h1_client())
                .await
                .unwrap();
            assert!(
                t::served_cert(&s) == v2.der,
                "the old certificate came back"
            );
            let r = t::get(&mut s, "/api/x", &[("x-api-key", "k-two")]).await;
            answered = r.is_ok_and(|r| r.status == 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "the keys file was not reloaded: {}", tg.logs());
        let s = t::connect(tg.port, "api.test", t::h1_client())
            .await
            .unwrap();
        assert!(
            t::served_cert(&s) == v2.der,
            "the old certificate came back"
        );
    });
}
