//! Egress: where validated commands for external integrations leave the daemon. The queue
//! transport publishes them to adapters; the embedded default hands them to a bounded channel
//! an embedding program (or a test) reads.

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::domain::{Command, PersonaId};

/// A validated command on its way to an adapter.
#[derive(Debug, Clone)]
pub struct OutboundCommand {
    pub command: Command,
    /// The act id the adapter reports results with (`command_act_id`).
    pub act: Uuid,
    pub persona: PersonaId,
}

/// The sink is full: the command is refused with `result_error`, never dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress is full")]
pub struct EgressFull;

/// Where external commands go. Must not block.
pub trait CommandSink: Send + Sync + 'static {
    fn deliver(&self, command: OutboundCommand) -> Result<(), EgressFull>;
}

/// A bounded channel of outbound commands.
pub struct ChannelSink {
    tx: mpsc::Sender<OutboundCommand>,
}

impl ChannelSink {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<OutboundCommand>) {
        let (tx, rx) = mpsc::channel(capacity);
        (ChannelSink { tx }, rx)
    }
}

impl CommandSink for ChannelSink {
    fn deliver(&self, command: OutboundCommand) -> Result<(), EgressFull> {
        self.tx.try_send(command).map_err(|_| EgressFull)
    }
}
