//! Consuming the results stream: batches of queue runners' outcomes and commands, each matched
//! to the waiting invocation by `invocation_id`. A message that does not decode is dead-lettered
//! and terminated. An answer whose invocation does not wait (yet) waits for it up to
//! `result_wait` (after a restart, the invocations of the last run are replayed with the same
//! ids), then is dead-lettered alone as `unknown_invocation` (unless the message came before:
//! then it answered an invocation that settled before a restart, and counts as a `repeat`).
//! Each message is a [`Delivery`]
//! its applied answers hold, following their events' deliveries: it is acknowledged once every
//! event it answers settled (the invocation ended, its commands durable) or its answer was
//! given up, and delivered again when one of those events is (with progress acknowledgements
//! meanwhile); consuming goes on in the meantime.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::headers;
use crate::admission::delivery::{Delivery, Settlement};
use crate::daemon::Daemon;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason};
use crate::skill_runner::pending::Answer;
use crate::telemetry::handles;
use crate::wire::envelope::Limits;
use crate::wire::invocation::{ResultBatchWire, ResultWire};

/// How the results consumer pulls and how long an answer waits for its invocation.
pub struct Settings {
    pub pull_batch: usize,
    pub limits: Limits,
    pub wait: Duration,
    /// How often a held message is said to be in progress: well inside the consumer's
    /// `ack_wait` (a third of it), or JetStream delivers a copy while it is held.
    pub progress: Duration,
    /// With partitions: the daemons share the results consumer, and an answer goes on to the
    /// daemon whose invocation waits for it (see [`republish`]).
    pub shared: Option<async_nats::jetstream::Context>,
    /// The events' acknowledging task: a message is settled behind the events it answers.
    pub acks: super::inbound::Acks,
}

/// How soon a message none of whose answers waits here is delivered again (to any daemon).
const ELSEWHERE_RETRY: Duration = Duration::from_millis(50);

/// With partitions, the results consumer is shared: a message may reach a daemon whose
/// invocations it does not answer. While the message is younger than `result_wait`, the
/// answers whose invocation does not wait here go on: the whole message back to the stream
/// (a negative acknowledgement with [`ELSEWHERE_RETRY`], any daemon may take it next) when
/// none waits here, else those answers republished as a message of their own (its id their
/// digest, so a second try is dropped) before the others are applied. Older, an answer is
/// given up as on one daemon. A daemon that took a partition over replays its events with the
/// same invocation ids, so the answers find it.
///
/// Publishes `answers` on `subject` as one message, until the stream stored it.
async fn republish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    encoding: crate::wire::envelope::Encoding,
    answers: Vec<ResultWire>,
) -> Result<(), async_nats::Error> {
    let payload = encoding.encode(&ResultBatchWire {
        v: crate::wire::envelope::VERSION,
        results: answers,
    });
    let digest = xxhash_rust::xxh3::xxh3_128(&payload);
    let h = headers::outbound(encoding, &format!("results-{digest:032x}"));
    js.publish_with_headers(subject.to_owned(), h, payload.into())
        .await?
        .await?;
    Ok(())
}

pub fn spawn(daemon: Arc<Daemon>, consumer: PullConsumer, settings: Settings) {
    let Settings {
        pull_batch,
        limits,
        wait,
        progress,
        shared,
        acks,
    } = settings;
    tokio::spawn(async move {
        while !daemon.is_draining() {
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(pull_batch)
                .messages()
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "results consumer: pulling failed; again soon");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(next) = messages.next().await {
                let Ok(m) = next else { break };
                let info = m.info().ok().map(|i| (i.delivered, i.published));
                // On one daemon a message that came before answered invocations that settled
                // before a restart; shared, messages come again on their way to their daemon.
                let repeat = shared.is_none() && info.is_some_and(|(n, _)| n > 1);
                let young = info.is_some_and(|(_, published)| {
                    let published_ms = (published.unix_timestamp_nanos() / 1_000_000) as i64;
                    let age_ms = chrono::Utc::now().timestamp_millis() - published_ms;
                    age_ms < wait.as_millis() as i64
                });
                let (msg, acker) = m.split();
                let encoding = headers::inbound_encoding(msg.headers.as_ref());
                let batch = encoding
                    .ok_or_else(|| {
                        "Content-Type: neither application/json nor application/msgpack".to_owned()
                    })
                    .and_then(|enc| {
                        enc.decode::<ResultBatchWire>(&msg.payload)
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|b| b.check().map(|()| b).map_err(|e| e.to_string()));
                let content_type = encoding.map(|e| e.content_type()).unwrap_or("");
                // The dead letter keeps the message as it came; `detail` names what failed.
                let letter = {
                    let (daemon, subject) = (daemon.clone(), msg.subject.to_string());
                    let (content_type, payload) = (content_type.to_owned(), msg.payload.clone());
                    move |reason: DeadLetterReason, detail: String| {
                        dead_letter::record(
                            &**daemon.engine().dead_letters(),
                            DeadLetter::raw_for(
                                reason,
                                daemon.home_account(),
                                format!("{detail} (subject {subject})"),
                                content_type.clone(),
                                payload.to_vec(),
                            ),
                        );
                    }
                };
                let refuse = |detail: String| letter(DeadLetterReason::Malformed, detail);
                match batch {
                    Ok(batch) => {
                        let mut answers: Vec<(usize, ResultWire)> =
                            batch.results.into_iter().enumerate().collect();
                        if let (Some(js), true, Some(enc)) = (&shared, young, encoding) {
                            let (here, elsewhere): (Vec<_>, Vec<_>) =
                                answers.into_iter().partition(|(_, r)| {
                                    r.invocation_id
                                        .is_none_or(|id| daemon.pending().is_waiting(id))
                                });
                            if !elsewhere.is_empty() {
                                let gone_on = !here.is_empty()
                                    && republish(
                                        js,
                                        msg.subject.as_str(),
                                        enc,
                                        elsewhere.into_iter().map(|(_, r)| r).collect(),
                                    )
                                    .await
                                    .is_ok();
                                if !gone_on {
                                    handles::queue_result("elsewhere");
                                    let _ =
                                        acker.ack_with(AckKind::Nak(Some(ELSEWHERE_RETRY))).await;
                                    continue;
                                }
                            }
                            answers = here;
                        }
                        // Each answer is applied on its own: the others still count when one
                        // does not fit, and its dead letter names the answer.
                        let (settled, delivery) = message_delivery();
                        let mut waiting = Vec::new();
                        for (i, r) in answers {
                            match apply(&daemon, r, limits, wait, delivery.clone()) {
                                Ok(applied) => waiting.push((i, applied)),
                                Err(detail) => refuse(format!("results[{i}].{detail}")),
                            }
                        }
                        drop(delivery);
                        tokio::spawn(settle(
                            waiting,
                            (settled, acks.clone()),
                            acker,
                            letter,
                            wait,
                            progress,
                            repeat,
                        ));
                    }
                    Err(detail) => {
                        refuse(detail);
                        let _ = acker.ack_with(AckKind::Term).await;
                    }
                }
            }
        }
    });
}

/// Hands one answer of a batch to its invocation (see [`PendingInvocations::answer_when_parked`]);
/// the error names the field (prefixed by the caller).
///
/// [`PendingInvocations::answer_when_parked`]: crate::skill_runner::pending::PendingInvocations::answer_when_parked
fn apply(
    daemon: &Daemon,
    r: ResultWire,
    limits: Limits,
    wait: Duration,
    delivery: Delivery,
) -> Result<(Uuid, oneshot::Receiver<bool>), String> {
    let id = r
        .invocation_id
        .ok_or_else(|| "invocation_id: required on the results subject".to_owned())?;
    let answer = r.into_domain(limits).map_err(|e| e.to_string())?;
    let answer = Answer {
        outcome: answer.outcome,
        commands: answer.commands,
        delivery: Some(delivery),
    };
    Ok((id, daemon.pending().answer_when_parked(id, answer, wait)))
}

/// A result message's delivery, and how it settled once every answer let go of it.
fn message_delivery() -> (oneshot::Receiver<Settlement>, Delivery) {
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let source = move |s: Settlement| {
        if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(s);
        }
    };
    (rx, Delivery::new(Some(Box::new(source)), None))
}

/// Dead-letters each answer given up as `unknown_invocation` (counts it when the message is a
/// `repeat`), then acknowledges the message once it settled (or asks for it again), saying it
/// is in progress meanwhile.
async fn settle(
    waiting: Vec<(usize, (Uuid, oneshot::Receiver<bool>))>,
    (mut settled, acks): (oneshot::Receiver<Settlement>, super::inbound::Acks),
    acker: async_nats::jetstream::message::Acker,
    letter: impl Fn(DeadLetterReason, String),
    wait: Duration,
    progress: Duration,
    repeat: bool,
) {
    for (i, (id, mut applied)) in waiting {
        let applied = in_progress(&mut applied, progress, &acker)
            .await
            .unwrap_or(false);
        if applied {
            handles::queue_result("applied");
        } else if repeat {
            // Its event was acknowledged before a crash, this message not yet: applied then.
            handles::queue_result("repeat");
            tracing::debug!(invocation = %id, "results: a repeated answer to a settled invocation");
        } else {
            handles::queue_result("unknown");
            letter(
                DeadLetterReason::UnknownInvocation,
                format!(
                    "results[{i}].invocation_id: no invocation {id} waited for it within {} ms",
                    wait.as_millis()
                ),
            );
        }
    }
    let settlement = in_progress(&mut settled, progress, &acker)
        .await
        .unwrap_or(Settlement::Redeliver);
    acks.settle_after(acker, settlement).await;
}

/// Waits for `rx`, saying the message is in progress every `progress` meanwhile; `None` when
/// the sender went away.
async fn in_progress<T>(
    rx: &mut oneshot::Receiver<T>,
    progress: Duration,
    acker: &async_nats::jetstream::message::Acker,
) -> Option<T> {
    loop {
        match tokio::time::timeout(progress, &mut *rx).await {
            Ok(r) => return r.ok(),
            Err(_) => {
                let _ = acker.ack_with(AckKind::Progress).await;
            }
        }
    }
}
