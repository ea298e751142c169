//! TLS termination for the proxy listeners: certificate files loaded and checked ([`certs`]),
//! and the per-listener SNI resolver whose certificates can be swapped without a restart
//! ([`resolver`]). The listeners themselves and the rotation are wired in `crate::app` (its `listeners` module).

pub mod certs;
pub mod client_hello;
pub mod metrics;
pub mod resolver;

pub use certs::{load_pair, CertError, LoadedCert, Part};
pub use resolver::{CertSet, SniResolver};
