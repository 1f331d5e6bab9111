//! The daemon as the adapter uses it: `POST /v1/events` with a bearer token (`events:write`),
//! the event as a wire envelope ([`switchboard::wire::EventEnvelope`], JSON). 202 and 200
//! (`duplicate`: an `external_event_id` the daemon has seen) both mean taken.

use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde_json::Value;
use switchboard::fault::{Blame, Fault};
use switchboard::outbound::retry::retry_after;
use switchboard::outbound::retryable_status;
use switchboard::wire::EventEnvelope;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No answer: the peer's, retryable.
    #[error("the daemon did not answer: {0}")]
    Unreachable(String),
    /// An answer other than 2xx, with the error's code and field when it gave them.
    #[error("the daemon answered {status} {code} (field {field:?}): {message}")]
    Refused {
        status: StatusCode,
        code: String,
        field: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl DaemonError {
    /// How long the daemon asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DaemonError::Refused { retry_after, .. } => *retry_after,
            DaemonError::Unreachable(_) => None,
        }
    }

    /// The adapter's token is refused (401, 403): nothing passes until the operator fixes it,
    /// so nothing may be skipped meanwhile.
    pub fn is_auth(&self) -> bool {
        matches!(self, DaemonError::Refused { status, .. }
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    }

    /// Whether to send the same event again later rather than give it up: retryable, or
    /// refused for the token.
    pub fn holds(&self) -> bool {
        self.retryable() || self.is_auth()
    }
}

impl Blame for DaemonError {
    fn fault(&self) -> Fault {
        match self {
            DaemonError::Unreachable(_) => Fault::Peer,
            DaemonError::Refused { status, .. } if status.is_client_error() => Fault::Caller,
            DaemonError::Refused { .. } => Fault::Peer,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            DaemonError::Unreachable(_) => true,
            DaemonError::Refused { status, .. } => {
                retryable_status(*status) || *status == StatusCode::REQUEST_TIMEOUT
            }
        }
    }
}

/// How the daemon took an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// 202: durable.
    Accepted,
    /// 200: a repeat of an `external_event_id` it has.
    Duplicate,
}

/// A client of one daemon with one token.
#[derive(Clone)]
pub struct DaemonApi {
    client: Client,
    events: Url,
    /// The bearer token: secret.
    token: String,
}

impl std::fmt::Debug for DaemonApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DaemonApi({}, <token>)", self.events)
    }
}

impl DaemonApi {
    /// `base` is the daemon's address (`http://127.0.0.1:8080`).
    pub fn new(client: Client, base: &Url, token: String) -> DaemonApi {
        let events = base.join("/v1/events").expect("an absolute path joins");
        DaemonApi {
            client,
            events,
            token,
        }
    }

    /// POSTs `event`.
    pub async fn post_event(&self, event: &EventEnvelope) -> Result<Taken, DaemonError> {
        let answer = self
            .client
            .post(self.events.clone())
            .bearer_auth(&self.token)
            .json(event)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| DaemonError::Unreachable(e.without_url().to_string()))?;
        let status = answer.status();
        match status {
            StatusCode::ACCEPTED => return Ok(Taken::Accepted),
            StatusCode::OK => return Ok(Taken::Duplicate),
            _ => {}
        }
        let retry_after = retry_after(answer.headers());
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let error = &body["error"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Err(DaemonError::Refused {
            status,
            code: text(&error["code"]).unwrap_or_default(),
            field: text(&error["field"]),
            message: text(&error["message"]).unwrap_or_default(),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16) -> DaemonError {
        DaemonError::Refused {
            status: StatusCode::from_u16(status).unwrap(),
            code: String::new(),
            field: None,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn an_event_is_held_while_the_daemon_may_take_it_later() {
        let check = |status: u16, holds: bool| {
            assert_eq!(refused(status).holds(), holds, "{status}");
        };
        check(400, false);
        check(404, false);
        check(409, false);
        check(401, true);
        check(403, true);
        check(408, true);
        check(429, true);
        check(503, true);
        assert!(DaemonError::Unreachable(String::new()).holds());
    }
}
