//! Egress: where validated commands for external integrations leave the daemon. The queue
//! transport publishes them to adapters (`transport/commands.rs`); the embedded default refuses
//! them with a reason ([`NoTransport`]); [`ChannelSink`] hands them to a bounded channel an
//! embedding program (or a test) reads. The interface is the command stage's
//! ([`crate::commands::egress`]).

use tokio::sync::mpsc;

pub use crate::commands::egress::{CommandSink, EgressError, OutboundCommand};

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
