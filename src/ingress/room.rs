//! Room in the flow instances an event reaches, reserved at admission: the interface admission
//! owns and routing implements (`routing::room::InstanceRoom`), wired at start-up.

use std::any::Any;

use crate::domain::RoutedEvent;

/// A flow instance the event reaches holds its maximum of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoom {
    pub agent: String,
    pub flow: String,
}

/// Reserves a place for an event in every flow instance it reaches now.
pub trait FlowRoom: Send + Sync + 'static {
    /// The reservation (a guard: dropping it gives the places back; the implementation may
    /// keep in it what it found, for its own later use; `None`: nothing to hold), or the flow
    /// that has no room. `force` reserves even past the maximum: for events already
    /// acknowledged (replayed at start).
    fn reserve(
        &self,
        event: &RoutedEvent,
        force: bool,
    ) -> Result<Option<Box<dyn Any + Send + Sync>>, NoRoom>;
}
