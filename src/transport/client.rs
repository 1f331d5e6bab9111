//! A client for integration adapters and queue skill runners written in Rust (and for the
//! `switchboard publish-event` command): publish events, consume the commands of a connector,
//! consume invocations, publish results. Other languages follow `docs` in README.md
//! ("Wire contract").

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::headers;
use super::subjects::{partition_key, Subjects};
use crate::fault::{Blame, Fault};
use crate::wire::envelope::VERSION;
use crate::wire::envelope::{CommandEnvelope, Encoding, EnvelopeError, EventEnvelope};
use crate::wire::invocation::{InvocationBatchWire, ResultBatchWire, ResultWire};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("nats: {0}")]
    Nats(String),
    #[error("decoding: {0}")]
    Decode(#[from] EnvelopeError),
}

impl Blame for ClientError {
    fn fault(&self) -> Fault {
        match self {
            ClientError::Nats(_) => Fault::Peer,
            ClientError::Decode(_) => Fault::Caller,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, ClientError::Nats(_))
    }
}

fn nats(e: impl std::fmt::Display) -> ClientError {
    ClientError::Nats(e.to_string())
}

pub struct Client {
    pub js: jetstream::Context,
    pub subjects: Subjects,
    pub encoding: Encoding,
}

/// A message taken from a stream, decoded; ack it once handled.
pub struct Delivered<T> {
    pub value: T,
    pub message: jetstream::Message,
}

impl<T> Delivered<T> {
    pub async fn ack(&self) -> Result<(), ClientError> {
        self.message.ack().await.map_err(nats)
    }
}

impl Client {
    pub async fn connect(
        url: &str,
        prefix: &str,
        encoding: Encoding,
    ) -> Result<Client, ClientError> {
        let c = async_nats::connect(url).await.map_err(nats)?;
        Ok(Client {
            js: jetstream::new(c),
            subjects: Subjects::new(prefix),
            encoding,
        })
    }

    /// Publishes an event on its keyed subject (the actor's partition key, README "Wire
    /// contract") and waits for the stream's acknowledgement. `msg_id` (for example the
    /// `external_event_id`) lets the stream drop a repeated publish.
    pub async fn publish_event(
        &self,
        e: &EventEnvelope,
        msg_id: Option<&str>,
    ) -> Result<u64, ClientError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, self.encoding.content_type());
        if let Some(id) = msg_id {
            h.insert(headers::MSG_ID, id);
        }
        // Keyed: any daemon's stream takes it, partitioned or not.
        let external_id = e.actor.as_ref().map_or("", |a| a.external_id.as_str());
        let subject = self.subjects.events_keyed(
            &e.account,
            &e.integration_idn,
            &e.connector_idn,
            &partition_key(external_id),
        );
        let ack = self
            .js
            .publish_with_headers(subject, h, Bytes::from(self.encoding.encode(e)))
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        Ok(ack.sequence)
    }

    /// Publishes raw bytes with a content type on an events subject (tests of refusals).
    pub async fn publish_raw(
        &self,
        subject: String,
        content_type: &str,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, content_type);
        self.js
            .publish_with_headers(subject, h, Bytes::from(payload))
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        Ok(())
    }

    async fn pull(
        &self,
        stream_name: &str,
        durable: &str,
        filter: String,
    ) -> Result<consumer::PullConsumer, ClientError> {
        let s: stream::Stream = self.js.get_stream(stream_name).await.map_err(nats)?;
        s.get_or_create_consumer(
            durable,
            consumer::pull::Config {
                durable_name: Some(durable.to_owned()),
                filter_subject: filter,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(nats)
    }

    /// The next message of `consumer`, decoded, within `wait`.
    async fn next<T: for<'de> serde::Deserialize<'de>>(
        consumer: &consumer::PullConsumer,
        wait: Duration,
    ) -> Result<Option<Delivered<T>>, ClientError> {
        let Some(m) = Self::next_raw(consumer, wait).await? else {
            return Ok(None);
        };
        let enc = headers::inbound_encoding(m.headers.as_ref()).unwrap_or(Encoding::Json);
        let value = enc.decode(&m.payload)?;
        Ok(Some(Delivered { value, message: m }))
    }

    /// A durable consumer of the commands of one connector (an adapter's inbox).
    pub async fn commands(
        &self,
        stream_name: &str,
        durable: &str,
        account: &str,
        integration: &str,
        connector: &str,
    ) -> Result<consumer::PullConsumer, ClientError> {
        self.pull(
            stream_name,
            durable,
            self.subjects.commands(account, integration, connector),
        )
        .await
    }

    pub async fn next_command(
        consumer: &consumer::PullConsumer,
        wait: Duration,
    ) -> Result<Option<Delivered<CommandEnvelope>>, ClientError> {
        Self::next(consumer, wait).await
    }

    /// A durable consumer of the invocations of one agent (a queue runner's inbox).
    pub async fn invocations(
        &self,
        stream_name: &str,
        durable: &str,
        account: &str,
        agent: &str,
    ) -> Result<consumer::PullConsumer, ClientError> {
        self.pull(stream_name, durable, self.subjects.invoke(account, agent))
            .await
    }

    /// The next message of invocations (one or more, in order); ack it once all are answered.
    pub async fn next_invocations(
        consumer: &consumer::PullConsumer,
        wait: Duration,
    ) -> Result<Option<Delivered<InvocationBatchWire>>, ClientError> {
        Self::next(consumer, wait).await
    }

    /// A durable consumer of the dead letters of one account.
    pub async fn dead_letters(
        &self,
        stream_name: &str,
        durable: &str,
        account: &str,
    ) -> Result<consumer::PullConsumer, ClientError> {
        self.pull(stream_name, durable, self.subjects.dlq(account))
            .await
    }

    /// The next raw message of `consumer` within `wait` (dead letters keep their bytes).
    pub async fn next_raw(
        consumer: &consumer::PullConsumer,
        wait: Duration,
    ) -> Result<Option<jetstream::Message>, ClientError> {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(nats)?;
        match batch.next().await {
            None => Ok(None),
            Some(m) => Ok(Some(m.map_err(nats)?)),
        }
    }

    /// Publishes a runner's answers in one message (for example those of one message of
    /// invocations); each must name its `invocation_id`. The message id is a hash of the
    /// content, so a retried publish is dropped by the stream while a later answer to the same
    /// invocation (after `pending`) is not.
    pub async fn publish_results(
        &self,
        account: &str,
        results: Vec<ResultWire>,
    ) -> Result<(), ClientError> {
        let payload = self.encoding.encode(&ResultBatchWire {
            v: VERSION,
            results,
        });
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::CONTENT_TYPE, self.encoding.content_type());
        let digest = xxhash_rust::xxh3::xxh3_128(&payload);
        h.insert(headers::MSG_ID, format!("results-{digest:032x}").as_str());
        self.js
            .publish_with_headers(self.subjects.results(account), h, Bytes::from(payload))
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        Ok(())
    }
}
