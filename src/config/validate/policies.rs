//! `policies:`: checks every policy and compiles them, with the tiers' own limits, into the
//! per-route, per-method, per-tier [`Plan`] tables the hot path looks up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::super::error::ConfigError;
use super::super::plan::{By, Plan, PlanBudget, RoutePlans, TIER_POLICY};
use super::super::schema::{RawConfig, RawLimit, RawPolicy};
use super::super::snapshot::{Route, Tier};
use super::context::Cx;
use super::route_match::{check_methods, parse_methods};
use super::tiers::{limit, limit_headers};
use super::{is_label, unknown_tier};
use crate::limiter::Limit;

/// At most this many policies (each can add a budget to every request it matches).
const MAX_POLICIES: usize = 64;

struct Policy {
    name: Arc<str>,
    by: By,
    routes: Option<Vec<String>>,
    methods: Option<Vec<http::Method>>,
    limits: PolicyLimits,
}

/// Limits as clients see them (named `<policy>.<limit>`).
enum PolicyLimits {
    Fixed(Vec<Limit>),
    PerTier(HashMap<String, Vec<Limit>>),
}

/// Checks `policies:` and builds the plan tables, one [`RoutePlans`] per route in `routes`.
pub(super) fn plans(
    cx: &Cx<'_>,
    raw: &RawConfig,
    routes: &[Route],
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<Vec<RoutePlans>, ConfigError> {
    if raw.policies.len() > MAX_POLICIES {
        return Err(cx.at("policies", format!("at most {MAX_POLICIES} policies")));
    }
    let mut policies = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in raw.policies.iter().enumerate() {
        let policy = policy(cx, i, p, routes, tiers)?;
        if !names.insert(policy.name.clone()) {
            return Err(cx.at(
                &format!("policies[{i}].name"),
                format!("duplicate policy name '{}'", policy.name),
            ));
        }
        policies.push(policy);
    }
    check_tier_limit_names(cx, raw, &policies)?;
    let mut by_index: Vec<&Arc<Tier>> = tiers.values().collect();
    by_index.sort_by_key(|t| t.index);
    Ok(routes
        .iter()
        .map(|r| route_plans(r, &policies, &by_index))
        .collect())
}

fn policy(
    cx: &Cx<'_>,
    i: usize,
    p: &RawPolicy,
    routes: &[Route],
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<Policy, ConfigError> {
    let f = format!("policies[{i}]");
    if !is_label(&p.name) {
        return Err(cx.at(
            &format!("{f}.name"),
            "policy names may use letters, digits, '_', '-' and '.' (at most 64)",
        ));
    }
    if p.name == TIER_POLICY {
        return Err(cx.at(
            &format!("{f}.name"),
            "'tier' is reserved: it is the `policy` label of a tier's own limits",
        ));
    }
    let by = by(cx, &format!("{f}.by"), p.by.as_deref())?;
    if let Some(rs) = &p.r#match.routes {
        if rs.is_empty() {
            return Err(cx.at(
                &format!("{f}.match.routes"),
                "needs at least one route (leave `routes` out to match any)",
            ));
        }
        for (j, name) in rs.iter().enumerate() {
            if !routes.iter().any(|r| r.name.as_ref() == name) {
                let mut known: Vec<&str> = routes.iter().map(|r| r.name.as_ref()).collect();
                known.sort_unstable();
                return Err(cx.at(
                    &format!("{f}.match.routes[{j}]"),
                    format!("unknown route '{name}' (routes: {})", known.join(", ")),
                ));
            }
        }
    }
    if let Some(ms) = &p.r#match.methods {
        check_methods(cx, &format!("{f}.match.methods"), ms)?;
    }
    let limits = match (&p.limits, &p.tiers) {
        (Some(_), Some(_)) => return Err(cx.at(&f, "set either `limits` or `tiers`, not both")),
        (None, None) => return Err(cx.at(&f, "needs `limits` or `tiers`")),
        (Some(ls), None) => {
            PolicyLimits::Fixed(limit_list(cx, &format!("{f}.limits"), &p.name, ls)?)
        }
        (None, Some(per_tier)) => {
            PolicyLimits::PerTier(per_tier_limits(cx, &f, &p.name, per_tier, tiers)?)
        }
    };
    Ok(Policy {
        name: p.name.as_str().into(),
        by,
        routes: p.r#match.routes.clone(),
        methods: parse_methods(&p.r#match.methods),
        limits,
    })
}

fn by(cx: &Cx<'_>, f: &str, by: Option<&str>) -> Result<By, ConfigError> {
    Ok(match by.unwrap_or("identity") {
        "identity" => By::Identity,
        "ip" => By::Ip,
        "global" => By::Global,
        other => match other.strip_prefix("header:") {
            Some(h) => By::Header(
                http::HeaderName::from_bytes(h.trim().as_bytes())
                    .map_err(|_| cx.at(f, format!("'{h}' is not a header name")))?,
            ),
            None => {
                return Err(cx.at(
                    f,
                    format!(
                        "unknown `by` '{other}' (expected identity, ip, global or header:<name>)"
                    ),
                ))
            }
        },
    })
}

fn per_tier_limits(
    cx: &Cx<'_>,
    f: &str,
    policy: &str,
    per_tier: &BTreeMap<String, Vec<RawLimit>>,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<HashMap<String, Vec<Limit>>, ConfigError> {
    if per_tier.is_empty() {
        return Err(cx.at(&format!("{f}.tiers"), "needs at least one tier"));
    }
    let mut out = HashMap::new();
    for (tier, ls) in per_tier {
        let tf = format!("{f}.tiers.{tier}");
        if !tiers.contains_key(tier) {
            return Err(cx.at(&tf, unknown_tier(tier, tiers)));
        }
        out.insert(tier.clone(), limit_list(cx, &tf, policy, ls)?);
    }
    Ok(out)
}

/// A policy's limits, named `<policy>.<name>`, or `<policy>.<index>` when unnamed.
fn limit_list(
    cx: &Cx<'_>,
    f: &str,
    policy: &str,
    ls: &[RawLimit],
) -> Result<Vec<Limit>, ConfigError> {
    if ls.is_empty() {
        return Err(cx.at(f, "needs at least one limit"));
    }
    if ls.len() > 16 {
        return Err(cx.at(f, "at most 16 limits per policy"));
    }
    let mut out: Vec<Limit> = Vec::new();
    for (j, l) in ls.iter().enumerate() {
        let lf = format!("{f}[{j}]");
        let mut lim = limit(cx, &lf, l)?;
        let part = l.name.clone().unwrap_or_else(|| j.to_string());
        lim.name = format!("{policy}.{part}").into();
        if out.iter().any(|o| o.name == lim.name) {
            return Err(cx.at(
                &format!("{lf}.name"),
                format!("duplicate limit name '{part}' in this policy"),
            ));
        }
        out.push(lim);
    }
    Ok(out)
}

/// A tier limit named `<policy>.x` would share a policy's counter.
fn check_tier_limit_names(
    cx: &Cx<'_>,
    raw: &RawConfig,
    policies: &[Policy],
) -> Result<(), ConfigError> {
    for (tier, t) in &raw.tiers {
        for (j, l) in t.limits.iter().enumerate() {
            let Some(name) = &l.name else { continue };
            if let Some(p) = policies
                .iter()
                .find(|p| name.starts_with(&format!("{}.", p.name)))
            {
                return Err(cx.at(
                    &format!("tiers.{tier}.limits[{j}].name"),
                    format!(
                        "'{name}' clashes with policy '{}' (limit names starting with '{}.' are its own)",
                        p.name, p.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn route_plans(route: &Route, policies: &[Policy], tiers: &[&Arc<Tier>]) -> RoutePlans {
    let on_route: Vec<&Policy> = policies
        .iter()
        .filter(|p| {
            p.routes
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| **r == *route.name))
        })
        .collect();
    let mut methods: Vec<http::Method> = Vec::new();
    for m in on_route.iter().filter_map(|p| p.methods.as_ref()).flatten() {
        let takes = route.methods.as_ref().is_none_or(|rm| rm.contains(m));
        if takes && !methods.contains(m) {
            methods.push(m.clone());
        }
    }
    let table = |method: Option<&http::Method>| -> Vec<Arc<Plan>> {
        tiers
            .iter()
            .map(|t| Arc::new(plan(route, method, t, &on_route)))
            .collect()
    };
    RoutePlans {
        other: table(None),
        methods: methods
            .iter()
            .map(|m| (m.clone(), table(Some(m))))
            .collect(),
    }
}

/// The budgets of `tier` on `route` for `method` (`None`: a method no policy names).
fn plan(route: &Route, method: Option<&http::Method>, tier: &Tier, policies: &[&Policy]) -> Plan {
    let mut budgets = vec![PlanBudget {
        policy: TIER_POLICY.into(),
        by: By::Identity,
        limits: tier.limits.clone(),
        names: tier.limits.iter().map(|l| l.name.clone()).collect(),
        headers: tier.limit_headers.clone(),
    }];
    for p in policies {
        let method_matches = match (&p.methods, method) {
            (None, _) => true,
            (Some(ms), Some(m)) => ms.contains(m),
            (Some(_), None) => false,
        };
        let limits = match &p.limits {
            PolicyLimits::Fixed(ls) => Some((ls, false)),
            PolicyLimits::PerTier(per) => per.get(tier.name.as_ref()).map(|ls| (ls, true)),
        };
        let (Some((limits, per_tier)), true) = (limits, method_matches) else {
            continue;
        };
        // A shared budget (ip, header, global) of a per-tier policy is the tier's own.
        let shared = p.by != By::Identity;
        let store_limits = limits
            .iter()
            .map(|l| match per_tier && shared {
                true => Limit {
                    name: format!("{}@{}", l.name, tier.name).into(),
                    ..l.clone()
                },
                false => l.clone(),
            })
            .collect();
        budgets.push(PlanBudget {
            policy: p.name.clone(),
            by: p.by.clone(),
            limits: store_limits,
            names: limits.iter().map(|l| l.name.clone()).collect(),
            headers: limits.iter().map(limit_headers).collect(),
        });
    }
    let method = method.map_or("*", |m| m.as_str());
    Plan {
        scope: format!("{}|{}|{method}", tier.name, route.name).into(),
        budgets,
    }
}
