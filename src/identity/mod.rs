//! Who is calling: the API key's entry, or the client IP for anonymous callers.
//!
//! Resolution is pure: it reads the request's key header and addresses and the config snapshot,
//! and never touches the network. The raw key is hashed here and goes no further.

mod client_ip;
mod resolve;

pub use client_ip::client_ip;
pub use resolve::{resolve, Identity, Rejection};
