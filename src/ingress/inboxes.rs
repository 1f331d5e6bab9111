//! What ingress hands admitted events to: the inbox of a running connector. This stage owns
//! the interface; the connector directory implements it.

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admission::delivery::Delivery;
use crate::admission::Unreachable;
use crate::domain::{ConnectorKey, SharedEvent};

/// An admitted event for one connector. Travels through the connector's inbox.
pub struct Inbound {
    /// With the persona its target names (the connector may resolve it from a command act).
    pub event: SharedEvent,
    pub delivery: Delivery,
    pub admitted_at: Instant,
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
    ) -> Result<(), Unreachable>;
}
