//! The durable intake: the one way inbound events enter (HTTP `POST /v1/events`, natives'
//! routes: incoming webhooks, web chat, the sandbox page). [`Intake::ingest`] admits the event
//! (the one check), makes it durable (the store's inbox in the embedded mode), submits it to the
//! engine, and answers accepted, duplicate, or refused with the reason. The daemon implements
//! it; natives' route handlers reach it as app data (`web::Data<Arc<dyn Intake>>`).

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::admission::Refusal;
use crate::domain::Event;
use crate::fault::{Blame, Fault};
use crate::store::StoreError;

/// Why an event was not taken in.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Blame for IngestError {
    fn fault(&self) -> Fault {
        match self {
            IngestError::Refused(r) => r.fault(),
            IngestError::Store(e) => e.fault(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            IngestError::Refused(r) => r.retryable(),
            IngestError::Store(e) => e.retryable(),
        }
    }
}

/// What happened to an ingested event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Durable and handed to the engine.
    Accepted(Uuid),
    /// A repeat of an `external_event_id` inside the dedupe window: acknowledged, not routed.
    Duplicate(Uuid),
}

/// Takes inbound events in, durably.
pub trait Intake: Send + Sync + 'static {
    /// Admits, records and submits `event`; answers once it is durable (or refused).
    fn ingest(
        &self,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Result<Ingested, IngestError>> + '_>>;
}
