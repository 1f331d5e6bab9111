//! Queue skill runners (`runner: {kind: queue}`): invocations are published, in batches (see
//! [`super::invocation_batches`]), to `<prefix>.invoke.<account>.<agent>`, and runners answer on
//! `<prefix>.results.<account>`. The event is handed over once the stream acknowledged the
//! batch that carries its invocation (or once it is known to have been sent before). An
//! invocation the engine gives up is announced on `<prefix>.cancel.<account>.<agent>`, a core
//! NATS subject every runner of the agent may subscribe to (best effort, no stream). The
//! event's delivery is parked with the reply: a result message follows it (see
//! [`super::results`]).

use std::sync::Arc;

use uuid::Uuid;

use super::headers;
use super::invocation_batches::{InvocationBatches, Queued};
use super::subjects::Subjects;
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::{Handoff, Invocation, Reply, SkillRunner};
use crate::telemetry::handles;
use crate::wire::envelope::Encoding;
use crate::wire::invocation::{CancelNoticeWire, InvocationWire};

pub struct QueueRunner {
    pub batches: InvocationBatches,
    pub subjects: Subjects,
    pub pending: Arc<PendingInvocations>,
    /// Publishes cancel notices.
    pub client: async_nats::Client,
    pub encoding: Encoding,
}

impl SkillRunner for QueueRunner {
    fn invoke(&self, inv: Invocation, reply: Reply, handoff: Handoff) {
        let id = inv.id;
        let event = handoff.delivery();
        let q = Queued {
            subject: self
                .subjects
                .invoke(inv.account.as_str(), inv.agent.as_str()),
            wire: InvocationWire::from_domain(&inv),
            handoff,
        };
        let (client, encoding) = (self.client.clone(), self.encoding);
        let subject = self
            .subjects
            .cancel(inv.account.as_str(), inv.agent.as_str());
        self.pending.park_with(
            inv.account.clone(),
            reply,
            Some(Box::new(move |reason| {
                let payload = encoding.encode(&CancelNoticeWire::new(id, reason));
                let headers = headers::outbound(encoding, &format!("cancel-{id}"));
                tokio::spawn(async move {
                    let sent = client
                        .publish_with_headers(subject, headers, payload.into())
                        .await
                        .is_ok();
                    handles::cancel_notice("queue", if sent { "sent" } else { "failed" });
                });
            })),
            event,
        );
        // Queued at once when there is room (no task per invocation). Otherwise a task waits
        // for room: meanwhile the event keeps its in-flight permit, so a full queue slows
        // intake instead of growing memory.
        let Err(q) = self.batches.offer(q) else {
            return;
        };
        let batches = self.batches.clone();
        tokio::spawn(async move {
            if batches.send(*q).await.is_err() {
                tracing::error!(invocation = %id, "invocation batcher stopped");
            }
        });
    }

    fn wants_session(&self) -> bool {
        true
    }

    fn cancel(&self, invocation_id: Uuid, reason: &'static str) {
        self.pending.cancel(invocation_id, reason);
    }
}
