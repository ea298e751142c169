//! `-d`: Pingora forks into the background; everything tollgate starts must live in the child.
pub mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn daemon_mode_serves_reloads_and_logs() {
    let echo = Echo::start();
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = dir.path().join("access.log");
    let config = standard(None, &echo.addr())
        .listen(&format!("127.0.0.1:{port}"))
        .admin_listen(&format!("127.0.0.1:{admin}"))
        .access_log_path(&log.display().to_string());
    let yaml = config.to_yaml();
    let cfg = dir.path().join("tollgate.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    let pid_file = dir.path().join("tollgate.pid");
    let pingora = format!(
        "---\nversion: 1\nthreads: 1\npid_file: {}\nupgrade_sock: {}/up.sock\nerror_log: {}/error.log\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n",
        pid_file.display(),
        dir.path().display(),
        dir.path().display()
    );
    let conf = dir.path().join("pingora.yaml");
    std::fs::write(&conf, pingora).unwrap();

    let status = Command::new(TOLLGATE)
        .arg("--config")
        .arg(&cfg)
        .arg("-c")
        .arg(&conf)
        .arg("-d")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start daemon");
    assert!(status.success(), "the foreground parent exits 0");
    assert!(wait_until(Duration::from_secs(10), || pid_file.exists()
        && port_open(port)));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Not a child of this test (it daemonized): stopped by PID when the test ends.
    let _guard = PidGuard(pid);

    let r = client()
        .get(format!("http://127.0.0.1:{port}/api/x"))
        .header("x-api-key", "free-demo-key")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("\"key_id\":\"alice\""))),
        "the access log writer runs in the daemon"
    );

    // SIGHUP reloads in the daemon too.
    std::fs::write(&cfg, config.tier("free", &[limit(1, "60s")]).to_yaml()).unwrap();
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
    let limited = wait_until(Duration::from_secs(5), || {
        client()
            .get(format!("http://127.0.0.1:{port}/api/x"))
            .header("x-api-key", "free-demo-key")
            .send()
            .is_ok_and(|r| r.status() == 429)
    });
    assert!(limited, "the reload took effect");
}
