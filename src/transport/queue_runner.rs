//! Queue skill runners (`runner: {kind: queue}`): invocations are published to
//! `<prefix>.invoke.<account>.<agent>` with the invocation id as `Nats-Msg-Id` (the stream drops
//! a republished duplicate), and runners answer on `<prefix>.results.<account>`. The event is
//! handed over once the stream acknowledged the invocation.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::headers;
use super::publisher::{Outgoing, Publisher};
use super::subjects::Subjects;
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::{Handoff, Invocation, Outcome, Reply, SkillRunner};
use crate::wire::envelope::Encoding;
use crate::wire::invocation::InvocationWire;

pub struct QueueRunner {
    pub publisher: Publisher,
    pub subjects: Subjects,
    pub encoding: Encoding,
    pub pending: Arc<PendingInvocations>,
}

impl SkillRunner for QueueRunner {
    fn invoke(&self, inv: Invocation, reply: Reply, handoff: Handoff) {
        let id = inv.id;
        let subject = self
            .subjects
            .invoke(inv.account.as_str(), inv.agent.as_str());
        let payload = Bytes::from(
            self.encoding
                .encode(&InvocationWire::from_domain(&inv, None)),
        );
        self.pending.park(reply);
        let pending = self.pending.clone();
        let m = Outgoing {
            subject,
            headers: headers::outbound(self.encoding, &id.to_string()),
            payload,
            on_settled: Some(Box::new(move |r| {
                if let Err(reason) = r {
                    let _ = pending.answer(
                        id,
                        Some(Outcome::Failed {
                            reason: format!("publishing the invocation failed: {reason}"),
                        }),
                        Vec::new(),
                    );
                }
                handoff.done();
            })),
        };
        // Queued at once when there is room (no task per invocation). Otherwise a task waits
        // for room: meanwhile the event keeps its in-flight permit, so a full queue slows
        // intake instead of growing memory.
        let Err(m) = self.publisher.offer(m) else {
            return;
        };
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            if publisher.publish(m).await.is_err() {
                tracing::error!(invocation = %id, "publisher stopped");
            }
        });
    }

    fn cancel(&self, invocation_id: Uuid) {
        self.pending.forget(invocation_id);
    }
}
