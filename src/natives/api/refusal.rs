//! Why an incoming webhook was refused before it reached the intake ([`WebhookRefusal`]): each
//! the sender's fault, a 4xx naming the reason and the field, counted in
//! `switchboard_events_rejected_total{reason}` and, once the connector is known, dead-lettered
//! (`webhook_refused`, or `malformed` for a body that does not read). Refusals of the intake
//! itself (a stopped connector, a missing argument) are admission's, answered as any event's.

use crate::api::error::{ApiError, Kind};
use crate::dead_letter::NativeReason;
use crate::fault::{Blame, Fault};
use crate::outbound::signing::VerifyError;

use super::mapping::BadBody;

/// The dead-letter reason of a refused incoming webhook (its signature, token, event
/// allow-list or actor): the body as it came.
pub const WEBHOOK_REFUSED: NativeReason = NativeReason::new(super::IDN, "webhook_refused");

/// Why an incoming webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    /// No running or stopped `api` connector has this URL (its token is wrong, or it is gone):
    /// nothing more is said, nothing dead-lettered (a guess fills no store).
    #[error("no incoming webhook at this URL")]
    UnknownWebhook,
    /// The Standard Webhooks headers are missing, the timestamp is out of tolerance, or no
    /// signature matched.
    #[error("{0}")]
    Signature(VerifyError),
    /// `verify_signature=false`: the bearer token is missing or not the connector's.
    #[error("the Authorization header must carry the connector's token (its signing_secret)")]
    Token,
    /// The connector's `incoming_events` does not list the event.
    #[error("event {0:?} is not in the connector's incoming_events")]
    NotAllowed(String),
    #[error("{}: {}", .0.field, .0.reason)]
    Body(BadBody),
    /// No actor where `incoming_actor` says.
    #[error("no actor: {0} is missing or empty")]
    NoActor(String),
    /// `incoming_actor` is not `body:<field>` or `header:<name>`.
    #[error("the connector's incoming_actor setting must be body:<field> or header:<name>")]
    BadActorSetting,
}

impl WebhookRefusal {
    /// The reason's code: the response's `code`, the metric's `reason` label.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookRefusal::UnknownWebhook => "unknown_webhook",
            WebhookRefusal::Signature(VerifyError::TooOld(_) | VerifyError::TooNew(_)) => {
                "stale_timestamp"
            }
            WebhookRefusal::Signature(VerifyError::NoMatch) => "invalid_signature",
            WebhookRefusal::Signature(_) => "missing_signature",
            WebhookRefusal::Token => "invalid_token",
            WebhookRefusal::NotAllowed(_) => "event_not_allowed",
            WebhookRefusal::Body(_) => "malformed",
            WebhookRefusal::NoActor(_) => "missing_actor",
            WebhookRefusal::BadActorSetting => "bad_actor_setting",
        }
    }

    /// The field or header at fault.
    pub fn field(&self) -> Option<String> {
        match self {
            WebhookRefusal::UnknownWebhook => None,
            WebhookRefusal::Signature(e) => Some(e.header().unwrap_or("body").to_owned()),
            WebhookRefusal::Token => Some("authorization".into()),
            WebhookRefusal::NotAllowed(_) => Some("type".into()),
            WebhookRefusal::Body(b) => Some(b.field.to_owned()),
            WebhookRefusal::NoActor(f) => Some(f.clone()),
            WebhookRefusal::BadActorSetting => Some("incoming_actor".into()),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            WebhookRefusal::UnknownWebhook => Kind::NotFound,
            WebhookRefusal::Signature(_) | WebhookRefusal::Token => Kind::Unauthorized,
            WebhookRefusal::NotAllowed(_) => Kind::Forbidden,
            WebhookRefusal::BadActorSetting => Kind::Conflict,
            WebhookRefusal::Body(_) | WebhookRefusal::NoActor(_) => Kind::Invalid,
        }
    }
}

impl Blame for WebhookRefusal {
    /// The sender's (a connector's bad `incoming_actor` is its owner's, the caller's too).
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

impl From<WebhookRefusal> for ApiError {
    fn from(r: WebhookRefusal) -> ApiError {
        let e = ApiError::new(r.kind(), r.code(), r.to_string());
        match r.field() {
            Some(f) => e.field(f),
            None => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(r: WebhookRefusal, status: u16, code: &str, field: Option<&str>) {
        let e = ApiError::from(r.clone());
        use actix_web::ResponseError;
        assert_eq!(e.status_code().as_u16(), status, "{r:?}");
        assert_eq!(e.code, code, "{r:?}");
        assert_eq!(e.field.as_deref(), field, "{r:?}");
    }

    #[test]
    fn each_refusal_is_a_4xx_naming_its_reason() {
        let old = VerifyError::TooOld(Duration::from_secs(300));
        check(WebhookRefusal::UnknownWebhook, 404, "unknown_webhook", None);
        check(
            WebhookRefusal::Signature(old),
            401,
            "stale_timestamp",
            Some("webhook-timestamp"),
        );
        check(
            WebhookRefusal::Signature(VerifyError::NoMatch),
            401,
            "invalid_signature",
            Some("webhook-signature"),
        );
        check(
            WebhookRefusal::Signature(VerifyError::MissingHeader("webhook-id")),
            401,
            "missing_signature",
            Some("webhook-id"),
        );
        check(
            WebhookRefusal::Token,
            401,
            "invalid_token",
            Some("authorization"),
        );
        check(
            WebhookRefusal::NotAllowed("x".into()),
            403,
            "event_not_allowed",
            Some("type"),
        );
        check(
            WebhookRefusal::NoActor("data.user_id".into()),
            400,
            "missing_actor",
            Some("data.user_id"),
        );
    }
}
