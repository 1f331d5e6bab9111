//! The dead-letter store: every event or command that could not be routed or sent, with the
//! reason, kept for inspection and replay. Nothing is dropped silently.

pub mod memory;
pub mod native;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{Command, Event, Idn, PersonaId};
use crate::fault::{Blame, Fault};
pub use native::NativeReason;

/// Why something became a dead letter. `code()` is the stable metric label and API code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    UnknownIntegration,
    UnknownConnector,
    ConnectorStopped,
    UndeclaredEvent,
    Malformed,
    UnknownCommandAct,
    NoSkill,
    FlowQueueFull,
    CommandRefused,
    /// A command a native integration carried out got no answer from its peer (a timeout, a
    /// refused connection): the skill was told with `result_error`.
    CommandFailed,
    RunnerFailed,
    Unmatched,
    /// A runner's result for an invocation that never waited for it (given up, or unknown).
    UnknownInvocation,
    /// A message the outbox gave up delivering: refused for good, its retry budget spent, or its
    /// destination gone.
    DeliveryFailed,
    /// A reason a native names itself (`api`'s `webhook_refused`), stored as its code.
    Native(NativeReason),
}

impl DeadLetterReason {
    /// Every reason of the daemon's own (the natives' are registered: [`native::register`]).
    pub const ALL: [DeadLetterReason; 14] = [
        DeadLetterReason::UnknownIntegration,
        DeadLetterReason::UnknownConnector,
        DeadLetterReason::ConnectorStopped,
        DeadLetterReason::UndeclaredEvent,
        DeadLetterReason::Malformed,
        DeadLetterReason::UnknownCommandAct,
        DeadLetterReason::NoSkill,
        DeadLetterReason::FlowQueueFull,
        DeadLetterReason::CommandRefused,
        DeadLetterReason::CommandFailed,
        DeadLetterReason::RunnerFailed,
        DeadLetterReason::Unmatched,
        DeadLetterReason::UnknownInvocation,
        DeadLetterReason::DeliveryFailed,
    ];

    /// The reason of a code: the daemon's, or a registered native's.
    pub fn of_code(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .or_else(|| native::of_code(code).map(DeadLetterReason::Native))
    }

    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::UnknownIntegration => "unknown_integration",
            DeadLetterReason::UnknownConnector => "unknown_connector",
            DeadLetterReason::ConnectorStopped => "connector_stopped",
            DeadLetterReason::UndeclaredEvent => "undeclared_event",
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::UnknownCommandAct => "unknown_command_act",
            DeadLetterReason::NoSkill => "no_skill",
            DeadLetterReason::FlowQueueFull => "flow_queue_full",
            DeadLetterReason::CommandRefused => "command_refused",
            DeadLetterReason::CommandFailed => "command_failed",
            DeadLetterReason::RunnerFailed => "runner_failed",
            DeadLetterReason::Unmatched => "unmatched",
            DeadLetterReason::UnknownInvocation => "unknown_invocation",
            DeadLetterReason::DeliveryFailed => "delivery_failed",
            DeadLetterReason::Native(reason) => reason.code,
        }
    }
}

/// What was dead-lettered.
#[derive(Debug, Clone)]
pub enum DeadLetterPayload {
    Event {
        event: Box<Event>,
        persona: Option<PersonaId>,
    },
    Command {
        command: Box<Command>,
        persona: Option<PersonaId>,
    },
    /// Bytes that did not decode into an envelope.
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// One dead-letter record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: Uuid,
    pub account: Idn,
    pub reason: DeadLetterReason,
    /// Human-readable detail: which field, which connector, what the runner answered.
    pub detail: String,
    pub payload: DeadLetterPayload,
    pub at: DateTime<Utc>,
}

impl DeadLetter {
    pub fn event(
        reason: DeadLetterReason,
        detail: String,
        event: Event,
        persona: Option<PersonaId>,
    ) -> Self {
        DeadLetter {
            id: Uuid::now_v7(),
            account: event.account.clone(),
            reason,
            detail,
            payload: DeadLetterPayload::Event {
                event: Box::new(event),
                persona,
            },
            at: Utc::now(),
        }
    }

    pub fn command(
        reason: DeadLetterReason,
        detail: String,
        command: Command,
        persona: Option<PersonaId>,
    ) -> Self {
        DeadLetter {
            id: Uuid::now_v7(),
            account: command.account.clone(),
            reason,
            detail,
            payload: DeadLetterPayload::Command {
                command: Box::new(command),
                persona,
            },
            at: Utc::now(),
        }
    }

    /// Bytes that could not be decoded at all.
    pub fn raw(account: Idn, detail: String, content_type: String, bytes: Vec<u8>) -> Self {
        Self::raw_for(
            DeadLetterReason::Malformed,
            account,
            detail,
            content_type,
            bytes,
        )
    }

    /// A message kept as it came, for `reason`.
    pub fn raw_for(
        reason: DeadLetterReason,
        account: Idn,
        detail: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> Self {
        DeadLetter {
            id: Uuid::now_v7(),
            account,
            reason,
            detail,
            payload: DeadLetterPayload::Raw {
                content_type,
                bytes,
            },
            at: Utc::now(),
        }
    }
}

/// Why dead letters could not be read: never hidden as "none".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The store did not answer (busy, I/O): a later read may succeed.
    #[error("the dead-letter store is unavailable: {0}")]
    Unavailable(String),
    /// A stored letter does not decode.
    #[error("dead letter {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

impl Blame for ReadError {
    fn fault(&self) -> Fault {
        Fault::Daemon
    }

    fn retryable(&self) -> bool {
        matches!(self, ReadError::Unavailable(_))
    }
}

/// Where dead letters are kept. The engine calls `record` from actors: it must not block for
/// long (a durable implementation hands the write to its own thread).
pub trait DeadLetterStore: Send + Sync + 'static {
    fn record(&self, letter: DeadLetter);
    /// Newest first, at most `limit`.
    fn list(&self, account: &Idn, limit: usize) -> Result<Vec<DeadLetter>, ReadError>;
    fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError>;
    /// Removes a letter (after a successful replay); `None` if there was none.
    fn remove(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError>;
}

/// Records `letter` in `store` and counts it.
pub fn record(store: &dyn DeadLetterStore, letter: DeadLetter) {
    crate::telemetry::handles::dead_letter(letter.reason.code());
    // An operator wants to see these; under overload they come per event, so at most one line
    // per interval says so, with how many were passed over.
    static WARNED: crate::telemetry::throttle::Throttle =
        crate::telemetry::throttle::Throttle::new();
    match WARNED.allow(crate::telemetry::throttle::Throttle::EVERY) {
        Some(suppressed) => tracing::warn!(
            reason = letter.reason.code(),
            detail = %letter.detail,
            id = %letter.id,
            suppressed,
            "dead letter"
        ),
        None => {
            tracing::debug!(reason = letter.reason.code(), detail = %letter.detail, id = %letter.id, "dead letter")
        }
    }
    store.record(letter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_s_reason_reads_back_from_its_code_once_registered() {
        const MINE: NativeReason = NativeReason::new("probe_native", "probe_refused");
        assert_eq!(DeadLetterReason::of_code("probe_refused"), None);
        native::register(&[MINE]);
        native::register(&[MINE]);
        let reason = DeadLetterReason::of_code("probe_refused");
        assert_eq!(reason, Some(DeadLetterReason::Native(MINE)));
        assert_eq!(reason.map(DeadLetterReason::code), Some("probe_refused"));
        for own in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::of_code(own.code()), Some(own));
        }
    }

    #[test]
    #[should_panic(expected = "dead-letter reason \"malformed\" of probe_native is the daemon's")]
    fn a_native_cannot_take_the_daemon_s_code() {
        native::register(&[NativeReason::new("probe_native", "malformed")]);
    }

    #[test]
    #[should_panic(expected = "is already probe_native's")]
    fn two_natives_cannot_share_a_code() {
        native::register(&[NativeReason::new("probe_native", "probe_twice")]);
        native::register(&[NativeReason::new("other_native", "probe_twice")]);
    }
}
