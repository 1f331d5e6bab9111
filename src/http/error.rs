//! The one place errors become HTTP statuses: every boundary error converts into [`ApiError`],
//! whose kind alone decides the status. Bodies have one shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::admission::Refusal;
use crate::commands::refusal::CommandRefusal;
use crate::connectors::registry::ControlError;
use crate::daemon::{ChangeError, IngestError};
use crate::routing::flow_table::FlowRejected;
use crate::skill_runner::pending::UnknownInvocation;
use crate::store::StoreError;
use crate::wire::{EnvelopeError, FlowDocError};

/// What went wrong, as HTTP sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The caller's input is wrong (400).
    Invalid,
    /// The thing named does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The thing may not be changed by users (403).
    Forbidden,
    /// Too big (413).
    TooLarge,
    /// Not an encoding we read (415).
    UnsupportedMediaType,
    /// Try again later (503).
    Unavailable,
    /// The daemon's own failure (500).
    Internal,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: Kind,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(Kind::Invalid, "invalid", message).field(field)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        })
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let field = e.field().map(str::to_owned);
        let (kind, code) = match &e {
            ControlError::UnknownIntegration(_) => (Kind::NotFound, "unknown_integration"),
            ControlError::NotFound(_) => (Kind::NotFound, "not_found"),
            ControlError::Conflict { .. } => (Kind::Conflict, "already_exists"),
            ControlError::Invalid { .. } => (Kind::Invalid, "invalid"),
            ControlError::InternalConnector(_) => (Kind::Forbidden, "internal_connector"),
            ControlError::StillRunning(_) => (Kind::Conflict, "connector_running"),
        };
        ApiError {
            kind,
            code,
            message: e.to_string(),
            field,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let kind = match &r {
            Refusal::UnknownIntegration(_) | Refusal::UnknownConnector { .. } => Kind::NotFound,
            Refusal::ConnectorStopped { .. } => Kind::Conflict,
            Refusal::UndeclaredEvent { .. } | Refusal::Malformed { .. } => Kind::Invalid,
            Refusal::Busy => Kind::Unavailable,
        };
        ApiError {
            kind,
            code: r.code(),
            message: r.to_string(),
            field: r.field().map(str::to_owned),
        }
    }
}

impl From<CommandRefusal> for ApiError {
    fn from(r: CommandRefusal) -> Self {
        let kind = match &r {
            CommandRefusal::UnknownIntegration(_) | CommandRefusal::UnknownConnector { .. } => {
                Kind::NotFound
            }
            CommandRefusal::ConnectorStopped { .. } => Kind::Conflict,
            CommandRefusal::EgressFull(_) => Kind::Unavailable,
            CommandRefusal::NoTransport(_) | CommandRefusal::NoNative(_) => Kind::Conflict,
            _ => Kind::Invalid,
        };
        ApiError {
            kind,
            code: "command_refused",
            message: r.to_string(),
            field: r.field().map(str::to_owned),
        }
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(e: EnvelopeError) -> Self {
        ApiError::new(Kind::Invalid, "malformed", e.reason).field(e.field)
    }
}

impl From<FlowDocError> for ApiError {
    fn from(e: FlowDocError) -> Self {
        ApiError::new(Kind::Invalid, "invalid_flow", e.reason).field(e.field)
    }
}

impl From<FlowRejected> for ApiError {
    fn from(e: FlowRejected) -> Self {
        ApiError::new(Kind::Invalid, "invalid_flow", e.reason).field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        let kind = if e.retryable() {
            Kind::Unavailable
        } else {
            Kind::Internal
        };
        ApiError::new(kind, "store", e.to_string())
    }
}

impl From<UnknownInvocation> for ApiError {
    fn from(e: UnknownInvocation) -> Self {
        ApiError::new(Kind::NotFound, "unknown_invocation", e.to_string())
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Refused(r) => r.into(),
            IngestError::Store(s) => s.into(),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Control(c) => c.into(),
            ChangeError::Flow(f) => f.into(),
            ChangeError::Store(s) => s.into(),
        }
    }
}
