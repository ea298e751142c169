//! Prometheus metrics, registered in the default registry that pingora-prometheus serves.
//!
//! Label values come only from the configuration (route prefixes, upstream, tier and limit
//! names, key ids) or from small fixed sets, never from a request: cardinality stays bounded
//! and a raw key or path can never become a label.

use std::time::Duration;

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec,
};

/// 100 µs to 10 s: a proxy hop to a slow upstream.
const PROXY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// 10 ms to 10 min: how long the breaker stayed open (a probe round is ~100 ms at least).
const BREAKER_OPEN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];
/// 50 µs up: a Redis round trip on loopback is ~100 µs.
const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

// The registrations below cannot fail: names and labels are constants checked by tests, and
// each metric is registered exactly once through its Lazy.
#[allow(clippy::expect_used)]
mod defs {
    use super::*;

    pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_requests_total",
            "Requests answered, by route, tier and status code",
            &["route", "tier", "code"]
        )
        .expect("register tollgate_requests_total")
    });
    pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
        register_histogram_vec!(
            "tollgate_request_duration_seconds",
            "Time from request header to the end of the response, by route",
            &["route"],
            PROXY_BUCKETS.to_vec()
        )
        .expect("register tollgate_request_duration_seconds")
    });
    pub static UPSTREAM_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
        register_histogram_vec!(
            "tollgate_upstream_duration_seconds",
            "Time from connecting to the upstream to its response header, by upstream",
            &["upstream"],
            PROXY_BUCKETS.to_vec()
        )
        .expect("register tollgate_upstream_duration_seconds")
    });
    pub static UPSTREAM_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_upstream_errors_total",
            "Upstream failures, by upstream and kind (connect, timeout, closed, other)",
            &["upstream", "kind"]
        )
        .expect("register tollgate_upstream_errors_total")
    });
    pub static DECISIONS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_ratelimit_decisions_total",
            "Rate-limit decisions, by tier, policy (`tier` for the tier's own limits), limit and decision",
            &["tier", "policy", "limit", "decision"]
        )
        .expect("register tollgate_ratelimit_decisions_total")
    });
    pub static KEY_REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_key_requests_total",
            "Requests per configured key id (anonymous callers share one value), by decision",
            &["key_id", "decision"]
        )
        .expect("register tollgate_key_requests_total")
    });
    pub static STORE_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
        register_histogram_vec!(
            "tollgate_store_duration_seconds",
            "Rate-limit store call latency, by operation",
            &["op"],
            STORE_BUCKETS.to_vec()
        )
        .expect("register tollgate_store_duration_seconds")
    });
    pub static STORE_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_store_errors_total",
            "Rate-limit store failures, by kind",
            &["kind"]
        )
        .expect("register tollgate_store_errors_total")
    });
    pub static RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_config_reloads_total",
            "Configuration loads, by result",
            &["result"]
        )
        .expect("register tollgate_config_reloads_total")
    });
    pub static GENERATION: Lazy<IntGauge> = Lazy::new(|| {
        register_int_gauge!(
            "tollgate_config_generation",
            "Generation of the configuration in force; bumps on every successful load"
        )
        .expect("register tollgate_config_generation")
    });
    pub static STORE_OPS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_store_operations_total",
            "Store operations besides decisions, by op (refund: charges given back across hash slots)",
            &["op"]
        )
        .expect("register tollgate_store_operations_total")
    });
    pub static STORE_OVERFLOW: Lazy<IntCounter> = Lazy::new(|| {
        register_int_counter!(
            "tollgate_store_overflow_total",
            "Requests the in-process store judged in a tier's shared overflow bucket because it held memory_max_identities identities"
        )
        .expect("register tollgate_store_overflow_total")
    });
    pub static BREAKER_STATE: Lazy<IntGauge> = Lazy::new(|| {
        register_int_gauge!(
            "tollgate_breaker_state",
            "Circuit breaker in front of the store: 0 closed, 1 half-open, 2 open"
        )
        .expect("register tollgate_breaker_state")
    });
    pub static BREAKER_TRANSITIONS: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered (open, half_open, closed)",
            &["to"]
        )
        .expect("register tollgate_breaker_transitions_total")
    });
    pub static BREAKER_OPEN_DURATION: Lazy<Histogram> = Lazy::new(|| {
        register_histogram!(
            "tollgate_breaker_open_duration_seconds",
            "How long the circuit breaker stayed open (probes included) before it closed",
            BREAKER_OPEN_BUCKETS.to_vec()
        )
        .expect("register tollgate_breaker_open_duration_seconds")
    });
    pub static ACCESS_LOG_DROPPED: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind",
            &["reason"]
        )
        .expect("register tollgate_access_log_dropped_total")
    });
    pub static TOP_LIMITED: Lazy<IntGaugeVec> = Lazy::new(|| {
        register_int_gauge_vec!(
            "tollgate_top_limited",
            "Limited requests over the last minute of the most limited identities (key id or ip:<addr>), at most 20 series",
            &["identity"]
        )
        .expect("register tollgate_top_limited")
    });
    pub static CONNECTIONS_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
        register_int_counter_vec!(
            "tollgate_connections_refused_total",
            "Client connections closed at accept time, by reason (rate: connection_rate.per_ip)",
            &["reason"]
        )
        .expect("register tollgate_connections_refused_total")
    });
    /// The one child the accept path touches, resolved once (no label lookup per accept).
    pub static CONNECTIONS_REFUSED_RATE: Lazy<IntCounter> =
        Lazy::new(|| CONNECTIONS_REFUSED.with_label_values(&["rate"]));
    pub static CONNECTIONS_UNTRACKED: Lazy<IntCounter> = Lazy::new(|| {
        register_int_counter!(
            "tollgate_connection_rate_untracked_total",
            "Connections admitted without a per-IP count because the rate table was full"
        )
        .expect("register tollgate_connection_rate_untracked_total")
    });
}

use defs::*;

/// The most series `tollgate_top_limited` ever has.
pub const TOP_LIMITED_SERIES: usize = 20;

/// Registers every metric up front, so `/metrics` lists them (at zero) before traffic.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&UPSTREAM_DURATION);
    Lazy::force(&UPSTREAM_ERRORS);
    Lazy::force(&DECISIONS);
    Lazy::force(&KEY_REQUESTS);
    Lazy::force(&STORE_DURATION);
    Lazy::force(&STORE_ERRORS);
    Lazy::force(&RELOADS);
    Lazy::force(&GENERATION);
    Lazy::force(&ACCESS_LOG_DROPPED);
    Lazy::force(&STORE_OVERFLOW);
    Lazy::force(&STORE_OPS);
    Lazy::force(&TOP_LIMITED);
    Lazy::force(&CONNECTIONS_REFUSED_RATE);
    Lazy::force(&CONNECTIONS_UNTRACKED);
    Lazy::force(&BREAKER_STATE);
    Lazy::force(&BREAKER_OPEN_DURATION);
    for r in ["success", "failure"] {
        RELOADS.with_label_values(&[r]);
    }
    for to in ["open", "half_open", "closed"] {
        BREAKER_TRANSITIONS.with_label_values(&[to]);
    }
}

pub fn request(route: &str, tier: &str, code: u16, took: Duration) {
    let mut buf = itoa::Buffer::new();
    REQUESTS
        .with_label_values(&[route, tier, buf.format(code)])
        .inc();
    REQUEST_DURATION
        .with_label_values(&[route])
        .observe(took.as_secs_f64());
}

pub fn upstream(upstream: &str, took: Duration) {
    UPSTREAM_DURATION
        .with_label_values(&[upstream])
        .observe(took.as_secs_f64());
}

pub fn upstream_error(upstream: &str, kind: &str) {
    UPSTREAM_ERRORS.with_label_values(&[upstream, kind]).inc();
}

/// `policy` is `tier` for a tier's own limit; `limit` is the limit as the 429 names it.
pub fn decision(tier: &str, policy: &str, limit: &str, decision: &str) {
    DECISIONS
        .with_label_values(&[tier, policy, limit, decision])
        .inc();
}

/// One refund across hash slots sent (Redis Cluster; see `store/redis/split.rs`).
pub fn store_refund() {
    STORE_OPS.with_label_values(&["refund"]).inc();
}

pub fn store_overflow() {
    STORE_OVERFLOW.inc();
}

pub fn key_request(key_id: &str, decision: &str) {
    KEY_REQUESTS.with_label_values(&[key_id, decision]).inc();
}

pub fn observe_store(op: &str, took: Duration) {
    STORE_DURATION
        .with_label_values(&[op])
        .observe(took.as_secs_f64());
}

pub fn store_error(kind: &str) {
    STORE_ERRORS.with_label_values(&[kind]).inc();
}

pub fn config_reload(ok: bool, generation: u64) {
    RELOADS
        .with_label_values(&[if ok { "success" } else { "failure" }])
        .inc();
    if ok {
        GENERATION.set(generation as i64);
    }
}

/// Replaces every `tollgate_top_limited` series with `top` (at most [`TOP_LIMITED_SERIES`]).
pub fn set_top_limited(top: &[(String, u64)]) {
    TOP_LIMITED.reset();
    for (identity, n) in top.iter().take(TOP_LIMITED_SERIES) {
        TOP_LIMITED
            .with_label_values(&[identity])
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
}

pub fn access_log_dropped(reason: &str) {
    ACCESS_LOG_DROPPED.with_label_values(&[reason]).inc();
}

pub fn connection_refused() {
    CONNECTIONS_REFUSED_RATE.inc();
}

pub fn connection_untracked() {
    CONNECTIONS_UNTRACKED.inc();
}

/// The breaker's state (0 closed, 1 half-open, 2 open). Called on transitions only.
pub fn breaker_state(state: i64) {
    BREAKER_STATE.set(state);
}

/// One breaker transition; `open_for` on closing: how long it had been open.
pub fn breaker_transition(to: &str, open_for: Option<Duration>) {
    BREAKER_TRANSITIONS.with_label_values(&[to]).inc();
    if let Some(d) = open_for {
        BREAKER_OPEN_DURATION.observe(d.as_secs_f64());
    }
}
