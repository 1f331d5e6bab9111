//! Why the web-chat API refused a request or a socket ([`ChatRefusal`]): each the web
//! client's fault, a 4xx naming the reason and the field (the socket's `connect_error` says
//! the same words), counted in `switchboard_events_rejected_total{reason}`. Refusals of the
//! intake itself (a stopped connector, a missing argument) are admission's, answered as any
//! event's.

use crate::api::error::{ApiError, Kind};
use crate::fault::{Blame, Fault};

/// Why a web-chat request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatRefusal {
    /// A field is missing or not what it must be.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// No connector has this client secret (wrong, rotated, or its connector is gone).
    #[error("unknown client_secret")]
    UnknownSecret,
    /// The `connector_idn` is not the client secret's connector.
    #[error("connector_idn is not the connector of this client_secret")]
    OtherConnector,
    /// The request's origin is not among the connector's `domain` origins.
    #[error("origin {0:?} is not among the connector's domains")]
    Origin(String),
    /// A socket without an `origin` query value or an `Origin` header.
    #[error("no origin: connect with the page's origin")]
    NoOrigin,
    /// The event is one the daemon emits, not a web client.
    #[error("event {0:?} may not be sent by a web client")]
    EventNotAllowed(String),
    /// No actor of this `external_id` on the connector: create-actor first.
    #[error("no actor with this external_id: create it first (create-actor)")]
    UnknownActor,
    /// The connector is not running.
    #[error("the connector is not running")]
    Stopped,
    /// The actor holds `newo_chat.sockets_per_actor` sockets already.
    #[error("too many sockets for this actor")]
    TooManySockets,
    /// Past the per-secret or per-IP rate.
    #[error("too many requests from this {0}: slow down")]
    RateLimited(&'static str),
    /// The daemon runs without a store: the web chat needs one.
    #[error("the web chat needs the daemon's store")]
    NoStore,
}

impl ChatRefusal {
    /// Missing or wrong `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ChatRefusal::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The reason's code: the response's `code`, the metric's `reason` label.
    pub fn code(&self) -> &'static str {
        match self {
            ChatRefusal::Invalid { .. } => "invalid",
            ChatRefusal::UnknownSecret => "unknown_client_secret",
            ChatRefusal::OtherConnector => "connector_mismatch",
            ChatRefusal::Origin(_) | ChatRefusal::NoOrigin => "origin_not_allowed",
            ChatRefusal::EventNotAllowed(_) => "event_not_allowed",
            ChatRefusal::UnknownActor => "unknown_actor",
            ChatRefusal::Stopped => "connector_stopped",
            ChatRefusal::TooManySockets => "too_many_sockets",
            ChatRefusal::RateLimited(_) => "rate_limited",
            ChatRefusal::NoStore => "no_store",
        }
    }

    /// The field (or header) at fault.
    pub fn field(&self) -> Option<String> {
        let f = match self {
            ChatRefusal::Invalid { field, .. } => return Some(field.clone()),
            ChatRefusal::UnknownSecret => Some("client_secret"),
            ChatRefusal::OtherConnector => Some("connector_idn"),
            ChatRefusal::Origin(_) | ChatRefusal::NoOrigin => Some("origin"),
            ChatRefusal::EventNotAllowed(_) => Some("event_idn"),
            ChatRefusal::UnknownActor | ChatRefusal::TooManySockets => Some("external_id"),
            ChatRefusal::Stopped => Some("connector_idn"),
            ChatRefusal::RateLimited(by) => Some(*by),
            ChatRefusal::NoStore => None,
        };
        f.map(str::to_owned)
    }

    fn kind(&self) -> Kind {
        match self {
            ChatRefusal::Invalid { .. } | ChatRefusal::OtherConnector => Kind::Invalid,
            ChatRefusal::UnknownSecret => Kind::Unauthorized,
            ChatRefusal::Origin(_) | ChatRefusal::NoOrigin | ChatRefusal::EventNotAllowed(_) => {
                Kind::Forbidden
            }
            ChatRefusal::UnknownActor => Kind::NotFound,
            ChatRefusal::Stopped | ChatRefusal::TooManySockets => Kind::Conflict,
            ChatRefusal::RateLimited(_) => Kind::TooManyRequests,
            ChatRefusal::NoStore => Kind::Unavailable,
        }
    }
}

impl Blame for ChatRefusal {
    /// The web client's (a daemon without a store is the operator's, not retryable).
    fn fault(&self) -> Fault {
        match self {
            ChatRefusal::NoStore => Fault::Daemon,
            _ => Fault::Caller,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, ChatRefusal::RateLimited(_) | ChatRefusal::Stopped)
    }
}

impl From<ChatRefusal> for ApiError {
    fn from(r: ChatRefusal) -> ApiError {
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
    use actix_web::ResponseError;

    fn check(r: ChatRefusal, status: u16, code: &str, field: Option<&str>) {
        let e = ApiError::from(r.clone());
        assert_eq!(e.status_code().as_u16(), status, "{r:?}");
        assert_eq!(e.code, code, "{r:?}");
        assert_eq!(e.field.as_deref(), field, "{r:?}");
    }

    #[test]
    fn each_refusal_is_a_4xx_naming_its_reason_and_field() {
        check(
            ChatRefusal::invalid("external_id", "missing"),
            400,
            "invalid",
            Some("external_id"),
        );
        check(
            ChatRefusal::UnknownSecret,
            401,
            "unknown_client_secret",
            Some("client_secret"),
        );
        check(
            ChatRefusal::OtherConnector,
            400,
            "connector_mismatch",
            Some("connector_idn"),
        );
        check(
            ChatRefusal::Origin("https://evil.net".into()),
            403,
            "origin_not_allowed",
            Some("origin"),
        );
        check(
            ChatRefusal::EventNotAllowed("result_success".into()),
            403,
            "event_not_allowed",
            Some("event_idn"),
        );
        check(
            ChatRefusal::UnknownActor,
            404,
            "unknown_actor",
            Some("external_id"),
        );
        check(
            ChatRefusal::RateLimited("ip"),
            429,
            "rate_limited",
            Some("ip"),
        );
        check(ChatRefusal::NoStore, 503, "no_store", None);
    }
}
