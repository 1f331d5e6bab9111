//! Admission, the first step of routing: an event names a known integration, a running
//! connector of it, and an event the integration declares, or it is refused with a reason,
//! counted and dead-lettered. Also: delivery tickets and the dedupe window.

pub mod dedupe;
pub mod delivery;
pub mod unreachable;

use crate::dead_letter::DeadLetterReason;
use crate::fault::{Blame, Fault};
pub use unreachable::Unreachable;

/// Why an inbound event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its integration or connector is unknown, or the connector is stopped.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("integration {integration} does not declare event {event:?}")]
    UndeclaredEvent { integration: String, event: String },
    #[error("{field}: {reason}")]
    Malformed { field: String, reason: String },
    /// Only from `try_submit`: the in-flight limit is reached; nothing was recorded.
    #[error("the daemon is at its in-flight limit; retry later")]
    Busy,
    /// A flow instance the event reaches holds its maximum of events (this persona sends
    /// faster than the flow answers); nothing was recorded.
    #[error("flow {agent}/{flow} holds its maximum of events for this persona; retry later")]
    FlowInstanceFull { agent: String, flow: String },
}

impl Refusal {
    /// The dead-letter reason, or `None` for `Busy` (nothing was taken in).
    pub fn dead_letter_reason(&self) -> Option<DeadLetterReason> {
        Some(match self {
            Refusal::Unreachable(u) => u.dead_letter_reason(),
            Refusal::UndeclaredEvent { .. } => DeadLetterReason::UndeclaredEvent,
            Refusal::Malformed { .. } => DeadLetterReason::Malformed,
            Refusal::Busy | Refusal::FlowInstanceFull { .. } => return None,
        })
    }

    /// The stable code: metric label and API error code.
    pub fn code(&self) -> &'static str {
        self.dead_letter_reason()
            .map(DeadLetterReason::code)
            .unwrap_or(match self {
                Refusal::FlowInstanceFull { .. } => "flow_instance_full",
                _ => "busy",
            })
    }

    /// The envelope field at fault.
    pub fn field(&self) -> Option<&str> {
        match self {
            Refusal::Unreachable(u) => Some(u.field()),
            Refusal::UndeclaredEvent { .. } => Some("event_idn"),
            Refusal::Malformed { field, .. } => Some(field),
            Refusal::Busy | Refusal::FlowInstanceFull { .. } => None,
        }
    }
}

impl Blame for Refusal {
    fn fault(&self) -> Fault {
        match self {
            Refusal::Busy => Fault::Daemon,
            // One persona sends faster than its flow answers: the caller's to slow down.
            _ => Fault::Caller,
        }
    }

    /// Only a busy daemon takes the same event later. A stopped connector was stopped on
    /// purpose and may stay so: its events are dead-lettered (replayable once it runs again)
    /// rather than cycled through a queue until the queue gives up on them.
    fn retryable(&self) -> bool {
        matches!(self, Refusal::Busy | Refusal::FlowInstanceFull { .. })
    }
}
