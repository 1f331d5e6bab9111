//! The durable intake. Embedded mode: admitted, recorded in the store's inbox (deduped by
//! `external_event_id` in the same transaction), submitted; a 202 only once committed. The row
//! leaves when the delivery settles; rows left at start are replayed, marked redelivered.
//! NATS mode: checked, appended to the events stream (deduped by the stream's message id);
//! a 202 only once the stream stored it; the events consumer admits and submits it.

use super::*;

/// Whether ingestion drops a repeat of an `external_event_id` seen within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    Check,
    /// A deliberate redelivery (a dead letter replayed).
    Skip,
}

impl Daemon {
    /// How far the events consumer `consumer` handed messages on in an earlier run.
    pub async fn handed_mark(&self, consumer: String) -> Result<u64, StoreError> {
        let store = self.store.clone();
        super::start::blocking(move || store.handed_mark(&consumer)).await
    }

    /// Raises `consumer`'s hand-over mark to `seq`; answers once committed.
    pub async fn raise_handed_mark(&self, consumer: String, seq: u64) -> Result<(), StoreError> {
        self.store.raise_handed_mark(consumer, seq).await
    }

    /// Takes an event in: admission, then durable in the inbox, then to the engine. When this
    /// answers `Accepted`, a crash loses nothing: the inbox replays it at the next start.
    pub async fn ingest(&self, event: Event) -> Result<Ingested, IngestError> {
        self.ingest_with(event, Dedupe::Check).await
    }

    /// Takes an event in as [`Daemon::ingest`] does; a replay (`Dedupe::Skip`) is a deliberate
    /// redelivery, routed again even while its `external_event_id` is in the dedupe window.
    pub(crate) async fn ingest_with(
        &self,
        event: Event,
        dedupe: Dedupe,
    ) -> Result<Ingested, IngestError> {
        if self.is_draining() {
            return Err(Refusal::Busy.into());
        }
        if let Some(stream) = &self.stream_inbox {
            let event = self.engine.ingress().precheck(event)?;
            let key = event
                .external_event_id
                .as_ref()
                .filter(|_| dedupe == Dedupe::Check)
                .map(|x| dedupe_key(&event, x));
            let appended = stream.append(&event, key).await?;
            if appended.duplicate {
                metrics::counter!(crate::telemetry::metrics::EVENTS_DEDUPLICATED_TOTAL)
                    .increment(1);
                return Ok(Ingested::Duplicate(appended.id));
            }
            return Ok(Ingested::Accepted(appended.id));
        }
        let admitted = self.engine.ingress().admit(event)?;
        // Taken before anything is acknowledged: at the in-flight limit the caller hears 503
        // at once instead of waiting.
        let permit = self.engine.ingress().try_permit()?;
        let event = admitted.event();
        let id = event.id;
        let checked = event
            .external_event_id
            .as_ref()
            .filter(|_| dedupe == Dedupe::Check);
        let dedupe_key = checked.map(|x| dedupe_key(event, x));
        let envelope = Encoding::MessagePack.encode(&EventEnvelope::from_domain(event));
        let window = self.config.engine.dedupe_window_ms as i64;
        match self
            .store
            .inbox_put(id, dedupe_key, envelope, window)
            .await?
        {
            Written::Duplicate => {
                metrics::counter!(crate::telemetry::metrics::EVENTS_DEDUPLICATED_TOTAL)
                    .increment(1);
                return Ok(Ingested::Duplicate(id));
            }
            Written::Done => {}
        }
        let store = self.store.clone();
        self.engine
            .ingress()
            .submit_with_permit(admitted, permit, Some(leaves_inbox(store, id)))
            .await?;
        Ok(Ingested::Accepted(id))
    }

    /// Submits an event that is already in the inbox; it leaves the inbox once settled.
    pub(crate) async fn hand_to_engine(&self, event: Event) -> Result<(), Refusal> {
        let id = event.id;
        self.engine
            .ingress()
            .submit(event, Some(leaves_inbox(self.store.clone(), id)))
            .await
    }
}

/// What names a repeat: `account/integration/connector/external_event_id`.
fn dedupe_key(event: &Event, external_id: &str) -> String {
    format!(
        "{}/{}/{}/{external_id}",
        event.account, event.integration, event.connector
    )
}

/// The settlement of an event in the inbox: it leaves the inbox once done.
pub(super) fn leaves_inbox(store: Store, id: Uuid) -> Box<dyn crate::admission::delivery::Settle> {
    Box::new(move |s: Settlement| {
        if s == Settlement::Done {
            store.inbox_done(id);
        }
    })
}

impl crate::intake::Intake for Daemon {
    fn ingest(
        &self,
        event: Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ingested, IngestError>> + '_>>
    {
        Box::pin(Daemon::ingest(self, event))
    }
}
