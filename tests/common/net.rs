//! Loopback ports and bounded waiting: the one free-port allocator every test and helper uses.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The ports [`free_port`] hands out: below the kernel's ephemeral range (32768+), where a
/// client socket of any test (or one in TIME_WAIT, or a TCP self-connect to a port a client
/// keeps dialling) could take the port between this check and the server's bind, or between a
/// server's kill and its restart on the same port.
const FIRST: u16 = 10_000;
const SPAN: u16 = 22_000;

/// A free loopback port. Ports come from a per-process sequence (its start spread by PID) and
/// are checked by binding, so parallel tests in one binary never collide and rarely race other
/// binaries. Servers that are killed and restarted on the same port use it too.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 220) as u16 * 100;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + n % SPAN) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below 32768");
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Whether something accepts connections on loopback `port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}
