//! When to try an outbound request again: capped exponential backoff with full jitter, and the
//! `Retry-After` a peer sends (delay-seconds or an HTTP date), clamped to the backoff's cap.
//! Shared by every caller that retries (webhook runners, outgoing webhooks, `send_request`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Capped exponential backoff: `initial`, doubling up to `max`, without a limit of steps.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The steps before jitter: `initial`, `2 * initial`, …, `max`, `max`, ….
    pub fn steps(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// The pause before the next attempt: what the peer asked for (`Retry-After`), clamped to
    /// the cap, else `step` with full jitter.
    pub fn delay(&self, retry_after: Option<Duration>, step: Duration) -> Duration {
        match retry_after {
            Some(asked) => asked.min(self.max),
            None => full_jitter(step),
        }
    }
}

/// Full jitter: a delay drawn uniformly from `[0, d]`. (backon's own jitter adds to the delay,
/// `[d, 2d)`, which keeps the retries of a fleet in step.)
pub fn full_jitter(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (how long until then); `None` when it
/// reads as neither.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    Some(Duration::from_millis(ms as u64))
}

/// The `Retry-After` of a response's headers, read.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Whether a response with `status` may succeed when sent again: 429 and 5xx (except 501,
/// which will not change).
pub fn retryable_status(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != reqwest::StatusCode::NOT_IMPLEMENTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_cap_and_jitter_stays_below() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ms: Vec<u128> = b.steps().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        for d in b.steps().take(6) {
            for _ in 0..50 {
                assert!(full_jitter(d) <= d);
            }
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date_and_clamped_to_the_cap() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let in_a_minute = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        let d = parse_retry_after(&in_a_minute).unwrap();
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(60),
            "{d:?}"
        );
        let past = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc2822();
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let step = Duration::from_secs(1);
        assert_eq!(
            b.delay(Some(Duration::from_secs(7)), step),
            Duration::from_secs(7)
        );
        assert_eq!(b.delay(Some(Duration::from_secs(3600)), step), b.max);
        assert!(b.delay(None, step) <= step);
    }

    #[test]
    fn only_statuses_that_may_change_are_retried() {
        use reqwest::StatusCode as S;
        for s in [
            S::TOO_MANY_REQUESTS,
            S::INTERNAL_SERVER_ERROR,
            S::BAD_GATEWAY,
            S::SERVICE_UNAVAILABLE,
            S::GATEWAY_TIMEOUT,
        ] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [
            S::OK,
            S::BAD_REQUEST,
            S::UNAUTHORIZED,
            S::NOT_FOUND,
            S::GONE,
            S::NOT_IMPLEMENTED,
            S::FOUND,
        ] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
