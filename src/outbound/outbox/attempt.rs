//! What one delivery attempt came to ([`Attempt`]), and how a message settled ([`Settled`]).
//! [`Attempt::of_sent`] reads an HTTP exchange the way every HTTP destination should: 2xx
//! delivered, 410 gone, 429 and 5xx (and a connection that failed or timed out) retried with the
//! peer's `Retry-After`, anything else refused for good. Reasons name a status or a failure,
//! never a body or a header.

use std::time::Duration;

use crate::fault::Blame;
use crate::outbound::retry::{retry_after, retryable_status};
use crate::outbound::{SendError, Sent};

/// The receiver's answer to a delivered message, for its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The HTTP status, for destinations that speak HTTP.
    pub status: Option<u16>,
    /// The answer's body (as much as the destination read).
    pub body: Vec<u8>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered(Receipt),
    /// Not delivered, may succeed later: tried again after the backoff, or after `retry_after`
    /// when the receiver asked for it, while the retry budget lasts.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Refused for good (a 4xx): not tried again.
    Failed(String),
    /// The destination is gone (HTTP 410): it is disabled and everything queued for it settles.
    Gone(String),
}

impl Attempt {
    /// The metric label of this result.
    pub fn code(&self) -> &'static str {
        match self {
            Attempt::Delivered(_) => "delivered",
            Attempt::Retry { .. } => "retry",
            Attempt::Failed(_) => "failed",
            Attempt::Gone(_) => "gone",
        }
    }

    /// What an HTTP exchange means for a delivery (see the module's documentation).
    pub fn of_sent(sent: Result<Sent, SendError>) -> Attempt {
        match sent {
            Ok(s) if s.status.is_success() => Attempt::Delivered(Receipt {
                status: Some(s.status.as_u16()),
                body: s.body,
            }),
            Ok(s) if s.status == reqwest::StatusCode::GONE => {
                Attempt::Gone("the receiver answered HTTP 410 Gone".into())
            }
            Ok(s) if retryable_status(s.status) => Attempt::Retry {
                reason: format!("HTTP {}", s.status.as_u16()),
                retry_after: retry_after(&s.headers),
            },
            Ok(s) if s.status.is_redirection() => Attempt::Failed(format!(
                "HTTP {} (redirect not followed)",
                s.status.as_u16()
            )),
            Ok(s) => Attempt::Failed(format!("HTTP {}", s.status.as_u16())),
            Err(e) if e.retryable() => Attempt::Retry {
                reason: e.to_string(),
                retry_after: None,
            },
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }
}

/// How a message left the outbox, as its owner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Delivered(Receipt),
    /// Refused for good; dead-lettered.
    Failed {
        reason: String,
    },
    /// Its retry budget ended; dead-lettered with the last reason.
    Exhausted {
        attempts: u32,
        last: String,
    },
    /// Its destination is gone (this message's attempt found it, or it was queued behind one
    /// that did); dead-lettered.
    Gone {
        reason: String,
    },
    /// Withdrawn before it was sent; not dead-lettered.
    Withdrawn,
}

impl Settled {
    pub fn code(&self) -> &'static str {
        match self {
            Settled::Delivered(_) => "delivered",
            Settled::Failed { .. } => "failed",
            Settled::Exhausted { .. } => "exhausted",
            Settled::Gone { .. } => "gone",
            Settled::Withdrawn => "withdrawn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use reqwest::{StatusCode, Url};

    fn sent(status: u16, retry_after: Option<&str>) -> Result<Sent, SendError> {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        Ok(Sent {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: b"secret body".to_vec(),
            truncated: false,
            url: Url::parse("https://hooks.example/x").unwrap(),
            redirects: 0,
            redirect_withheld: false,
            duration: Duration::ZERO,
        })
    }

    fn check(input: Result<Sent, SendError>, want: Attempt) {
        let what = format!("{input:?}");
        let got = Attempt::of_sent(input);
        assert_eq!(got, want, "{what}");
        if let Attempt::Retry { reason, .. } | Attempt::Failed(reason) | Attempt::Gone(reason) =
            &got
        {
            assert!(
                !reason.contains("secret"),
                "a reason shows no body: {reason}"
            );
        }
    }

    #[test]
    fn an_http_exchange_reads_as_delivered_retry_failed_or_gone() {
        let retry = |reason: &str, after: Option<u64>| Attempt::Retry {
            reason: reason.into(),
            retry_after: after.map(Duration::from_secs),
        };
        check(
            sent(204, None),
            Attempt::Delivered(Receipt {
                status: Some(204),
                body: b"secret body".to_vec(),
            }),
        );
        check(sent(503, Some("7")), retry("HTTP 503", Some(7)));
        check(sent(429, None), retry("HTTP 429", None));
        check(sent(501, None), Attempt::Failed("HTTP 501".into()));
        check(sent(400, Some("7")), Attempt::Failed("HTTP 400".into()));
        check(
            sent(302, None),
            Attempt::Failed("HTTP 302 (redirect not followed)".into()),
        );
        check(
            sent(410, None),
            Attempt::Gone("the receiver answered HTTP 410 Gone".into()),
        );
        check(Err(SendError::Connect), retry("connection failed", None));
        check(
            Err(SendError::Timeout(Duration::from_secs(2))),
            retry("no answer within 2000 ms", None),
        );
        check(
            Err(SendError::Redirect("too many".into())),
            Attempt::Failed("redirect not followed: too many".into()),
        );
    }
}
