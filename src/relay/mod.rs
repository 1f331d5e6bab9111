//! Egress: where validated commands for external integrations leave the daemon. The queue
//! transport publishes them to adapters (`transport/commands.rs`); the embedded default refuses
//! them with a reason ([`NoTransport`]); [`ChannelSink`] hands them to a bounded channel an
//! embedding program (or a test) reads. The interface is the command stage's
//! ([`crate::commands::relay`]).

use tokio::sync::mpsc;

use crate::telemetry::queue;

pub use crate::commands::relay::{AdapterCommand, CommandSink, RelayError};

/// The embedded default for external integrations: no adapter is reachable, so each command
/// is refused with a reason the skill sees.
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
