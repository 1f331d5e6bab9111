//! The durable intake: the one way inbound events enter (HTTP `POST /v1/events`, natives'
//! routes: incoming webhooks, web chat, the sandbox page). [`Intake::ingest`] admits the event
//! (the one check), makes it durable (the store's inbox in the embedded mode; with NATS, the
//! events stream, through a [`StreamInbox`]), submits it to the engine (with NATS, the stream's
//! consumer does), and answers accepted, duplicate, or refused with the reason. The daemon
//! implements it; natives' route handlers reach it as app data (`web::Data<Arc<dyn Intake>>`).
//! Events the daemon makes itself and keeps a durable record of (timer firings: the timer's
//! row) go, with NATS, to the events stream through [`StreamInbox::append_own`]; in the
//! embedded mode their record is enough and they go straight to routing.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::admission::delivery::Settle;
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
    /// The events stream did not store the event (NATS unreachable, the acknowledgement late).
    #[error("the events stream did not store the event: {0}")]
    Stream(String),
}

impl Blame for IngestError {
    fn fault(&self) -> Fault {
        match self {
            IngestError::Refused(r) => r.fault(),
            IngestError::Store(e) => e.fault(),
            IngestError::Stream(_) => Fault::Daemon,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            IngestError::Refused(r) => r.retryable(),
            IngestError::Store(e) => e.retryable(),
            IngestError::Stream(_) => true,
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

/// What the events stream said of an appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's id: the one the stream's consumer gives it (stable across redeliveries).
    pub id: Uuid,
    /// The stream already held a message with the same id (a repeat within its window).
    pub duplicate: bool,
}

/// The events stream as the intake's durable step (NATS mode): an event appended here is
/// stored before the caller hears 202, and the stream's consumer submits it, so any daemon on
/// the stream may take it. The transport implements it; the daemon receives it when wired.
pub trait StreamInbox: Send + Sync + 'static {
    /// Appends `event` (deduplicated by `dedupe_key` within the stream's window when given);
    /// answers once the stream stored it.
    fn append(
        &self,
        event: &Event,
        dedupe_key: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Appended, IngestError>> + Send + 'static>>;

    /// Appends an event the daemon made itself (a timer firing), which may address a persona:
    /// signed as the daemon's, so the stream's consumer takes its persona and keeps its id;
    /// deduplicated by that id within the stream's window; with partitions, on the subject of
    /// its persona's actor. Appended in the order of the calls (each awaited before the next);
    /// `source` settles `Done` once the stream stored the event, `Redeliver` if it was given up.
    fn append_own(
        &self,
        event: Event,
        source: Box<dyn Settle>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}
