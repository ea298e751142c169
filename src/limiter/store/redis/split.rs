//! Redis Cluster requests whose budgets live in different hash slots (a `global`, `ip:` or
//! `h:` budget beside the caller's own): one script call per slot, and a refund when they
//! disagree.
//!
//! Within a slot the script is all-or-nothing, as everywhere. Across slots the calls run
//! concurrently, each asked (now = -1) to report the Redis time it recorded at. When every slot
//! admits, that is the answer. When any refuses, every slot that admitted is given back exactly
//! what it recorded (`scripts/redis/refund.lua`), so a refused request is charged by none of its
//! budgets. The refund runs in a task of its own, so neither the request's timeout nor a client
//! that goes away cancels it.
//!
//! The one window of weakness: between a slot's admission and its refund (one round trip, well
//! under a millisecond on a LAN), other requests see those units as taken and may be refused
//! for them; and a gateway that dies in that instant leaves them charged until the window
//! passes. Both err towards refusing, never towards admitting more than the limits.

use std::time::{Duration, Instant};

use super::cluster::ClusterConn;
use crate::limiter::store::KeyBuilder;
use crate::limiter::{Budget, LimitOutcome, Verdict};
use crate::metrics;

/// How long a refund may keep retrying (redirections, TRYAGAIN) after it starts.
const REFUND_DEADLINE: Duration = Duration::from_secs(2);

/// The refund script, self-contained (`scripts/redis/refund.lua`).
pub const REFUND_LUA: &str = include_str!("../../../../scripts/redis/refund.lua");

/// Redis Cluster's slot of a key whose hash tag is `{identity}`: CRC16 (XMODEM) mod 16384.
pub fn slot_of(identity: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in identity.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Budget indices grouped by slot, in order of first appearance.
pub fn group_by_slot(budgets: &[Budget<'_>]) -> Vec<Vec<usize>> {
    let mut slots: Vec<u16> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, b) in budgets.iter().enumerate() {
        if b.limits.is_empty() {
            continue;
        }
        let s = slot_of(b.identity);
        match slots.iter().position(|&x| x == s) {
            Some(g) => groups[g].push(i),
            None => {
                slots.push(s);
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// The script's arguments for `budgets`: now, cost, then (algorithm, limit, window) per limit.
pub fn script_args(budgets: &[Budget<'_>], now_us: i64, cost: u64) -> Vec<i64> {
    let mut args = Vec::with_capacity(2 + 3 * crate::limiter::limit_count(budgets));
    args.extend([now_us, cost as i64]);
    for l in budgets.iter().flat_map(|b| b.limits) {
        args.extend([
            i64::from(l.algorithm.code()),
            l.requests as i64,
            l.window_ms as i64,
        ]);
    }
    args
}

/// One group's answer: its verdict and the Redis time it recorded at.
struct GroupAnswer {
    verdict: Verdict,
    at_us: i64,
}

/// Decides `budgets` spread over several slots. See the module docs.
pub async fn check_split(
    conn: &std::sync::Arc<ClusterConn>,
    keys: &KeyBuilder,
    groups: Vec<Vec<usize>>,
    budgets: &[Budget<'_>],
    cost: u64,
    fixed_now_us: Option<u64>,
    deadline: Instant,
) -> Result<Verdict, redis::RedisError> {
    let sha = super::ratelimit_sha();
    // -1: Redis TIME, reported back for the refund. A fixed clock (tests) is its own report.
    let now_arg = fixed_now_us.map_or(-1, |t| t as i64);
    let per_group: Vec<Vec<Budget<'_>>> = groups
        .iter()
        .map(|g| g.iter().map(|&i| budgets[i]).collect())
        .collect();
    let calls = per_group.iter().map(|bs| {
        let set = keys.keys(bs);
        let args = script_args(bs, now_arg, cost);
        let n = crate::limiter::limit_count(bs);
        async move {
            let keys: Vec<&str> = set.iter().collect();
            let raw = conn
                .eval(sha, super::RATELIMIT_LUA, &keys, &args, deadline)
                .await?;
            match now_arg {
                -1 => decode_with_time(&raw, n),
                at_us => Ok(GroupAnswer {
                    verdict: super::decode(&raw, n).map_err(|e| protocol(&e.to_string()))?,
                    at_us,
                }),
            }
        }
    });
    let answers = futures::future::join_all(calls).await;
    // A failed group may or may not have recorded; the others did if they admitted. Refund
    // what is known to be charged before reporting the failure.
    let allowed = answers
        .iter()
        .all(|a| a.as_ref().is_ok_and(|g| g.verdict.allowed));
    if !allowed {
        for (bs, answer) in per_group.iter().zip(&answers) {
            if let Ok(g) = answer {
                if g.verdict.allowed {
                    spawn_refund(conn, keys, bs, g.at_us, cost);
                }
            }
        }
    }
    let mut slot_outcomes: Vec<Option<Vec<LimitOutcome>>> = vec![None; budgets.len()];
    for (g, answer) in groups.iter().zip(answers) {
        let answer = answer?;
        let mut outcomes = answer.verdict.outcomes.into_iter();
        for &bi in g {
            slot_outcomes[bi] = Some(outcomes.by_ref().take(budgets[bi].limits.len()).collect());
        }
    }
    let outcomes = slot_outcomes.into_iter().flatten().flatten().collect();
    Ok(Verdict { allowed, outcomes })
}

fn decode_with_time(raw: &[i64], n: usize) -> Result<GroupAnswer, redis::RedisError> {
    let (at, body) = raw.split_last().ok_or_else(|| protocol("empty answer"))?;
    let verdict = super::decode(body, n).map_err(|e| protocol(&e.to_string()))?;
    Ok(GroupAnswer {
        verdict,
        at_us: *at,
    })
}

fn protocol(msg: &str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "tollgate", msg.to_string()))
}

/// Gives back what one admitted group recorded, in a task the request cannot cancel.
fn spawn_refund(
    conn: &std::sync::Arc<ClusterConn>,
    keys: &KeyBuilder,
    budgets: &[Budget<'_>],
    at_us: i64,
    cost: u64,
) {
    let set = keys.keys(budgets);
    let owned: Vec<String> = set.iter().map(str::to_string).collect();
    let args = script_args(budgets, at_us, cost);
    let conn = conn.clone();
    metrics::store_refund();
    tokio::spawn(async move {
        let keys: Vec<&str> = owned.iter().map(String::as_str).collect();
        let sha = super::refund_sha();
        // Not the request's budget: a refund may follow redirections for as long as a late
        // answer could come.
        let deadline = Instant::now() + REFUND_DEADLINE;
        if let Err(e) = conn.eval(sha, REFUND_LUA, &keys, &args, deadline).await {
            metrics::store_error("refund");
            log::warn!("rate-limit store: refund across hash slots failed ({e}); those units stay charged until their window passes");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{Algorithm, Limit};

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(slot_of("123456789"), 12739);
        assert_eq!(slot_of("global"), 10408);
    }

    #[test]
    fn budgets_group_by_slot_in_order() {
        let l = [Limit {
            name: "x".into(),
            requests: 1,
            window_ms: 1000,
            algorithm: Algorithm::FixedWindow,
        }];
        let b = [
            Budget::new("k:1", &l),
            Budget::new("global", &l),
            Budget::new("k:1", &l),
            Budget::new("global", &[]),
        ];
        assert_eq!(group_by_slot(&b), vec![vec![0, 2], vec![1]]);
    }
}
