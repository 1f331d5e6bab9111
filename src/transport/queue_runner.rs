//! Queue skill runners (`runner: {kind: queue}`): invocations are published, in batches (see
//! [`super::invocation_batches`]), to `<prefix>.invoke.<account>.<agent>`, and runners answer on
//! `<prefix>.results.<account>`. The event is handed over once the stream acknowledged the
//! batch that carries its invocation (or once it is known to have been sent before).

use std::sync::Arc;

use uuid::Uuid;

use super::invocation_batches::{InvocationBatches, Queued};
use super::subjects::Subjects;
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::{Handoff, Invocation, Reply, SkillRunner};
use crate::wire::invocation::InvocationWire;

pub struct QueueRunner {
    pub batches: InvocationBatches,
    pub subjects: Subjects,
    pub pending: Arc<PendingInvocations>,
}

impl SkillRunner for QueueRunner {
    fn invoke(&self, inv: Invocation, reply: Reply, handoff: Handoff) {
        let id = inv.id;
        let q = Queued {
            subject: self
                .subjects
                .invoke(inv.account.as_str(), inv.agent.as_str()),
            wire: InvocationWire::from_domain(&inv),
            handoff,
        };
        self.pending.park(inv.account.clone(), reply);
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

    fn cancel(&self, invocation_id: Uuid) {
        self.pending.forget(invocation_id);
    }
}
