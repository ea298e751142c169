//! The rate-limit step of `request_filter`: ask the limiter, then admit, or answer 429/503.

use serde_json::json;

use super::ratelimit_headers::{ceil_secs, header_pairs, headline, Headline};
use super::responses::{Problem, QUOTA_EXCEEDED};
use super::slot::{self, Slot};
use super::RequestCtx;
use crate::config::{Plan, Tier, TIER_POLICY};
use crate::identity::StoreIdentity;
use crate::limiter::{Budget, Outcome, SlotOutcome, Source, Verdict};
use crate::metric_handles::{LimitLabel, MetricHandles};
use crate::metrics::{self, Decision};
use crate::state::Generation;
use std::sync::Arc;

/// The name of a concurrency refusal in `violated-policies` and the metric labels.
const CONCURRENCY: &str = "concurrency";
use pingora::proxy::Session;
use pingora::Result;

/// Returns `Ok(true)` when the response was written (the request stops here).
///
/// The request's [`Plan`] (looked up by route, method and tier) lists its budgets: the tier's
/// own, then each matching policy's. All of them are decided in one limiter call.
pub async fn enforce(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let (Some(generation), Some(identity), Some(route)) =
        (ctx.generation.clone(), ctx.identity.clone(), ctx.route)
    else {
        return Ok(false);
    };
    let snapshot = &generation.snapshot;
    let tier = identity.tier().clone();
    if let Some(max) = tier.concurrency {
        let id = identity.store_identity().as_str();
        if take_slot(session, ctx, &generation, id, &tier, max).await? {
            return Ok(true);
        }
    }
    let req = session.req_header();
    let Some(plan) = snapshot
        .plan(route, &req.method, &tier)
        .filter(|p| p.is_limited())
    else {
        ctx.decision = Some(Decision::Unlimited);
        return Ok(false);
    };
    let cost = ctx.route().map_or(1, |r| r.cost);
    let ids = plan.identities(
        identity.store_identity(),
        ctx.client_ip,
        &req.headers,
        snapshot.ipv6_prefix,
    );
    let (budgets, slots) = budgets_of(plan, &ids, &tier.name);
    let outcome = generation
        .limiter
        .decide(&budgets, cost, &plan.scope, generation.number)
        .await;
    match outcome {
        Outcome::Decided { verdict, source } => {
            if !verdict.allowed {
                generation.top.record(identity.top_label());
            }
            let handles = &generation.metrics;
            decided(
                session,
                ctx,
                (plan, &slots),
                verdict,
                source,
                (&tier, handles),
            )
            .await
        }
        Outcome::FailOpen(_) => {
            ctx.decision = Some(Decision::ErrorAllowed);
            generation
                .metrics
                .decision(&tier, LimitLabel::All, Decision::ErrorAllowed);
            Ok(false)
        }
        Outcome::FailClosed(_) => {
            ctx.decision = Some(Decision::ErrorDenied);
            generation
                .metrics
                .decision(&tier, LimitLabel::All, Decision::ErrorDenied);
            fail_closed(session, ctx).await
        }
    }
}

/// The store's budgets for the identities a plan resolved (an absent one, such as a missing
/// header, has no budget), and `slots[k]`: the plan budget and limit of the verdict's k-th
/// outcome.
fn budgets_of<'a>(
    plan: &'a Plan,
    ids: &'a [Option<StoreIdentity>],
    tier: &'a str,
) -> (Vec<Budget<'a>>, Vec<(usize, usize)>) {
    let mut budgets = Vec::with_capacity(ids.len());
    let mut slots = Vec::with_capacity(plan.budgets.len() * 2);
    for (bi, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            let limits = &plan.budgets[bi].limits;
            budgets.push(Budget::new(id.as_str(), limits).with_overflow(tier));
            slots.extend((0..limits.len()).map(|li| (bi, li)));
        }
    }
    (budgets, slots)
}

/// The 503 of a store that cannot answer while the gateway fails closed (rate limits and
/// concurrency slots alike).
async fn fail_closed(session: &mut Session, ctx: &RequestCtx) -> Result<bool> {
    let mut p = Problem::new(
        503,
        "Service Unavailable",
        "the rate-limit store is unavailable and this gateway fails closed",
    );
    p.headers.push(("Retry-After", 1u64.into()));
    p.request_id = Some(&ctx.request_id);
    p.send(session).await
}

/// Takes a concurrency slot before any rate limit is asked, so a request refused here is
/// charged nothing. Returns whether the response was written (429, or 503 failing closed).
async fn take_slot(
    session: &mut Session,
    ctx: &mut RequestCtx,
    generation: &Arc<Generation>,
    identity: &str,
    tier: &Tier,
    max: u64,
) -> Result<bool> {
    let token = slot::next_token();
    let limiter = &generation.limiter;
    match limiter.acquire_slot(identity, token, max).await {
        SlotOutcome::Held { local } => {
            ctx.slot = Some(Slot::new(limiter.clone(), identity, token, local));
            Ok(false)
        }
        SlotOutcome::FailOpen(_) => Ok(false),
        SlotOutcome::FailClosed(_) => {
            ctx.decision = Some(Decision::ErrorDenied);
            metrics::decision(&tier.name, CONCURRENCY, CONCURRENCY, Decision::ErrorDenied);
            fail_closed(session, ctx).await
        }
        SlotOutcome::Full { .. } if tier.shadow => {
            metrics::decision(
                &tier.name,
                CONCURRENCY,
                CONCURRENCY,
                Decision::ShadowLimited,
            );
            Ok(false)
        }
        SlotOutcome::Full { .. } => {
            ctx.decision = Some(Decision::Limited);
            metrics::decision(&tier.name, CONCURRENCY, CONCURRENCY, Decision::Limited);
            let detail = format!(
                "at most {max} requests in flight at once for tier {}",
                tier.name
            );
            let mut p = Problem::new(429, "Too Many Requests", detail);
            p.kind = Some(QUOTA_EXCEEDED);
            p.extra.push(("violated-policies", json!([CONCURRENCY])));
            // A slot usually comes back as soon as one request ends: retry soon.
            p.extra.push(("retry_after_ms", json!(1000)));
            p.headers.push(("Retry-After", 1u64.into()));
            p.request_id = Some(&ctx.request_id);
            p.send(session).await
        }
    }
}

/// Admits, or answers 429 naming every violated limit (`<policy>.<limit>` for a policy's).
async fn decided(
    session: &mut Session,
    ctx: &mut RequestCtx,
    (plan, slots): (&Plan, &[(usize, usize)]),
    verdict: Verdict,
    source: Source,
    (tier, handles): (&Tier, &MetricHandles),
) -> Result<bool> {
    let name_of = |k: usize| {
        let (bi, li) = slots[k];
        (&plan.budgets[bi], li)
    };
    let pick = headline(&verdict);
    ctx.headline = pick.map(|h| {
        let (b, li) = name_of(h.index);
        Headline {
            name: b.names[li].clone(),
            pre: b.headers[li].clone(),
            outcome: h.outcome,
        }
    });
    let (policy, limit_name) = pick.map_or((TIER_POLICY, "none"), |h| {
        let (b, li) = name_of(h.index);
        (b.policy.as_ref(), b.names[li].as_ref())
    });
    let decision = match (verdict.allowed, source, tier.shadow) {
        (_, Source::Local, _) => Decision::Local,
        (true, _, _) => Decision::Allowed,
        (false, _, true) => Decision::ShadowLimited,
        (false, _, false) => Decision::Limited,
    };
    ctx.decision = Some(decision);
    // The tier's own limits have handles (no label lookup); a policy's budget is looked up.
    match pick.map(|h| name_of(h.index)) {
        None => handles.decision(tier, LimitLabel::None, decision),
        Some((b, li))
            if policy == TIER_POLICY && tier_limit(tier, b.names[li].as_ref()) == Some(li) =>
        {
            handles.decision(tier, LimitLabel::Index(li), decision)
        }
        Some(_) => metrics::decision(&tier.name, policy, limit_name, decision),
    }
    if verdict.allowed || tier.shadow {
        if !verdict.allowed {
            // Shadow mode reports what enforcement would do, without blocking.
            ctx.headline = None;
        }
        return Ok(false);
    }
    let Some(h) = ctx.headline.clone() else {
        return Ok(false);
    };
    let retry_ms = verdict.retry_after_ms();
    let violated: Vec<&str> = verdict
        .outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.allowed)
        .map(|(k, _)| {
            let (b, li) = name_of(k);
            b.names[li].as_ref()
        })
        .collect();
    let detail = match policy {
        TIER_POLICY => format!("limit {limit_name} of tier {} exceeded", tier.name),
        p => format!("limit {limit_name} of policy {p} exceeded"),
    };
    let mut p = Problem::new(429, "Too Many Requests", detail);
    p.kind = Some(QUOTA_EXCEEDED);
    p.extra.push(("violated-policies", json!(violated)));
    p.extra.push(("retry_after_ms", json!(retry_ms)));
    p.headers.push(("Retry-After", ceil_secs(retry_ms).into()));
    p.headers.extend(header_pairs(&h));
    p.request_id = Some(&ctx.request_id);
    p.send(session).await
}

/// The position of the tier limit named `name`.
fn tier_limit(tier: &Tier, name: &str) -> Option<usize> {
    tier.limits.iter().position(|l| *l.name == *name)
}

/// 401 for a caller that could not be identified.
pub async fn unauthorized(
    session: &mut Session,
    ctx: &RequestCtx,
    why: crate::identity::Rejection,
) -> Result<bool> {
    use crate::identity::Rejection::*;
    let detail = match why {
        UnknownKey => "the API key is not recognised",
        MissingKey => "an API key is required",
        MalformedKey => "the API key header is malformed",
        ExpiredKey => "the API key has expired",
        DisabledKey => "the API key is disabled",
    };
    let mut p = Problem::new(401, "Unauthorized", detail);
    p.request_id = Some(&ctx.request_id);
    p.send(session).await
}
