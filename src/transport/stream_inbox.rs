//! The intake's durable step in NATS mode: an event taken in over HTTP or by a native is
//! published to the events stream, on the subject an adapter would use, and the caller hears
//! 202 only once the stream acknowledged it; the events consumer then submits it like any
//! adapter's event. So nothing acknowledged lives only in this process, and any daemon on the
//! stream may take the traffic.

use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream;
use bytes::Bytes;

use super::headers;
use super::inbound::stream_event_id;
use super::subjects::{partition_key, Subjects};
use crate::domain::{Event, Target};
use crate::intake::{Appended, IngestError, StreamInbox};
use crate::wire::envelope::{Encoding, EventEnvelope};

/// Appends events to the events stream.
pub struct StreamIntake {
    pub(super) js: jetstream::Context,
    pub(super) subjects: Subjects,
    pub(super) encoding: Encoding,
    /// A partitioned stream: events go on keyed subjects.
    pub(super) keyed: bool,
}

impl StreamIntake {
    /// The subject `event` is published on: the adapters' (keyed when the stream is
    /// partitioned: the actor's key; an event without an actor, the empty string's).
    fn subject(&self, event: &Event) -> String {
        let (a, i, c) = (
            event.account.as_str(),
            event.integration.as_str(),
            event.connector.as_str(),
        );
        if !self.keyed {
            return self.subjects.events(a, i, c);
        }
        let external_id = match &event.target {
            Target::Actor(actor) => actor.external_id.as_str(),
            Target::Persona(_) | Target::ByCommandAct => "",
        };
        self.subjects
            .events_keyed(a, i, c, &partition_key(external_id))
    }
}

impl StreamInbox for StreamIntake {
    fn append(
        &self,
        event: &Event,
        dedupe_key: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Appended, IngestError>> + Send + 'static>> {
        let subject = self.subject(event);
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, self.encoding.content_type());
        // Without an external id there is nothing to deduplicate by: one publish, no retry
        // (a failure answers 503 and the caller's retry is a new event, as over HTTP).
        if let Some(key) = &dedupe_key {
            h.insert(headers::MSG_ID, key.as_str());
        }
        let mut envelope = EventEnvelope::from_domain(event);
        // The consumer names the event after its stream position, as it does an adapter's.
        envelope.id = None;
        let payload = Bytes::from(self.encoding.encode(&envelope));
        let js = self.js.clone();
        Box::pin(async move {
            let ack = js
                .publish_with_headers(subject, h, payload)
                .await
                .map_err(|e| IngestError::Stream(e.to_string()))?
                .await
                .map_err(|e| IngestError::Stream(e.to_string()))?;
            Ok(Appended {
                id: stream_event_id(&ack.stream, ack.sequence),
                duplicate: ack.duplicate,
            })
        })
    }
}
