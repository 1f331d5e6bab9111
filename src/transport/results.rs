//! Consuming the results stream: queue runners' outcomes and commands, matched to the waiting
//! invocation by `invocation_id`. What matches no waiting invocation, or does not decode, is
//! dead-lettered and terminated.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;

use super::headers;
use crate::daemon::Daemon;
use crate::dead_letter::{self, DeadLetter};
use crate::wire::envelope::Limits;
use crate::wire::invocation::ResultWire;

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
                let answer = encoding
                    .ok_or_else(|| {
                        "Content-Type: neither application/json nor application/msgpack".to_owned()
                    })
                    .and_then(|enc| {
                        enc.decode::<ResultWire>(&msg.payload)
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|w| {
                        let id = w.invocation_id.ok_or_else(|| {
                            "invocation_id: required on the results subject".to_owned()
                        })?;
                        w.into_domain(limits)
                            .map(|a| (id, a))
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|(id, a)| {
                        daemon
                            .pending
                            .answer(id, a.outcome, a.commands)
                            .map_err(|e| e.to_string())
                    });
                match answer {
                    Ok(()) => {
                        let _ = acker.ack().await;
                    }
                    Err(detail) => {
                        dead_letter::record(
                            &**daemon.engine.dead_letters(),
                            DeadLetter::raw(
                                daemon.account(),
                                format!("{detail} (subject {})", msg.subject),
                                encoding.map(|e| e.content_type()).unwrap_or("").to_owned(),
                                msg.payload.to_vec(),
                            ),
                        );
                        let _ = acker.ack_with(AckKind::Term).await;
                    }
                }
            }
        }
    });
}
