//! What a webhook runner's HTTP answer means ([`judge`]): a decoded result, pending, worth
//! another attempt, or a failure. A failure's reason ends up in dead letters that API callers
//! read: it says the status and a short reason of ours, never text of the runner's body or
//! of the network error (those go to the debug log).

use std::time::Duration;

use reqwest::StatusCode;

use super::MAX_ANSWER_BYTES;
use crate::wire::envelope::Limits;
use crate::wire::invocation::{ResultWire, RunnerAnswer};

/// What one attempt came to.
#[derive(Debug)]
pub(super) enum Verdict {
    /// A decoded answer: an outcome, or pending with commands.
    Answer(RunnerAnswer),
    /// Accepted; the answer comes later.
    Pending,
    /// Worth another attempt; what the runner answered, and how long it asked to wait
    /// (`Retry-After`).
    Retry(String, Option<Duration>),
    /// The runner is gone for good (HTTP 410): it is disabled.
    Gone,
    /// Not worth another attempt; the reason.
    Fail(String),
}

/// What an answer with `status`, `Retry-After` header `retry_after` and `body` (cut after the
/// cap when `truncated`) means. 2xx is an answer; 3xx a failure (redirects are not followed);
/// 429 and 5xx are worth another attempt; 410 disables the runner; other 4xx fail.
pub(super) fn judge(
    status: StatusCode,
    retry_after: Option<&str>,
    body: &[u8],
    truncated: bool,
) -> Verdict {
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
                .map_err(|e| match e.classify() {
                    serde_json::error::Category::Data => "not a result document".to_owned(),
                    _ => "not JSON".to_owned(),
                })
                .and_then(|w| {
                    w.into_domain(Limits::default())
                        .map_err(|e| format!("field {} refused", sanitized_field(&e.field)))
                })
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
    let what = describe_answer(status);
    if status == StatusCode::GONE {
        Verdict::Gone
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Verdict::Retry(
            what,
            retry_after.and_then(crate::outbound::parse_retry_after),
        )
    } else {
        Verdict::Fail(format!("{what} (not retried)"))
    }
}

/// `HTTP 500 Internal Server Error`: the status alone.
pub(super) fn describe_answer(status: StatusCode) -> String {
    format!("HTTP {status}")
}

/// A field path of the wire (`commands[0].arguments`) as it may be shown: the characters of
/// field paths only, at most 64 of them.
fn sanitized_field(field: &str) -> String {
    field
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
        .take(64)
        .collect()
}
