//! The integration-test harness: every test owns its processes.
//!
//! | module | what it holds |
//! |---|---|
//! | [`process`] | [`RedisServer`], [`Echo`], [`Tollgate`] and the [`ChildGuard`] that owns every child process (killed by PID and reaped on drop) |
//! | [`echo_bin`] | where the `tollgate-echo` binary is (a workspace member of its own, built on first use) |
//! | [`config`] | [`ConfigBuilder`]: gateway configs built from typed parts, never pasted YAML |
//! | [`http`] | [`client`] (reqwest) and the one raw-socket client ([`Conn`], pipelined or one request at a time, [`raw_exchange`], [`Response`]) |
//! | [`net`] | [`free_port`] (the one port allocator), [`port_open`], [`wait_until`] |
//! | [`metrics`] | reading `/metrics` text |
//! | [`load`] | a load generator that records every request |
//! | [`cluster`] | a real six-node Redis Cluster |
//! | [`tls`] | certificates generated with rcgen, TLS and HTTP/2 clients over real sockets |
//! | [`policies`] | a gateway config with one route per policy `by` kind, and a 64-client burst |
//! | [`recorder`] | a raw-TCP upstream that records exactly what reached it (request smuggling) |
//!
//! Test files declare it `pub mod common;`: items of a public module are what the test crate
//! offers, so a helper that one test binary does not call is not dead code there, and no
//! `dead_code` allowance is needed.

pub mod cluster;
pub mod config;
pub mod echo_bin;
pub mod http;
pub mod load;
pub mod metrics;
pub mod net;
pub mod policies;
pub mod process;
pub mod recorder;
pub mod tls;

pub use config::{limit, standard, ConfigBuilder, Key, Listener, Redis, Route, Upstream};
pub use echo_bin::echo_bin;
pub use http::{
    client, http_get, parse_response, raw_exchange, raw_request, raw_status, Conn, Response,
};
pub use metrics::{metric_sum, metric_value};
pub use net::{free_port, port_open, wait_until};
pub use process::{rss_bytes, signal, ChildGuard, Echo, PidGuard, RedisServer, Tollgate, TOLLGATE};
