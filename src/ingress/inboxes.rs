//! What ingress hands admitted events to: the inbox of a running connector. This stage owns
//! the interface; the connector directory implements it.

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admission::delivery::Delivery;
use crate::admission::Refusal;
use crate::domain::{ConnectorKey, SharedEvent};

/// An admitted event for one connector. Travels through the connector's inbox.
pub struct Inbound {
    /// With the persona its target names (the connector may resolve it from a command act).
    pub event: SharedEvent,
    pub delivery: Delivery,
    pub admitted_at: Instant,
}

/// Why a connector cannot be reached right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    UnknownIntegration(String),
    UnknownConnector {
        integration: String,
        connector: String,
    },
    Stopped {
        integration: String,
        connector: String,
    },
}

impl From<Reach> for Refusal {
    fn from(reach: Reach) -> Self {
        match reach {
            Reach::UnknownIntegration(i) => Refusal::UnknownIntegration(i),
            Reach::UnknownConnector {
                integration,
                connector,
            } => Refusal::UnknownConnector {
                integration,
                connector,
            },
            Reach::Stopped {
                integration,
                connector,
            } => Refusal::ConnectorStopped {
                integration,
                connector,
            },
        }
    }
}

/// The inboxes of the running connectors.
pub trait Inboxes: Send + Sync + 'static {
    /// Calls `send` with the inbox of the running connector `key` while that connector cannot
    /// stop (a stop waits until `send` returns, then closes the inbox behind what was sent);
    /// says why when it cannot be reached.
    fn with_inbox(
        &self,
        key: &ConnectorKey,
        send: &mut dyn FnMut(&mpsc::Sender<Inbound>),
    ) -> Result<(), Reach>;
}
