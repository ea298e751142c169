//! Human durations in the config (`500ms`, `60s`, `5m`, `1h`, `1d`).

use std::time::Duration;

/// Parses a duration with a mandatory unit suffix. Bare numbers are refused because `60` could
/// mean seconds or milliseconds, and guessing wrong silently changes a limit by 1000x.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}' has no unit (use ms, s, m, h or d, e.g. \"60s\")"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("'{s}' is not a duration (expected e.g. \"60s\")"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (number too large)"))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "'{s}' has an unknown unit '{unit}' (use ms, s, m, h or d)"
            ))
        }
    };
    let ms = n
        .checked_mul(ms_per_unit)
        .ok_or_else(|| format!("'{s}' is too long"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in ["60", "s", "", "10x", "-5s", "1.5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }
}
