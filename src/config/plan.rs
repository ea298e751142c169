//! What a request is limited by, worked out once per configuration: for every route, method
//! class and tier, the list of budgets (the tier's own limits and each matching policy's).
//!
//! The hot path looks its [`Plan`] up by route index, method and tier index, and only fills in
//! the per-request identities (the caller's, the client IP, a header's digest); no matching,
//! no parsing, no lock. Built by `validate::policies`.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use super::LimitHeaders;
use crate::identity::StoreIdentity;
use crate::limiter::Limit;

/// The `policy` metric label of a tier's own limits (a name policies may not take).
pub const TIER_POLICY: &str = "tier";

/// Whose budget a policy's limits are counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    /// The caller's own identity (its key, or its address when anonymous).
    Identity,
    /// The client address, whoever the caller is (IPv6 by `identity.ipv6_prefix`).
    Ip,
    /// One budget for every caller.
    Global,
    /// The value of this header; a request without it is not limited by the policy.
    Header(http::HeaderName),
}

/// One budget of a plan.
#[derive(Debug)]
pub struct PlanBudget {
    /// The policy's name, or [`TIER_POLICY`] for the tier's own limits.
    pub policy: Arc<str>,
    pub by: By,
    /// As the store sees them: each `name` is the key's limit part (`<policy>.<limit>`, with
    /// `@<tier>` for a per-tier policy on a shared budget, so tiers do not share it).
    pub limits: Vec<Limit>,
    /// As clients see them: `violated-policies`, RateLimit headers, the `limit` label.
    pub names: Vec<Arc<str>>,
    pub headers: Vec<LimitHeaders>,
}

/// Every budget a request of one route, method and tier draws on; the tier's own first.
#[derive(Debug)]
pub struct Plan {
    /// Keys the over-limit cache: tier, route and method class.
    pub scope: Arc<str>,
    pub budgets: Vec<PlanBudget>,
}

impl Plan {
    /// Whether any budget has a limit (otherwise the request needs no store call).
    pub fn is_limited(&self) -> bool {
        self.budgets.iter().any(|b| !b.limits.is_empty())
    }

    /// The store identity of each budget for this request, `None` for a budget that does not
    /// apply (a header policy without its header, or a budget without limits).
    pub fn identities(
        &self,
        caller: &StoreIdentity,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        ipv6_prefix: u8,
    ) -> Vec<Option<StoreIdentity>> {
        self.budgets
            .iter()
            .map(|b| {
                if b.limits.is_empty() {
                    return None;
                }
                match &b.by {
                    By::Identity => Some(caller.clone()),
                    By::Ip => Some(StoreIdentity::for_ip(client, ipv6_prefix)),
                    By::Global => Some(StoreIdentity::global()),
                    By::Header(name) => headers
                        .get(name)
                        .map(|v| v.as_bytes().trim_ascii())
                        .filter(|v| !v.is_empty())
                        .map(|v| StoreIdentity::for_header(name.as_str(), v)),
                }
            })
            .collect()
    }
}

/// The plans of one route: per method class, one plan per tier (by tier index). Cloning
/// clones `Arc`s only (a reload of the keys file alone clones the snapshot).
#[derive(Debug, Default, Clone)]
pub struct RoutePlans {
    /// Methods some policy on this route names, each with its plans.
    pub methods: Vec<(http::Method, Vec<Arc<Plan>>)>,
    /// Every other method.
    pub other: Vec<Arc<Plan>>,
}

impl RoutePlans {
    pub fn plan(&self, method: &http::Method, tier: usize) -> Option<&Arc<Plan>> {
        let plans = self
            .methods
            .iter()
            .find(|(m, _)| m == method)
            .map_or(&self.other, |(_, p)| p);
        plans.get(tier)
    }
}

impl super::Snapshot {
    /// Every `by: identity` policy limit a caller of `tier` is counted in on some route and
    /// method (once each): what the admin API reads and clears beside the tier's own limits.
    pub fn identity_policy_limits(&self, tier: &super::Tier) -> Vec<Limit> {
        let mut out: Vec<Limit> = Vec::new();
        for route in &self.plans {
            let tables = std::iter::once(&route.other).chain(route.methods.iter().map(|(_, p)| p));
            for plan in tables.filter_map(|plans| plans.get(tier.index)) {
                let own = plan.budgets.iter().skip(1).filter(|b| b.by == By::Identity);
                for l in own.flat_map(|b| &b.limits) {
                    if !out.iter().any(|o| o.name == l.name) {
                        out.push(l.clone());
                    }
                }
            }
        }
        out
    }
}
