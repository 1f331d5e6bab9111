//! The relay interface: where the command stage hands validated commands of external
//! integrations, for their adapters. `relay/` and the queue transport implement it.

use uuid::Uuid;

use super::native::ConnectorChange;
use crate::admission::delivery::Delivery;
use crate::domain::{Command, ConnectorKey, PersonaId};
use crate::fault::{Blame, Fault};

/// A validated command on its way to an adapter.
#[derive(Debug, Clone)]
pub struct AdapterCommand {
    pub command: Command,
    /// The act id the adapter reports results with (`command_act_id`).
    pub act: Uuid,
    pub persona: PersonaId,
    /// The delivery of the event whose invocation sent it: the sink holds it until the
    /// command is durable (stored in the commands stream, committed to the outbox), so the
    /// event is not acknowledged before its answer can no longer be lost.
    pub hold: Option<Delivery>,
}

/// A command of a superseded invocation that was handed to a sink and not reported done: to
/// be withdrawn if it has not left yet, else recalled (the adapter answers `recalled` or
/// `too_late`).
#[derive(Debug, Clone)]
pub struct Recall {
    pub command: Command,
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
    /// The connector's delivery cannot take it now (the outbox is not started, its endpoint
    /// answered Gone, the store failed): the reason says which.
    #[error("{0}")]
    Unavailable(String),
}

/// A connector of an external integration cannot run: `setting` is missing (a 400 naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting:?}: {reason}")]
pub struct NotDeliverable {
    pub setting: &'static str,
    pub reason: String,
}

/// Where validated commands go. Must not block.
pub trait CommandSink: Send + Sync + 'static {
    fn deliver(&self, command: AdapterCommand) -> Result<(), RelayError>;

    /// Settings the daemon writes for a new connector of an external integration (a delivery
    /// secret), shown once when secret. None by default.
    fn connector_created(&self, _connector: &ConnectorKey) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Whether a connector of an external integration can be run: its commands have a way to
    /// its adapter. Yes by default (a transport carries every connector's).
    fn check_run(&self, _connector: &ConnectorKey) -> Result<(), NotDeliverable> {
        Ok(())
    }

    /// The commands of a superseded invocation (handed to this sink, not reported done): what
    /// has not left is withdrawn, the rest recalled on the channel it went by. Must not block.
    /// Nothing by default.
    fn recall(&self, _commands: Vec<Recall>) {}

    /// A connector of an external integration changed. Nothing by default.
    fn connector_changed(&self, _connector: &ConnectorKey, _change: ConnectorChange) {}

    /// The secret setting of adapters' connectors that can be rotated (as
    /// `NativeIntegration::rotatable_secret`). None by default.
    fn rotatable_secret(&self) -> Option<&'static str> {
        None
    }
}

impl Blame for RelayError {
    fn fault(&self) -> Fault {
        Fault::Daemon
    }

    fn retryable(&self) -> bool {
        matches!(self, RelayError::Full | RelayError::Unavailable(_))
    }
}
