//! `GET /v1/keys/{id}` and `DELETE /v1/keys/{id}/usage`: one key id's counters, read without
//! charging anything, or cleared.
//!
//! The budgets are the ones its requests are counted under: its tier's limits on the id's store
//! identity (policies that count `by: identity` join them there).

use std::net::IpAddr;

use http::Response;
use serde_json::json;

use super::answer;
use crate::config::KeyEntry;
use crate::limiter::{Budget, Limit, StoreError};
use crate::state::Generation;

pub async fn read(generation: &Generation, id: &str) -> Response<Vec<u8>> {
    let Some(entry) = generation.snapshot.key_by_id(id) else {
        return unknown(id);
    };
    let policies = generation.snapshot.identity_policy_limits(&entry.tier);
    let budgets = budgets(&entry, &policies);
    let usage = match generation.limiter.peek(&budgets).await {
        Ok(u) => u,
        Err(e) => return store_down(&e),
    };
    let names = budgets.iter().flat_map(|b| b.limits).map(|l| &l.name);
    let limits: Vec<_> = usage
        .iter()
        .zip(names)
        .map(|(u, name)| {
            json!({
                "name": name.as_ref(), "limit": u.limit, "used": u.used,
                "remaining": u.remaining, "reset_ms": u.reset_ms,
            })
        })
        .collect();
    answer::json(
        200,
        &json!({ "id": entry.id.as_ref(), "tier": entry.tier.name.as_ref(), "limits": limits }),
    )
}

/// Clears the counters; `peer` and whether a token came along go to the log (never the token).
pub async fn clear(
    generation: &Generation,
    id: &str,
    peer: Option<IpAddr>,
    token_presented: bool,
) -> Response<Vec<u8>> {
    let Some(entry) = generation.snapshot.key_by_id(id) else {
        return unknown(id);
    };
    let policies = generation.snapshot.identity_policy_limits(&entry.tier);
    let result = generation.limiter.reset(&budgets(&entry, &policies)).await;
    let who = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
    match result {
        Ok(()) => {
            log::warn!(
                "admin: usage of key id '{}' cleared by {who} (bearer token presented: {token_presented})",
                entry.id
            );
            answer::no_content()
        }
        Err(e) => store_down(&e),
    }
}

/// The tier's own limits and its `by: identity` policy limits (`<policy>.<limit>`), all on the
/// id's store identity.
fn budgets<'a>(entry: &'a KeyEntry, policies: &'a [Limit]) -> Vec<Budget<'a>> {
    let id = entry.store_identity.as_str();
    vec![
        Budget::new(id, &entry.tier.limits),
        Budget::new(id, policies),
    ]
}

fn unknown(id: &str) -> Response<Vec<u8>> {
    // Ids are configuration, not secrets; still, echo only what an id may contain.
    let shown: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    answer::problem(404, "Not Found", &format!("no key with id '{shown}'"))
}

fn store_down(e: &StoreError) -> Response<Vec<u8>> {
    answer::problem(
        503,
        "Service Unavailable",
        &format!("the rate-limit store did not answer ({})", e.kind()),
    )
}
