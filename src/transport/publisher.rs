//! One ordered, bounded JetStream publisher. Messages are published in the order they were
//! queued (so commands to one conversation keep their order); publish acknowledgements are
//! awaited concurrently, and a message whose acknowledgement fails is published again with the
//! same `Nats-Msg-Id` (the stream drops the duplicate) until it is acknowledged or the retries
//! run out — or, for a message that must not fail while the daemon runs (a command: the client
//! would still send a copy it buffered during an outage, so a command reported failed could
//! arrive anyway), until it is acknowledged, however long the outage. Each message says what
//! to do once settled.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::fault::{Blame, Fault};
use crate::telemetry::queue;

/// What happens when a message is settled: `Ok` once the stream stored it, `Err` with the
/// reason once the retries ran out.
pub type OnSettled = Box<dyn FnOnce(Result<(), String>) + Send>;

pub struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub on_settled: Option<OnSettled>,
    /// The payload of a publish sent again, made when it is needed (rarely): the stream drops
    /// it as a duplicate when it holds the first copy's `Nats-Msg-Id`, but a work-queue stream
    /// forgets the ids of consumed messages when its server restarts, and then the consumer
    /// gets this copy too, which may say it is a repeat.
    pub retry_payload: Option<RetryPayload>,
    /// Retried until the stream acknowledges it, for as long as the daemon runs.
    pub until_acknowledged: bool,
}

/// Makes the payload of a publish sent again from the first one.
pub type RetryPayload = fn(&Bytes) -> Bytes;

/// The queue is full: the caller refuses or retries; nothing is dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the publish queue is full")]
pub struct Full;

impl Blame for Full {
    fn fault(&self) -> Fault {
        Fault::Daemon
    }

    fn retryable(&self) -> bool {
        true
    }
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
}

const ATTEMPTS: u32 = 8;
/// The longest pause between two tries of a message retried until acknowledged.
const MAX_PAUSE: Duration = Duration::from_secs(2);

impl Publisher {
    /// Starts the publishing task; `capacity` bounds the queue and the acknowledgements awaited.
    pub fn start(js: jetstream::Context, capacity: usize) -> Publisher {
        let (tx, rx) = queue::bounded(queue::names::NATS_PUBLISHER, capacity);
        tokio::spawn(run(js, rx, capacity));
        Publisher { tx }
    }

    /// Queues without waiting.
    pub fn try_publish(&self, m: Outgoing) -> Result<(), Full> {
        self.offer(m).map_err(|_| Full)
    }

    /// Queues without waiting; gives the message back (boxed: the error path stays small)
    /// when there is no room.
    pub fn offer(&self, m: Outgoing) -> Result<(), Box<Outgoing>> {
        self.tx.try_send(m).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => {
                queue::full(queue::names::NATS_PUBLISHER);
                Box::new(m)
            }
            mpsc::error::TrySendError::Closed(m) => Box::new(m),
        })
    }

    /// Queues, waiting for room.
    pub async fn publish(&self, m: Outgoing) -> Result<(), Full> {
        self.tx.send(m).await.map_err(|_| Full)
    }
}

async fn run(js: jetstream::Context, mut rx: mpsc::Receiver<Outgoing>, capacity: usize) {
    let mut acks = FuturesUnordered::new();
    loop {
        let (waiting, room) = (!acks.is_empty(), acks.len() < capacity);
        tokio::select! {
            biased;
            Some(done) = acks.next(), if waiting => {
                let (m, attempt, result): (Outgoing, u32, Result<(), String>) = done;
                match result {
                    Ok(()) => {
                        if let Some(f) = m.on_settled {
                            f(Ok(()));
                        }
                    }
                    Err(e) if attempt < ATTEMPTS || m.until_acknowledged => {
                        tracing::debug!(subject = %m.subject, attempt, error = %e, "publish not acknowledged; again");
                        let pause = Duration::from_millis(50 * u64::from(attempt.min(ATTEMPTS)));
                        tokio::time::sleep(pause.min(MAX_PAUSE)).await;
                        let mut m = m;
                        if let Some(again) = m.retry_payload.take() {
                            m.payload = again(&m.payload);
                        }
                        let again = send(&js, m, attempt + 1).await;
                        acks.push(again);
                    }
                    Err(e) => {
                        tracing::warn!(subject = %m.subject, error = %e, "publish failed for good");
                        if let Some(f) = m.on_settled {
                            f(Err(e));
                        }
                    }
                }
            }
            m = rx.recv(), if room => {
                let Some(m) = m else { break };
                let sent = send(&js, m, 1).await;
                acks.push(sent);
            }
        }
    }
    while let Some((m, _, result)) = acks.next().await {
        if let Some(f) = m.on_settled {
            f(result);
        }
    }
}

type AckFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Outgoing, u32, Result<(), String>)> + Send>,
>;

/// Sends now (keeping the order) and returns the future of its acknowledgement.
async fn send(js: &jetstream::Context, m: Outgoing, attempt: u32) -> AckFuture {
    let sent = js
        .publish_with_headers(m.subject.clone(), m.headers.clone(), m.payload.clone())
        .await;
    match sent {
        Ok(ack) => Box::pin(async move {
            let r = ack.await.map(|_| ()).map_err(|e| e.to_string());
            (m, attempt, r)
        }),
        Err(e) => {
            let e = e.to_string();
            Box::pin(async move { (m, attempt, Err(e)) })
        }
    }
}
