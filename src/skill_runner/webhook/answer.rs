//! What a webhook runner's HTTP answer means ([`judge`]): a decoded result, pending, worth
//! another attempt, or a failure, with a reason that never carries more than
//! [`REASON_BODY_BYTES`] of the runner's body.

use std::time::Duration;

use reqwest::StatusCode;

use super::{MAX_ANSWER_BYTES, REASON_BODY_BYTES};
use crate::wire::envelope::Limits;
use crate::wire::invocation::{ResultWire, RunnerAnswer};

/// What one attempt came to.
#[derive(Debug)]
pub(super) enum Verdict {
    /// A decoded answer: an outcome, or pending with commands.
    Answer(RunnerAnswer),
    /// Accepted; the answer comes later.
    Pending,
    /// Worth another attempt; what the runner answered.
    Retry(String),
    /// Not worth another attempt; the reason.
    Fail(String),
}

/// What an answer with `status` and `body` (cut after the cap when `truncated`) means.
pub(super) fn judge(status: StatusCode, body: &[u8], truncated: bool) -> Verdict {
    if status.is_success() {
        let accepted = status == StatusCode::ACCEPTED;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Verdict::Pending;
        }
        let decoded = if truncated {
            Err(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            ))
        } else {
            serde_json::from_slice::<ResultWire>(body)
                .map_err(|e| e.to_string())
                .and_then(|w| w.into_domain(Limits::default()).map_err(|e| e.to_string()))
        };
        return match decoded {
            Ok(answer) => Verdict::Answer(answer),
            // 202 says "accepted, answer later"; a body it carries is informational.
            Err(_) if accepted => Verdict::Pending,
            Err(e) => Verdict::Fail(format!(
                "the webhook runner answered HTTP {status} with an invalid result: {e}"
            )),
        };
    }
    let what = describe_answer(status, body);
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Verdict::Retry(what)
    } else {
        Verdict::Fail(format!("{what} (not retried)"))
    }
}

pub(super) fn describe_answer(status: StatusCode, body: &[u8]) -> String {
    let body = &body[..body.len().min(REASON_BODY_BYTES)];
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status} (empty body)")
    } else {
        format!("HTTP {status}: {text}")
    }
}

pub(super) fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    let mut text = if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
