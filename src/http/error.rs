//! Later stages' errors as [`ApiError`]s: each picks its 4xx for the caller's fault and its code;
//! [`kind_of`] and `api/error.rs` decide the rest (the status of every kind is set there alone).

use crate::api::error::{kind_of, unreachable_kind, ApiError, Kind};
use crate::commands::refusal::CommandRefusal;
use crate::connectors::registry::ControlError;
use crate::daemon::operations::{CommandError, ReplayError};
use crate::daemon::runner_secrets::RotateError;
use crate::daemon::{ChangeError, ControlPlaneError};
use crate::routing::flow_table::FlowRejected;
use crate::skill_runner::pending::UnknownInvocation;
use crate::wire::FlowDocError;

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let field = e.field().map(str::to_owned);
        let (caller, code) = match &e {
            ControlError::UnknownIntegration(_) => (Kind::NotFound, "unknown_integration"),
            ControlError::NotFound(_) => (Kind::NotFound, "not_found"),
            ControlError::Conflict { .. } => (Kind::Conflict, "already_exists"),
            ControlError::Invalid { .. } => (Kind::Invalid, "invalid"),
            ControlError::InternalConnector(_) => (Kind::Forbidden, "internal_connector"),
            ControlError::StillRunning(_) => (Kind::Conflict, "connector_running"),
        };
        ApiError {
            kind: kind_of(&e, caller),
            code,
            message: e.to_string(),
            field,
        }
    }
}

impl From<CommandRefusal> for ApiError {
    fn from(r: CommandRefusal) -> Self {
        let caller = match &r {
            CommandRefusal::Unreachable(u) => unreachable_kind(u),
            CommandRefusal::NoTransport(_) | CommandRefusal::NoNative(_) => Kind::Conflict,
            _ => Kind::Invalid,
        };
        ApiError {
            kind: kind_of(&r, caller),
            code: "command_refused",
            message: r.to_string(),
            field: r.field().map(str::to_owned),
        }
    }
}

impl From<FlowDocError> for ApiError {
    fn from(e: FlowDocError) -> Self {
        ApiError::new(kind_of(&e, Kind::Invalid), "invalid_flow", e.reason).field(e.field)
    }
}

impl From<FlowRejected> for ApiError {
    fn from(e: FlowRejected) -> Self {
        ApiError::new(kind_of(&e, Kind::Invalid), "invalid_flow", e.reason).field(e.field)
    }
}

impl From<UnknownInvocation> for ApiError {
    fn from(e: UnknownInvocation) -> Self {
        ApiError::new(
            kind_of(&e, Kind::NotFound),
            "unknown_invocation",
            e.to_string(),
        )
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Control(c) => c.into(),
            ChangeError::Flow(f) => f.into(),
            ChangeError::Store(s) => s.into(),
            ChangeError::LimitReached(ref l) => {
                let limit = l.limit;
                ApiError::new(kind_of(&e, Kind::Forbidden), "limit_reached", e.to_string())
                    .field(limit)
            }
            ChangeError::ControlPlane(c) => c.into(),
            ChangeError::DefinedByFile { .. } => ApiError::new(
                kind_of(&e, Kind::Conflict),
                "defined_by_file",
                e.to_string(),
            )
            .field("flow_idn"),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Refused(r) => r.into(),
            CommandError::NotWaiting(u) => u.into(),
        }
    }
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::NotFound(_) => {
                ApiError::new(kind_of(&e, Kind::NotFound), "not_found", e.to_string())
            }
            ReplayError::NotReplayable(_) => {
                ApiError::new(kind_of(&e, Kind::Conflict), "not_replayable", e.to_string())
            }
            ReplayError::Read(r) => r.into(),
            ReplayError::Ingest(i) => i.into(),
            ReplayError::Command(c) => c.into(),
            ReplayError::Store(s) => s.into(),
        }
    }
}

impl From<RotateError> for ApiError {
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::NoFlow(_) => {
                ApiError::new(kind_of(&e, Kind::NotFound), "not_found", e.to_string())
            }
            RotateError::NotWebhook(_) => ApiError::new(
                kind_of(&e, Kind::Conflict),
                "not_a_webhook_runner",
                e.to_string(),
            )
            .field("runner.kind"),
            RotateError::Store(s) => s.into(),
            RotateError::ControlPlane(c) => c.into(),
        }
    }
}

impl From<ControlPlaneError> for ApiError {
    fn from(e: ControlPlaneError) -> Self {
        let field = match &e {
            ControlPlaneError::Conflict { key } => Some(key.clone()),
            _ => None,
        };
        let code = match &e {
            ControlPlaneError::Conflict { .. } => "changed_elsewhere",
            _ => "control_plane",
        };
        let error = ApiError::new(kind_of(&e, Kind::Conflict), code, e.to_string());
        match field {
            Some(f) => error.field(f),
            None => error,
        }
    }
}
