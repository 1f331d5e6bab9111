//! Where validated commands for external integrations leave the daemon. The queue transport
//! publishes them to adapters (`transport/commands.rs`); in the embedded mode
//! [`delivery::AdapterDelivery`] hands them to each connector's delivery endpoint
//! ([`webhook`]: signed, through the durable outbox) or command stream ([`stream`]);
//! [`NoTransport`] refuses them with a reason (an engine without a store); [`ChannelSink`]
//! hands them to a bounded channel an embedding program (or a test) reads. The interface is
//! the command stage's ([`crate::commands::relay`]).

pub mod delivery;
pub mod stream;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::telemetry::queue;

pub use crate::commands::relay::{AdapterCommand, CommandSink, NotDeliverable, Recall, RelayError};

/// Which relay an engine gets.
pub enum Relay {
    /// This sink (the queue transport's, a channel).
    To(Arc<dyn CommandSink>),
    /// The embedded delivery ([`delivery::AdapterDelivery`]), built with the engine (on its
    /// store; without one, [`NoTransport`]).
    Embedded,
}

impl<S: CommandSink> From<Arc<S>> for Relay {
    fn from(sink: Arc<S>) -> Relay {
        Relay::To(sink)
    }
}

/// No adapter is reachable: each command is refused with a reason the skill sees.
pub struct NoTransport;

impl CommandSink for NoTransport {
    fn deliver(&self, _command: AdapterCommand) -> Result<(), RelayError> {
        Err(RelayError::NoTransport)
    }
}

/// A bounded channel of adapter commands, observed as the `adapter_commands` queue.
pub struct ChannelSink {
    tx: mpsc::Sender<AdapterCommand>,
}

impl ChannelSink {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<AdapterCommand>) {
        let (tx, rx) = queue::bounded(queue::names::ADAPTER_COMMANDS, capacity);
        (ChannelSink { tx }, rx)
    }
}

impl CommandSink for ChannelSink {
    fn deliver(&self, command: AdapterCommand) -> Result<(), RelayError> {
        self.tx.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                queue::full(queue::names::ADAPTER_COMMANDS);
                RelayError::Full
            }
            mpsc::error::TrySendError::Closed(_) => RelayError::Full,
        })
    }
}
