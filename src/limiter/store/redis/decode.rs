//! What the scripts answer, turned into verdicts and usage, and what a redis-rs error means for
//! the limiter (a timeout, an unavailable store, or a protocol surprise).

use redis::RedisError;

use super::super::StoreError;
use crate::limiter::{limit_count, Budget, LimitOutcome, Usage, Verdict};

pub(super) fn classify(e: &RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::Server(
                    redis::ServerErrorKind::MasterDown | redis::ServerErrorKind::BusyLoading
                )
        )
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

/// Decodes `{n, (remaining, reset_ms) * n}` into the usage of each limit.
pub(super) fn decode_usage(raw: &[i64], budgets: &[Budget<'_>]) -> Result<Vec<Usage>, StoreError> {
    let n = limit_count(budgets);
    if raw.len() != 1 + 2 * n || raw[0] as usize != n {
        return Err(StoreError::Protocol(format!(
            "peek returned {} values for {n} limits",
            raw.len()
        )));
    }
    let limits = budgets.iter().flat_map(|b| b.limits);
    Ok(raw[1..]
        .chunks_exact(2)
        .zip(limits)
        .map(|(c, l)| Usage::new(l, c[0].max(0) as u64, c[1].max(0) as u64))
        .collect())
}

/// Decodes `{allowed_all, n, (allowed, remaining, retry_ms, reset_ms) * n}`.
pub(super) fn decode(raw: &[i64], n: usize) -> Result<Verdict, StoreError> {
    if raw.len() != 2 + 4 * n || raw[1] as usize != n {
        return Err(StoreError::Protocol(format!(
            "script returned {} values for {n} limits",
            raw.len()
        )));
    }
    let outcomes = raw[2..]
        .chunks_exact(4)
        .map(|c| LimitOutcome {
            allowed: c[0] == 1,
            remaining: c[1].max(0) as u64,
            retry_after_ms: c[2].max(0) as u64,
            reset_ms: c[3].max(0) as u64,
        })
        .collect();
    Ok(Verdict {
        allowed: raw[0] == 1,
        outcomes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_two_limit_answer() {
        let v = decode(&[0, 2, 1, 5, 0, 1000, 0, 0, 1500, 60000], 2).unwrap();
        assert!(!v.allowed);
        assert_eq!(v.outcomes[1].retry_after_ms, 1500);
        assert_eq!(v.retry_after_ms(), 1500);
    }

    #[test]
    fn rejects_a_short_answer() {
        assert!(decode(&[1, 2, 1, 5], 2).is_err());
    }
}
