//! Invocations leave for queue runners in batches: the invocations waiting for the same
//! `<prefix>.invoke.<account>.<agent>` subject travel in one JetStream message, so the server
//! stores, delivers and deletes one message for many. There is no timer: a batch leaves as soon
//! as fewer than `in_flight` batches are being recorded or wait for their publish
//! acknowledgement. An idle daemon sends each invocation at once, alone. A busy one gathers
//! what queued while it waited.
//!
//! Exactly once: the store records each batch before it is published, and marks it stored once
//! acknowledged ([`crate::store::sent_invocations`]). Recording checks every invocation against
//! the batches already recorded, in the same transaction: an invocation sent before (its event
//! came again, after a crash or a lost acknowledgement) is left out of the new batch. If its
//! earlier batch was stored, or this process is still sending it, nothing more is sent. If that
//! batch was recorded but never acknowledged (the daemon stopped meanwhile), it is published
//! again under the same `Nats-Msg-Id`, and the stream drops it if the first publish was stored
//! after all. Every copy sent again (after a crash, or a publish whose acknowledgement was lost)
//! marks its invocations `redelivered`: a work-queue stream forgets the ids of consumed messages
//! when its server restarts, and then the runner gets both copies, the second one saying so.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashSet;
use metrics::Histogram;
use rustc_hash::FxBuildHasher;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::headers;
use super::publisher::{OnSettled, Outgoing, Publisher};
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::{Handoff, Outcome};
use crate::store::sent_invocations::{EncodeBatch, SentBatch, SentState};
use crate::store::Store;
use crate::telemetry::queue;
use crate::wire::envelope::{Encoding, VERSION};
use crate::wire::invocation::{InvocationBatchWire, InvocationWire};

/// One invocation waiting for its batch.
pub struct Queued {
    pub subject: String,
    pub wire: InvocationWire,
    /// Settles the event's delivery once the batch is stored (or given up).
    pub handoff: Handoff,
}

/// How batches form.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most invocations in one message.
    pub max: usize,
    /// Batches published and not yet acknowledged; more wait (and grow).
    pub in_flight: usize,
    /// Invocations waiting for a batch; beyond it the queue runner waits (backpressure).
    pub capacity: usize,
    /// How long recorded batches are kept: the streams' duplicate window.
    pub keep_ms: i64,
}

/// The handle the queue runner sends invocations to.
#[derive(Clone)]
pub struct InvocationBatches {
    tx: mpsc::Sender<Queued>,
}

/// Keys of the batches this process recorded and has not settled yet.
type Sending = Arc<DashSet<Uuid, FxBuildHasher>>;

impl InvocationBatches {
    pub fn start(
        publisher: Publisher,
        store: Store,
        encoding: Encoding,
        pending: Arc<PendingInvocations>,
        settings: BatchSettings,
        sizes: Histogram,
    ) -> InvocationBatches {
        let (tx, rx) = queue::bounded(queue::names::NATS_INVOCATIONS, settings.capacity);
        let sending: Sending = Arc::new(DashSet::with_hasher(FxBuildHasher));
        let batcher = Batcher {
            sending: sending.clone(),
            publisher: publisher.clone(),
            store: store.clone(),
            encoding,
            pending: pending.clone(),
            max: settings.max.max(1),
            in_flight: Arc::new(Semaphore::new(settings.in_flight.max(1))),
            sizes,
        };
        tokio::spawn(batcher.run(rx));
        let pruning = store.clone();
        let keep_ms = settings.keep_ms.max(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(
                (keep_ms as u64 / 4).max(1),
            ));
            loop {
                tick.tick().await;
                pruning.prune_sent_batches(keep_ms);
            }
        });
        InvocationBatches { tx }
    }

    /// Queues without waiting; gives the invocation back (boxed: it is large) when there is no
    /// room.
    pub fn offer(&self, q: Queued) -> Result<(), Box<Queued>> {
        self.tx.try_send(q).map_err(|e| match e {
            mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => {
                Box::new(q)
            }
        })
    }

    /// Queues, waiting for room; gives the invocation back when the batcher stopped.
    pub async fn send(&self, q: Queued) -> Result<(), Queued> {
        self.tx.send(q).await.map_err(|e| e.0)
    }
}

struct Batcher {
    publisher: Publisher,
    store: Store,
    sending: Sending,
    encoding: Encoding,
    pending: Arc<PendingInvocations>,
    max: usize,
    in_flight: Arc<Semaphore>,
    sizes: Histogram,
}

impl Batcher {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let mut waiting: VecDeque<Queued> = VecDeque::with_capacity(self.max);
        loop {
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                break;
            };
            if waiting.is_empty() {
                match rx.recv().await {
                    Some(q) => waiting.push_back(q),
                    None => break,
                }
            }
            while waiting.len() < self.max {
                match rx.try_recv() {
                    Ok(q) => waiting.push_back(q),
                    Err(_) => break,
                }
            }
            let batch = take_batch(&mut waiting, self.max);
            self.send(batch, permit);
        }
    }

    /// Records one batch, then publishes it, in a task of its own: the permit is released once
    /// the stream acknowledged it (or gave up), and meanwhile the next batch gathers.
    fn send(&self, batch: Vec<Queued>, permit: OwnedSemaphorePermit) {
        self.sizes.record(batch.len() as f64);
        let subject = batch[0].subject.clone();
        let mut ids = Vec::with_capacity(batch.len());
        let mut handoffs = Vec::with_capacity(batch.len());
        let mut invocations = Vec::with_capacity(batch.len());
        for q in batch {
            ids.push(q.wire.invocation_id);
            handoffs.push(q.handoff);
            invocations.push(q.wire);
        }
        let encoding = self.encoding;
        let encode: EncodeBatch = Box::new(move |fresh: &[bool]| {
            encoding.encode(&InvocationBatchWire {
                v: VERSION,
                invocations: invocations
                    .into_iter()
                    .zip(fresh)
                    .filter(|(_, f)| **f)
                    .map(|(w, _)| w)
                    .collect(),
            })
        });
        let (store, publisher, pending, sending) = (
            self.store.clone(),
            self.publisher.clone(),
            self.pending.clone(),
            self.sending.clone(),
        );
        tokio::spawn(async move {
            let done = |key: Uuid| Settle {
                key,
                store: store.clone(),
                pending: pending.clone(),
                sending: sending.clone(),
            };
            let recorded = store
                .record_sent_batch(
                    subject.clone(),
                    encoding.content_type().to_owned(),
                    ids.clone(),
                    encode,
                )
                .await;
            let recorded = match recorded {
                Ok(r) => r,
                Err(e) => {
                    // Unrecorded, a batch could be sent twice: it is not sent.
                    settle(done(Uuid::nil()), ids, handoffs, Some(permit))(Err(format!(
                        "recording the batch failed: {e}"
                    )));
                    return;
                }
            };
            if let Some((key, _)) = &recorded.batch {
                sending.insert(*key);
            }
            let mut fresh = (Vec::new(), Vec::new());
            let mut again: Vec<(SentBatch, Vec<Uuid>, Vec<Handoff>)> = Vec::new();
            for ((id, handoff), earlier) in ids.into_iter().zip(handoffs).zip(recorded.earlier) {
                match earlier {
                    None => {
                        fresh.0.push(id);
                        fresh.1.push(handoff);
                    }
                    // Sent before and stored, or still on its way from this process (or
                    // twice in this batch): the event is handed over now.
                    Some(e)
                        if matches!(e.state, SentState::Stored | SentState::InThisBatch)
                            || sending.contains(&e.key) => {}
                    Some(e) => {
                        let SentState::Unsettled(b) = e.state else {
                            unreachable!("the other states are matched above")
                        };
                        match again.iter_mut().find(|(a, _, _)| a.key == b.key) {
                            Some((_, i, h)) => {
                                i.push(id);
                                h.push(handoff);
                            }
                            None => again.push((b, vec![id], vec![handoff])),
                        }
                    }
                }
            }
            for (b, ids, handoffs) in again {
                tracing::debug!(batch = %b.key, "an unacknowledged batch is sent again");
                sending.insert(b.key);
                let encoding = Encoding::from_content_type(&b.content_type).unwrap_or(encoding);
                // The daemon stopped before the stream acknowledged it: the runner may have it
                // already, so this copy says so.
                let payload = marked_redelivered(encoding, &Bytes::from(b.payload));
                let m = Outgoing {
                    subject: b.subject,
                    headers: headers::outbound(encoding, &b.key.to_string()),
                    payload,
                    on_settled: Some(settle(done(b.key), ids, handoffs, None)),
                    retry_payload: None,
                    until_acknowledged: false,
                };
                if publisher.publish(m).await.is_err() {
                    tracing::error!(batch = %b.key, "publisher stopped");
                }
            }
            let Some((key, payload)) = recorded.batch else {
                return; // the permit goes with this task
            };
            let m = Outgoing {
                subject,
                // The first new invocation's id names the batch: a publish retried after a lost
                // acknowledgement, or sent again after a crash, is dropped as a duplicate.
                headers: headers::outbound(encoding, &key.to_string()),
                payload: Bytes::from(payload),
                on_settled: Some(settle(done(key), fresh.0, fresh.1, Some(permit))),
                retry_payload: Some(match encoding {
                    Encoding::Json => |first| marked_redelivered(Encoding::Json, first),
                    Encoding::MessagePack => {
                        |first| marked_redelivered(Encoding::MessagePack, first)
                    }
                }),
                until_acknowledged: false,
            };
            if publisher.publish(m).await.is_err() {
                tracing::error!(batch = %key, "publisher stopped");
            }
        });
    }
}

/// `payload` (a batch) with every invocation marked `redelivered`: the copy sent when the runner
/// may have the batch already. Unchanged when it does not decode (it was made here).
fn marked_redelivered(encoding: Encoding, payload: &Bytes) -> Bytes {
    match encoding.decode::<InvocationBatchWire>(payload) {
        Ok(mut batch) => {
            for inv in &mut batch.invocations {
                inv.redelivered = true;
            }
            Bytes::from(encoding.encode(&batch))
        }
        Err(_) => payload.clone(),
    }
}

/// Who is told when a batch is settled.
struct Settle {
    key: Uuid,
    store: Store,
    pending: Arc<PendingInvocations>,
    sending: Sending,
}

/// What happens once a batch is settled: stored, it is marked so in the store; failed, every
/// invocation in it fails with the reason. Either way the events are handed over, the batch is
/// no longer being sent and the permit is released.
fn settle(
    done: Settle,
    ids: Vec<Uuid>,
    handoffs: Vec<Handoff>,
    permit: Option<OwnedSemaphorePermit>,
) -> OnSettled {
    Box::new(move |r| {
        match r {
            Ok(()) => done.store.mark_batch_stored(done.key),
            Err(reason) => {
                for id in &ids {
                    let _ = done.pending.answer(
                        *id,
                        Some(Outcome::Failed {
                            reason: format!("publishing the invocation failed: {reason}"),
                        }),
                        Vec::new(),
                    );
                }
            }
        }
        done.sending.remove(&done.key);
        drop(handoffs);
        drop(permit);
    })
}

/// Takes, in order, up to `max` of the waiting invocations that share the first one's subject;
/// the others keep their places.
fn take_batch(waiting: &mut VecDeque<Queued>, max: usize) -> Vec<Queued> {
    let Some(first) = waiting.pop_front() else {
        return Vec::new();
    };
    let mut batch = vec![first];
    let mut i = 0;
    while i < waiting.len() && batch.len() < max {
        if waiting[i].subject == batch[0].subject {
            batch.extend(waiting.remove(i));
        } else {
            i += 1;
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(subject: &str, n: u128) -> Queued {
        let wire: InvocationWire = serde_json::from_value(serde_json::json!({
            "v": 1,
            "invocation_id": Uuid::from_u128(n),
            "skill_idn": "Talk",
            "timeout_ms": 1000,
            "flow_instance": {"account": "default", "agent_idn": "A", "flow_idn": "F", "persona_id": Uuid::from_u128(7)},
            "event": {"v": 1, "account": "default", "integration_idn": "api", "connector_idn": "c", "event_idn": "e", "arguments": []}
        }))
        .unwrap();
        Queued {
            subject: subject.to_owned(),
            wire,
            handoff: Handoff::none(),
        }
    }

    fn ids(batch: &[Queued]) -> Vec<u128> {
        batch
            .iter()
            .map(|q| q.wire.invocation_id.as_u128())
            .collect()
    }

    #[test]
    fn a_batch_holds_the_first_subject_in_order_and_leaves_the_rest_in_place() {
        let mut w: VecDeque<Queued> = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)]
            .into_iter()
            .map(|(s, n)| queued(s, n))
            .collect();
        assert_eq!(ids(&take_batch(&mut w, 10)), vec![1, 3, 5]);
        assert_eq!(ids(w.make_contiguous()), vec![2, 4]);
        assert_eq!(ids(&take_batch(&mut w, 10)), vec![2]);
        assert_eq!(ids(&take_batch(&mut w, 10)), vec![4]);
        assert!(take_batch(&mut w, 10).is_empty());
    }

    #[test]
    fn a_batch_never_exceeds_its_maximum() {
        let mut w: VecDeque<Queued> = (1..=5).map(|n| queued("a", n)).collect();
        assert_eq!(ids(&take_batch(&mut w, 2)), vec![1, 2]);
        assert_eq!(ids(&take_batch(&mut w, 2)), vec![3, 4]);
        assert_eq!(ids(&take_batch(&mut w, 2)), vec![5]);
    }

    #[test]
    fn a_copy_sent_again_marks_every_invocation_redelivered() {
        for encoding in [Encoding::Json, Encoding::MessagePack] {
            let batch = InvocationBatchWire {
                v: 1,
                invocations: vec![queued("a", 1).wire, queued("a", 2).wire],
            };
            assert!(batch.invocations.iter().all(|i| !i.redelivered));
            let first = Bytes::from(encoding.encode(&batch));
            let again: InvocationBatchWire = encoding
                .decode(&marked_redelivered(encoding, &first))
                .unwrap();
            assert_eq!(again.invocations.len(), 2);
            assert!(again.invocations.iter().all(|i| i.redelivered));
            assert_eq!(again.invocations[1].invocation_id, Uuid::from_u128(2));
        }
    }
}
