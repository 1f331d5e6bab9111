//! Dead letters under the NATS transport: kept in the store as always, and copied to
//! `<prefix>.dlq.<account>` with the reason in headers, so adapters and operators see them on
//! the bus.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::headers::{self, DETAIL, KIND, REASON};
use super::publisher::{Outgoing, Publisher};
use super::subjects::Subjects;
use crate::dead_letter::{DeadLetter, DeadLetterPayload, DeadLetterStore, ReadError};
use crate::domain::Idn;
use crate::telemetry::throttle::Throttle;
use crate::wire::envelope::{CommandEnvelope, Encoding, EventEnvelope};

pub struct PublishingDeadLetters {
    pub inner: Arc<dyn DeadLetterStore>,
    pub publisher: Publisher,
    pub subjects: Subjects,
    pub encoding: Encoding,
}

impl DeadLetterStore for PublishingDeadLetters {
    fn record(&self, letter: DeadLetter) {
        let (kind, content_type, payload) = match &letter.payload {
            DeadLetterPayload::Event { event, .. } => (
                "event",
                self.encoding.content_type().to_owned(),
                self.encoding.encode(&EventEnvelope::from_domain(event)),
            ),
            DeadLetterPayload::Command { command, .. } => (
                "command",
                self.encoding.content_type().to_owned(),
                self.encoding.encode(&CommandEnvelope::from_domain(command)),
            ),
            DeadLetterPayload::Raw {
                content_type,
                bytes,
            } => ("raw", content_type.clone(), bytes.clone()),
        };
        let mut h = headers::outbound(self.encoding, &letter.id.to_string());
        h.insert(headers::CONTENT_TYPE, content_type.as_str());
        h.insert(REASON, letter.reason.code());
        h.insert(DETAIL, headers::one_line(&letter.detail).as_str());
        h.insert(KIND, kind);
        let m = Outgoing {
            subject: self.subjects.dlq(letter.account.as_str()),
            headers: h,
            payload: Bytes::from(payload),
            on_settled: None,
            retry_payload: None,
            until_acknowledged: false,
        };
        if self.publisher.try_publish(m).is_err() {
            static FULL: Throttle = Throttle::new();
            if let Some(suppressed) = FULL.allow(Throttle::EVERY) {
                tracing::warn!(id = %letter.id, suppressed, "publish queue full: the dead letter is kept in the store only");
            }
        }
        self.inner.record(letter);
    }

    fn list(&self, account: &Idn, limit: usize) -> Result<Vec<DeadLetter>, ReadError> {
        self.inner.list(account, limit)
    }

    fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError> {
        self.inner.get(id)
    }

    fn remove(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError> {
        self.inner.remove(id)
    }
}
