//! Metric handles resolved per configuration generation, so that the request path only
//! increments counters and observes histograms.
//!
//! A prometheus `with_label_values` hashes the label values and takes the vector's lock; here it
//! runs once per label set: per route, per (route, tier) and status code, per (tier, limit,
//! decision) and per (key id, decision). Each handle is resolved on its first use (a `OnceLock`,
//! then one atomic load per request) rather than all at build time, so `/metrics` only lists
//! series that happened and a file of a million keys costs a pointer per key until a key is used.
//! Cardinality stays what the configuration allows: labels come from its routes, tiers, limits
//! and key ids and from fixed sets, never from a request.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use once_cell::race::OnceBox;
use pingora_prometheus::prometheus::{Histogram, IntCounter};

use crate::config::{Caller, Snapshot, Tier, TIER_POLICY};
use crate::metrics::{self, Decision};

/// Status codes with a preresolved counter; any other code (rare) is looked up per request.
const CODES: [u16; 28] = [
    0, 101, 200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409,
    413, 422, 429, 431, 499, 500, 502, 503, 504,
];
const DECISIONS: usize = Decision::ALL.len();

/// The `limit` label of a decision: one of the tier's limits, `none` or `all`.
#[derive(Debug, Clone, Copy)]
pub enum LimitLabel {
    Index(usize),
    /// Decided without a headline limit.
    None,
    /// A store failure: every limit at once.
    All,
}

type Lazy<T> = OnceLock<T>;

struct RouteHandles {
    name: Arc<str>,
    upstream: String,
    duration: Lazy<Histogram>,
    upstream_duration: Lazy<Histogram>,
    /// Per tier (by `Tier::index`), then `none` last.
    codes: Vec<OnceBox<[Lazy<IntCounter>; CODES.len()]>>,
}

struct TierHandles {
    name: Arc<str>,
    /// Per limit, then `none`, then `all`.
    limits: Vec<(Arc<str>, [Lazy<IntCounter>; DECISIONS])>,
}

pub struct MetricHandles {
    /// Per route (by index in `Snapshot::routes`), then `unmatched` last.
    routes: Vec<RouteHandles>,
    tiers: Vec<TierHandles>,
    /// Per key (by `KeyEntry::index`).
    keys: Vec<OnceBox<[Lazy<IntCounter>; DECISIONS]>>,
    anonymous: [Lazy<IntCounter>; DECISIONS],
}

impl MetricHandles {
    pub fn build(snapshot: &Snapshot) -> Self {
        let ntiers = snapshot.tiers.len();
        let route = |name: Arc<str>, upstream: String| RouteHandles {
            name,
            upstream,
            duration: Lazy::new(),
            upstream_duration: Lazy::new(),
            codes: (0..=ntiers).map(|_| OnceBox::new()).collect(),
        };
        let mut routes: Vec<RouteHandles> = snapshot
            .routes
            .iter()
            .map(|r| route(r.name.clone(), r.upstream.clone()))
            .collect();
        routes.push(route("unmatched".into(), String::new()));
        let mut tiers: Vec<Option<TierHandles>> = (0..ntiers).map(|_| None).collect();
        for t in snapshot.tiers.values() {
            let mut limits: Vec<(Arc<str>, _)> = t
                .limits
                .iter()
                .map(|l| (Arc::from(l.name.as_ref()), Default::default()))
                .collect();
            limits.push(("none".into(), Default::default()));
            limits.push(("all".into(), Default::default()));
            if let Some(slot) = tiers.get_mut(t.index) {
                *slot = Some(TierHandles {
                    name: t.name.clone(),
                    limits,
                });
            }
        }
        MetricHandles {
            routes,
            tiers: tiers
                .into_iter()
                .map(|t| {
                    t.unwrap_or(TierHandles {
                        name: "none".into(),
                        limits: Vec::new(),
                    })
                })
                .collect(),
            keys: (0..snapshot.keys.id_count())
                .map(|_| OnceBox::new())
                .collect(),
            anonymous: Default::default(),
        }
    }

    fn route(&self, route: Option<usize>) -> Option<&RouteHandles> {
        match route {
            Some(i) => self.routes.get(i),
            None => self.routes.last(),
        }
    }

    /// `tollgate_requests_total` and `tollgate_request_duration_seconds` for one answer.
    pub fn request(&self, route: Option<usize>, tier: Option<&Tier>, code: u16, took: Duration) {
        let Some(r) = self.route(route) else { return };
        let tier_name = tier.map_or("none", |t| t.name.as_ref());
        let tier_slot = tier.map_or(r.codes.len() - 1, |t| t.index);
        match (
            CODES.iter().position(|c| *c == code),
            r.codes.get(tier_slot),
        ) {
            (Some(ci), Some(cell)) => {
                let table = cell.get_or_init(Box::default);
                table[ci]
                    .get_or_init(|| metrics::requests_counter(&r.name, tier_name, code))
                    .inc();
            }
            _ => metrics::requests_counter(&r.name, tier_name, code).inc(),
        }
        r.duration
            .get_or_init(|| metrics::request_duration(&r.name))
            .observe(took.as_secs_f64());
    }

    /// `tollgate_upstream_duration_seconds` of the route's upstream.
    pub fn upstream(&self, route: usize, took: Duration) {
        if let Some(r) = self.routes.get(route) {
            r.upstream_duration
                .get_or_init(|| metrics::upstream_duration(&r.upstream))
                .observe(took.as_secs_f64());
        }
    }

    /// `tollgate_ratelimit_decisions_total{tier, policy, limit, decision}` of the tier's own
    /// limits (policy `tier`) or of a store failure (policy and limit `all`).
    pub fn decision(&self, tier: &Tier, limit: LimitLabel, decision: Decision) {
        let Some(t) = self.tiers.get(tier.index) else {
            return;
        };
        let n = t.limits.len();
        let i = match limit {
            LimitLabel::Index(i) if i + 2 < n => i,
            LimitLabel::Index(_) | LimitLabel::None => n.wrapping_sub(2),
            LimitLabel::All => n.wrapping_sub(1),
        };
        if let Some((name, cells)) = t.limits.get(i) {
            cells[decision.index()]
                .get_or_init(|| {
                    let policy = match limit {
                        LimitLabel::All => "all",
                        _ => TIER_POLICY,
                    };
                    metrics::decision_counter(&t.name, policy, name, decision)
                })
                .inc();
        }
    }

    /// `tollgate_key_requests_total{key_id, decision}`.
    pub fn key_request(&self, identity: &Caller, decision: Decision) {
        let cells = match identity {
            Caller::Key(k) => match self.keys.get(k.index) {
                Some(cell) => cell.get_or_init(Box::default),
                // A key from `keys_redis`, outside the table: a label lookup.
                None => return metrics::key_counter(identity.key_id(), decision).inc(),
            },
            Caller::Anonymous { .. } => &self.anonymous,
        };
        cells[decision.index()]
            .get_or_init(|| metrics::key_counter(identity.key_id(), decision))
            .inc();
    }
}

impl std::fmt::Debug for MetricHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricHandles")
            .field("routes", &self.routes.len())
            .field("tiers", &self.tiers.len())
            .field("keys", &self.keys.len())
            .finish()
    }
}
