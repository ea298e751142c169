//! Who is calling, as far as the request itself can tell: the API key it presents (reduced to a
//! digest at once), or the client address. Everything here is pure and reads no configuration
//! beyond what it is handed; the config snapshot then maps a digest to a key's id and tier
//! (`config::Caller`).
//!
//! This module owns the whole path from a raw key to what the store sees: [`digest`] turns a key
//! into a [`KeyDigest`], and [`StoreIdentity`] names a budget's counters (`id:<id>` for a key's
//! configured id, `ip:<addr>` for an anonymous caller), so a raw key goes no further than this
//! module.

mod client_ip;
mod presented;
mod store_identity;

pub use client_ip::client_ip;
pub use presented::{presented_key, Rejection};
pub use store_identity::{digest, KeyDigest, StoreIdentity};
