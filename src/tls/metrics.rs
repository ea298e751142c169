//! The TLS metrics: certificate expiry and certificate reloads.
//!
//! `tollgate_tls_cert_expiry_seconds{name}` is the certificate's `notAfter` as a Unix
//! timestamp (as blackbox_exporter's `probe_ssl_earliest_cert_expiry`), so that it needs no
//! refreshing and an alert reads `tollgate_tls_cert_expiry_seconds - time() < 14 * 86400`.

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec,
};

// Constant names and labels, registered once through their Lazy: cannot fail.
#[allow(clippy::expect_used)]
static EXPIRY: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "tollgate_tls_cert_expiry_seconds",
        "Expiry (notAfter, Unix seconds) of each certificate being served, by its first DNS name",
        &["name"]
    )
    .expect("register tollgate_tls_cert_expiry_seconds")
});

#[allow(clippy::expect_used)]
static RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "tollgate_tls_cert_reloads_total",
        "Certificate reloads after a file change, by result",
        &["result"]
    )
    .expect("register tollgate_tls_cert_reloads_total")
});

/// Replaces the expiry series with those of the certificates now served.
pub fn set_expiry<'a>(certs: impl Iterator<Item = (String, i64)> + 'a) {
    EXPIRY.reset();
    for (name, not_after) in certs {
        EXPIRY.with_label_values(&[&name]).set(not_after);
    }
}

pub fn cert_reload(ok: bool) {
    RELOADS
        .with_label_values(&[if ok { "success" } else { "failure" }])
        .inc();
}

/// Registers the metrics up front, so `/metrics` lists them before the first reload.
pub fn init() {
    Lazy::force(&EXPIRY);
    for r in ["success", "failure"] {
        RELOADS.with_label_values(&[r]);
    }
}
