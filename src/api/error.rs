//! The one place errors become HTTP statuses: every boundary error converts into [`ApiError`]
//! (the ground floors' here, later stages' in `http/error.rs` and the natives' own modules),
//! whose kind alone decides the status. The kind follows from what the error says of itself
//! ([`Blame`], see [`kind_of`]): the caller's fault is a 4xx the error's variant refines, the
//! daemon's is 503 when a retry can succeed and 500 otherwise, a peer's is 502. Bodies have one
//! shape: `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::admission::{Refusal, Unreachable};
use crate::auth::AuthError;
use crate::dead_letter::ReadError;
use crate::fault::{Blame, Fault};
use crate::intake::IngestError;
use crate::store::StoreError;
use crate::wire::EnvelopeError;

/// The `Retry-After` of a 429 or 503: a second (the queues drain in well under that).
pub const RETRY_AFTER_SECONDS: &str = "1";

/// What went wrong, as HTTP sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The caller's input is wrong (400).
    Invalid,
    /// The thing named does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// No valid token (401, with `WWW-Authenticate: Bearer`).
    Unauthorized,
    /// The thing may not be changed by users, or the token lacks a scope (403).
    Forbidden,
    /// Too big (413).
    TooLarge,
    /// The body did not arrive in time (408).
    RequestTimeout,
    /// Not an encoding we read (415).
    UnsupportedMediaType,
    /// Try again later (503).
    Unavailable,
    /// Too many requests for one flow instance: try again later (429).
    TooManyRequests,
    /// The daemon's own failure (500).
    Internal,
    /// A peer the daemon depends on failed (502).
    BadGateway,
}

/// The kind of an error that says whose fault it is: `caller` (the 4xx its variant means) when
/// it is the caller's.
pub fn kind_of(e: &impl Blame, caller: Kind) -> Kind {
    match (e.fault(), e.retryable()) {
        (Fault::Caller, _) => caller,
        (Fault::Daemon, true) => Kind::Unavailable,
        (Fault::Daemon, false) => Kind::Internal,
        (Fault::Peer, _) => Kind::BadGateway,
    }
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

/// The body of every error answer (the OpenAPI document's `ErrorBody`).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// A stable, machine-readable code (`invalid`, `not_found`, `missing_scope`, …).
    pub code: &'a str,
    /// What went wrong, for people.
    pub message: &'a str,
    /// The request field at fault (`events[0].skill_idn`), or the scope missing (403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if self.kind == Kind::Unauthorized {
            res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self.kind, Kind::Unavailable | Kind::TooManyRequests) {
            res.insert_header((actix_web::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        res.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        })
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (caller, code) = match &e {
            _ if e.unauthenticated() => (Kind::Unauthorized, "unauthenticated"),
            AuthError::MissingScope(_) => (Kind::Forbidden, "missing_scope"),
            AuthError::OperatorScope(_) => (Kind::Forbidden, "operator_scope"),
            _ => (Kind::Forbidden, "wrong_account"),
        };
        let field = match &e {
            AuthError::MissingScope(s) | AuthError::OperatorScope(s) => Some(s.as_str().to_owned()),
            _ => None,
        };
        ApiError {
            kind: kind_of(&e, caller),
            code,
            message: e.to_string(),
            field,
        }
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(e: EnvelopeError) -> Self {
        ApiError::new(kind_of(&e, Kind::Invalid), "malformed", e.reason).field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ApiError::new(kind_of(&e, Kind::Invalid), "store", e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        tracing::error!(error = %e, "dead-letter store failure");
        ApiError::new(kind_of(&e, Kind::Invalid), "store", e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::new(Kind::Internal, "internal", e.to_string())
    }
}

/// An unknown integration or connector is not found; a stopped connector conflicts (events and
/// commands alike).
pub fn unreachable_kind(u: &Unreachable) -> Kind {
    match u {
        Unreachable::UnknownIntegration(_) | Unreachable::UnknownConnector { .. } => Kind::NotFound,
        Unreachable::ConnectorStopped { .. } => Kind::Conflict,
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let caller = match &r {
            Refusal::Unreachable(u) => unreachable_kind(u),
            Refusal::UndeclaredEvent { .. } | Refusal::Malformed { .. } | Refusal::Busy => {
                Kind::Invalid
            }
            Refusal::FlowInstanceFull { .. } => Kind::TooManyRequests,
        };
        ApiError {
            kind: kind_of(&r, caller),
            code: r.code(),
            message: r.to_string(),
            field: r.field().map(str::to_owned),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Refused(r) => r.into(),
            IngestError::Store(s) => s.into(),
            e @ IngestError::Stream(_) => {
                ApiError::new(kind_of(&e, Kind::Invalid), "stream", e.to_string())
            }
        }
    }
}
