//! The daemon's one outbox, shared by every sender: each registers its destination kind while
//! the engine is built ([`OutboxSlot::register`]), the engine starts the outbox once on the
//! store after the start gate ([`OutboxSlot::start`]), and senders reach it through
//! [`OutboxSlot::get`] (`None` before it started: they refuse then, saying so). One outbox, so
//! one sequence of row numbers and one replay over the store's rows.

use std::sync::{Arc, Mutex, OnceLock};

use super::{Destination, Destinations, Outbox, OutboxSettings};
use crate::dead_letter::DeadLetterStore;
use crate::store::{Store, StoreError};

/// Where the outbox will be, and the destinations it will start with.
pub struct OutboxSlot {
    /// Taken by [`OutboxSlot::start`].
    pending: Mutex<Option<Destinations>>,
    outbox: OnceLock<Outbox>,
}

impl OutboxSlot {
    pub fn new() -> Arc<OutboxSlot> {
        Arc::new(OutboxSlot {
            pending: Mutex::new(Some(Destinations::new())),
            outbox: OnceLock::new(),
        })
    }

    /// Registers `destination` for `kind` (see [`Destinations::register`]).
    ///
    /// # Panics
    /// After [`OutboxSlot::start`] (a sender registered too late: a bug), or as
    /// [`Destinations::register`] does.
    pub fn register(&self, kind: &str, destination: Arc<dyn Destination>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let destinations = pending
            .take()
            .expect("outbox kinds are registered before the outbox starts");
        *pending = Some(destinations.register(kind, destination));
    }

    /// Starts the outbox with the kinds registered (once; a second call does nothing).
    pub async fn start(
        &self,
        store: Store,
        dead_letters: Arc<dyn DeadLetterStore>,
        settings: OutboxSettings,
    ) -> Result<(), StoreError> {
        let Some(destinations) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        let outbox = Outbox::start(store, dead_letters, destinations, settings).await?;
        let _ = self.outbox.set(outbox);
        Ok(())
    }

    /// The outbox, once started.
    pub fn get(&self) -> Option<&Outbox> {
        self.outbox.get()
    }
}
