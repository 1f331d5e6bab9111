//! The intake's durable step in NATS mode: an event taken in over HTTP or by a native is
//! published to the events stream, on the subject an adapter would use, and the caller hears
//! 202 only once the stream acknowledged it; the events consumer then submits it like any
//! adapter's event. So nothing acknowledged lives only in this process, and any daemon on the
//! stream may take the traffic. An event the daemon made itself (a timer firing) goes through
//! the ordered publisher, signed with the daemon's MAC (`daemon_mac.rs`), its id as the
//! message id, on its persona's partition (`persona_keys.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_nats::jetstream;
use bytes::Bytes;

use super::daemon_mac::DaemonMac;
use super::headers;
use super::inbound::stream_event_id;
use super::persona_keys::PersonaKeys;
use super::publisher::{Outgoing, Publisher};
use super::subjects::{partition_key, Subjects};
use crate::admission::delivery::{Settle, Settlement};
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
    /// The daemon's own events go through it (in order, retried until stored).
    pub(super) publisher: Publisher,
    pub(super) mac: Arc<DaemonMac>,
    /// With partitions: the partition keys of personas, for persona-addressed events.
    pub(super) persona_keys: Option<Arc<PersonaKeys>>,
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

    fn append_own(
        &self,
        event: Event,
        source: Box<dyn Settle>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let source = Once(Some(source));
            let subject = match (&event.target, &self.persona_keys) {
                (Target::Persona(persona), Some(keys)) => {
                    match keys.key(&event.account, *persona).await {
                        Ok(key) => self.subjects.events_keyed(
                            event.account.as_str(),
                            event.integration.as_str(),
                            event.connector.as_str(),
                            &key,
                        ),
                        Err(e) => {
                            static FAILED: crate::telemetry::throttle::Throttle =
                                crate::telemetry::throttle::Throttle::new();
                            if let Some(suppressed) =
                                FAILED.allow(crate::telemetry::throttle::Throttle::EVERY)
                            {
                                tracing::warn!(error = %e, suppressed, "a persona's partition could not be read; its event is given up for now");
                            }
                            return source.settle(Settlement::Redeliver);
                        }
                    }
                }
                _ => self.subject(&event),
            };
            let payload = Bytes::from(self.encoding.encode(&EventEnvelope::from_daemon(&event)));
            // The id names the event on the stream: a copy sent again (a refire after a crash,
            // a publish retried) within the duplicate window is dropped there.
            let mut h = headers::outbound(self.encoding, &event.id.to_string());
            h.insert(headers::DAEMON_MAC, self.mac.sign(&payload).as_str());
            if event.redelivered {
                h.insert(headers::REDELIVERED, "true");
            }
            let m = Outgoing {
                subject,
                headers: h,
                payload,
                on_settled: Some(Box::new(move |stored: Result<(), String>| {
                    source.settle(match stored {
                        Ok(()) => Settlement::Done,
                        Err(_) => Settlement::Redeliver,
                    })
                })),
                retry_payload: None,
                // Like a command: given up only when the daemon stops (then `Once` is dropped).
                until_acknowledged: true,
            };
            // Waits for room: a full publisher slows the firings, never grows memory.
            let _ = self.publisher.publish(m).await;
        })
    }
}

/// Settles its source once: as told, or `Redeliver` when dropped untold (the publisher gone
/// with the daemon).
struct Once(Option<Box<dyn Settle>>);

impl Once {
    fn settle(mut self, s: Settlement) {
        if let Some(source) = self.0.take() {
            source.settle(s);
        }
    }
}

impl Drop for Once {
    fn drop(&mut self) {
        if let Some(source) = self.0.take() {
            source.settle(Settlement::Redeliver);
        }
    }
}
