//! Consuming the results stream: batches of queue runners' outcomes and commands, each matched
//! to the waiting invocation by `invocation_id`. A message that does not decode is dead-lettered
//! and terminated; an answer that matches no waiting invocation is dead-lettered alone.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;

use super::headers;
use crate::daemon::Daemon;
use crate::dead_letter::{self, DeadLetter};
use crate::wire::envelope::Limits;
use crate::wire::invocation::{ResultBatchWire, ResultWire};

pub fn spawn(daemon: Arc<Daemon>, consumer: PullConsumer, pull_batch: usize, limits: Limits) {
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
                let refuse = |detail: String| {
                    dead_letter::record(
                        &**daemon.engine().dead_letters(),
                        DeadLetter::raw(
                            daemon.home_account(),
                            format!("{detail} (subject {})", msg.subject),
                            content_type.to_owned(),
                            msg.payload.to_vec(),
                        ),
                    );
                };
                match batch {
                    Ok(batch) => {
                        // Each answer is applied on its own: the others still count when one
                        // does not fit, and its dead letter names the answer.
                        for (i, r) in batch.results.into_iter().enumerate() {
                            if let Err(detail) = apply(&daemon, r, limits) {
                                refuse(format!("results[{i}].{detail}"));
                            }
                        }
                        let _ = acker.ack().await;
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

/// Applies one answer of a batch; the error names the field (prefixed by the caller).
fn apply(daemon: &Daemon, r: ResultWire, limits: Limits) -> Result<(), String> {
    let id = r
        .invocation_id
        .ok_or_else(|| "invocation_id: required on the results subject".to_owned())?;
    let answer = r.into_domain(limits).map_err(|e| e.to_string())?;
    daemon
        .pending
        .answer(id, answer.outcome, answer.commands)
        .map_err(|e| format!("invocation_id: {e}"))
}
