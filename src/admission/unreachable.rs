//! Why a connector cannot be reached: the part the refusals of events ([`super::Refusal`]) and
//! of commands (`commands::CommandRefusal`) share, and what the connector directory answers
//! when asked for a running connector's inbox.

use crate::dead_letter::DeadLetterReason;

/// The connector named cannot be reached now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
    #[error("unknown connector {integration}/{connector}")]
    UnknownConnector {
        integration: String,
        connector: String,
    },
    #[error("connector {integration}/{connector} is stopped")]
    ConnectorStopped {
        integration: String,
        connector: String,
    },
}

impl Unreachable {
    /// The dead-letter reason of an event refused for it (its code is the metric label).
    pub fn dead_letter_reason(&self) -> DeadLetterReason {
        match self {
            Unreachable::UnknownIntegration(_) => DeadLetterReason::UnknownIntegration,
            Unreachable::UnknownConnector { .. } => DeadLetterReason::UnknownConnector,
            Unreachable::ConnectorStopped { .. } => DeadLetterReason::ConnectorStopped,
        }
    }

    /// The envelope field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Unreachable::UnknownIntegration(_) => "integration_idn",
            Unreachable::UnknownConnector { .. } | Unreachable::ConnectorStopped { .. } => {
                "connector_idn"
            }
        }
    }
}
