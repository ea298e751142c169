//! What happens on a client connection before and beneath HTTP: the per-IP new-connection
//! limit decided at accept time ([`conn_rate`]), and the HTTP/1 wire guards
//! ([`wire_guard`], [`request_line`]) that [`Frontline`] puts under Pingora's parser.

pub mod conn_rate;
mod frontline;
pub mod request_line;
pub mod wire_guard;

pub use conn_rate::ConnectionRateFilter;
pub use frontline::Frontline;
pub use wire_guard::GuardedStream;
