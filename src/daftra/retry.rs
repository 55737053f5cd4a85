//! Retry policy for Daftra requests: which answers are retried, `Retry-After`, and exponential
//! backoff with full jitter.

use std::time::{Duration, SystemTime};

/// First backoff step; attempt `n` waits a random time up to `BASE * 2^n`, capped.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);

pub use crate::metrics::RetryReason;

/// Parses `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 section 10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Full-jitter exponential backoff: a uniform random delay in `[0, min(cap, BASE * 2^attempt)]`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(20))
        .min(cap);
    ceiling.mul_f64(rand::random::<f64>())
}

/// The delay before the next attempt: the server's `Retry-After` when given (capped), else backoff.
pub fn delay(attempt: u32, retry_after: Option<Duration>, cap: Duration) -> Duration {
    match retry_after {
        Some(d) => d.min(cap),
        None => backoff(attempt, cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(3));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(3)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(3));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let cap = Duration::from_secs(2);
        for attempt in 0..30 {
            assert!(backoff(attempt, cap) <= cap);
        }
        assert!(backoff(0, cap) <= BACKOFF_BASE);
        assert_eq!(delay(3, Some(Duration::from_secs(60)), cap), cap);
    }
}
