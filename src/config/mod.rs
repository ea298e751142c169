//! The gateway configuration: YAML schema, validation and hot reload.
//!
//! A file goes through three steps: [`schema`] parses it strictly (unknown fields are errors),
//! [`validate`] checks every cross-reference and compiles it into an immutable [`Snapshot`] with
//! lookup tables, and [`reload`] swaps a new snapshot in atomically on SIGHUP or on a file edit.
//! Every error names the file, the line and the field ([`ConfigError`]).

mod caller;
mod duration;
mod error;
pub mod key_table;
pub mod plan;
mod positions;
pub mod reload;
pub mod schema;
mod snapshot;
mod validate;

pub use caller::{Caller, Resolved};
pub use duration::parse_duration;
pub use error::ConfigError;
pub use plan::{By, Plan, PlanBudget, RoutePlans, TIER_POLICY};
pub use snapshot::{
    AccessLogSettings, AnonymousPolicy, CertPairSettings, ConnectionRateSettings,
    HealthCheckSettings, KeyEntry, KeysFile, KeysRedisSettings, LimitHeaders, ListenerSettings,
    OnError, RedisSettings, Route, Snapshot, Tier, TlsListenerSettings, UpstreamSettings,
};
pub use validate::{load_file, load_str, reload_keys};
