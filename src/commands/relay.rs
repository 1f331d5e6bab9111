//! The relay interface: where the command stage hands validated commands of external
//! integrations, for their adapters. `relay/` and the queue transport implement it.

use uuid::Uuid;

use crate::domain::{Command, PersonaId};
use crate::fault::{Blame, Fault};

/// A validated command on its way to an adapter.
#[derive(Debug, Clone)]
pub struct AdapterCommand {
    pub command: Command,
    /// The act id the adapter reports results with (`command_act_id`).
    pub act: Uuid,
    pub persona: PersonaId,
}

/// Why a sink did not take a command: it is refused with `result_error`, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("the adapters' queue is full")]
    Full,
    #[error("no transport carries this integration's commands")]
    NoTransport,
}

/// Where validated commands go. Must not block.
pub trait CommandSink: Send + Sync + 'static {
    fn deliver(&self, command: AdapterCommand) -> Result<(), RelayError>;
}

impl Blame for RelayError {
    fn fault(&self) -> Fault {
        Fault::Daemon
    }

    fn retryable(&self) -> bool {
        matches!(self, RelayError::Full)
    }
}
