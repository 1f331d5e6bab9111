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

/// Why a sink did not take a command: it is refused with `result_error`, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("egress is full")]
    Full,
    #[error("no transport carries this integration's commands")]
    NoTransport,
    #[error("this native integration is not built yet")]
    NotBuilt,
}

/// Where validated commands go. Must not block.
pub trait CommandSink: Send + Sync + 'static {
    fn deliver(&self, command: OutboundCommand) -> Result<(), EgressError>;
}

/// Sends each command to the sink of its integration: the daemon's native handlers, else the
/// transport towards external adapters.
pub struct EgressRouter {
    native: rustc_hash::FxHashMap<String, std::sync::Arc<dyn CommandSink>>,
    external: std::sync::Arc<dyn CommandSink>,
}

impl EgressRouter {
    pub fn new(external: std::sync::Arc<dyn CommandSink>) -> Self {
        EgressRouter {
            native: Default::default(),
            external,
        }
    }

    pub fn with_native(mut self, integration: &str, sink: std::sync::Arc<dyn CommandSink>) -> Self {
        self.native.insert(integration.to_owned(), sink);
        self
    }
}

impl CommandSink for EgressRouter {
    fn deliver(&self, command: OutboundCommand) -> Result<(), EgressError> {
        match self.native.get(command.command.integration.as_str()) {
            Some(sink) => sink.deliver(command),
            None => self.external.deliver(command),
        }
    }
}

/// Native integrations whose handler is not built yet: commands are refused with that reason.
pub struct NotBuilt;

impl CommandSink for NotBuilt {
    fn deliver(&self, _command: OutboundCommand) -> Result<(), EgressError> {
        Err(EgressError::NotBuilt)
    }
}

/// The embedded default for external integrations: no adapter is reachable, so each command
/// is refused with a reason the skill sees.
pub struct NoTransport;

impl CommandSink for NoTransport {
    fn deliver(&self, _command: OutboundCommand) -> Result<(), EgressError> {
        Err(EgressError::NoTransport)
    }
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
    fn deliver(&self, command: OutboundCommand) -> Result<(), EgressError> {
        self.tx.try_send(command).map_err(|_| EgressError::Full)
    }
}
