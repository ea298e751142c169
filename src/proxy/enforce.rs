//! The rate-limit step of `request_filter`: ask the limiter, then admit, or answer 429/503.

use serde_json::json;

use super::ratelimit_headers::{ceil_secs, header_pairs, headline};
use super::responses::{Problem, QUOTA_EXCEEDED};
use super::RequestCtx;
use crate::config::{Caller, Resolved};
use crate::limiter::{Budget, Outcome, Source};
use crate::metrics;
use crate::state::Generation;
use pingora::proxy::Session;
use pingora::Result;

/// Returns `Ok(true)` when the response was written (the request stops here).
pub async fn enforce(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let (Some(generation), Some(identity)) = (ctx.generation.clone(), ctx.identity.clone()) else {
        return Ok(false);
    };
    let tier = identity.tier().clone();
    if tier.limits.is_empty() {
        ctx.decision = Some("unlimited");
        return Ok(false);
    }
    let cost = ctx.route().map_or(1, |r| r.cost);
    let budgets = [Budget::new(
        identity.store_identity().as_str(),
        &tier.limits,
    )];
    let outcome = generation
        .limiter
        .decide(&budgets, cost, &tier.name, generation.number)
        .await;

    match outcome {
        Outcome::Decided { verdict, source } => {
            let h = headline(&verdict);
            ctx.headline = h;
            let limit_name = h.map_or("none", |h| &tier.limits[h.index].name);
            let decision = match (verdict.allowed, source, tier.shadow) {
                (_, Source::Local, _) => "local",
                (true, _, _) => "allowed",
                (false, _, true) => "shadow_limited",
                (false, _, false) => "limited",
            };
            ctx.decision = Some(decision);
            metrics::decision(&tier.name, limit_name, decision);
            if !verdict.allowed {
                generation.top.record(identity.top_label());
            }
            if verdict.allowed || tier.shadow {
                if !verdict.allowed {
                    // Shadow mode reports what enforcement would do, without blocking.
                    ctx.headline = None;
                }
                return Ok(false);
            }
            let Some(h) = h else { return Ok(false) };
            let retry_ms = verdict.retry_after_ms();
            let violated: Vec<&str> = verdict
                .outcomes
                .iter()
                .zip(&tier.limits)
                .filter(|(o, _)| !o.allowed)
                .map(|(_, l)| l.name.as_ref())
                .collect();
            let mut p = Problem::new(
                429,
                "Too Many Requests",
                format!("limit {limit_name} of tier {} exceeded", tier.name),
            );
            p.kind = Some(QUOTA_EXCEEDED);
            p.extra.push(("violated-policies", json!(violated)));
            p.extra.push(("retry_after_ms", json!(retry_ms)));
            p.headers.push(("Retry-After", ceil_secs(retry_ms).into()));
            p.headers.extend(header_pairs(&tier, &h));
            p.request_id = Some(&ctx.request_id);
            p.send(session).await
        }
        Outcome::FailOpen(_) => {
            ctx.decision = Some("error_allowed");
            metrics::decision(&tier.name, "all", "error_allowed");
            Ok(false)
        }
        Outcome::FailClosed(_) => {
            ctx.decision = Some("error_denied");
            metrics::decision(&tier.name, "all", "error_denied");
            let mut p = Problem::new(
                503,
                "Service Unavailable",
                "the rate-limit store is unavailable and this gateway fails closed",
            );
            p.headers.push(("Retry-After", 1u64.into()));
            p.request_id = Some(&ctx.request_id);
            p.send(session).await
        }
    }
}

/// The caller, once the local tables have spoken: a key they do not hold is looked up through
/// `keys_redis` when configured, and otherwise follows `identity.unknown_key`.
pub async fn caller(
    generation: &Generation,
    resolved: Resolved,
    client: Option<std::net::IpAddr>,
) -> std::result::Result<Caller, crate::identity::Rejection> {
    let snapshot = &generation.snapshot;
    match resolved {
        Resolved::Caller(c) => Ok(c),
        Resolved::Rejected(why) => Err(why),
        Resolved::Unknown(digest) => match &generation.remote_keys {
            Some(remote) => match remote
                .resolve(snapshot, &generation.limiter, &digest)
                .await?
            {
                Some(entry) => Ok(Caller::Key(std::sync::Arc::new(entry))),
                None => snapshot.unknown_key(client),
            },
            None => snapshot.unknown_key(client),
        },
    }
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
