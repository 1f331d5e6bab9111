//! What the connector stage hands its events to once it has resolved their persona and
//! session: routing. This stage owns the interface; `routing::Dispatcher` implements it.

use tokio::time::Instant;

use crate::admission::delivery::Delivery;
use crate::domain::{ScopeKey, SharedEvent};

/// One event of a connector's batch, ready to route.
pub struct Routable {
    pub event: SharedEvent,
    /// Routed on the account's `system/system` scope (session events) instead of the
    /// connector's own.
    pub system: bool,
    pub delivery: Delivery,
    pub admitted_at: Instant,
}

/// Routes a connector's batch to the flows.
pub trait Routes: Send + Sync + 'static {
    /// Routes `batch` in order, draining it: each event against `scope`, or `system_scope` when
    /// it says so. Pushes onto `matched`, per event, how many flows received it.
    fn route(
        &self,
        scope: &ScopeKey,
        system_scope: &ScopeKey,
        batch: &mut Vec<Routable>,
        matched: &mut Vec<usize>,
    );
}
