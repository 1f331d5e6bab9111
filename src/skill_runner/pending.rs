//! Invocations waiting for a later answer (`POST /v1/invocations/{id}/result`): the runner
//! parks the [`Reply`] here; the HTTP handler finds it by id. Entries leave on the final
//! answer or when the engine gives the invocation up (`SkillRunner::cancel`).

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use uuid::Uuid;

use super::{Outcome, Reply};
use crate::domain::{Command, Idn};
use crate::fault::{Blame, Fault};

/// No invocation with that id waits for an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no invocation {0} is waiting for a result")]
pub struct UnknownInvocation(pub Uuid);

impl Blame for UnknownInvocation {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

#[derive(Default)]
pub struct PendingInvocations {
    /// Each reply with the account its invocation runs in.
    replies: DashMap<Uuid, (Idn, Reply), FxBuildHasher>,
}

impl PendingInvocations {
    pub fn park(&self, account: Idn, reply: Reply) {
        self.replies.insert(reply.invocation_id(), (account, reply));
    }

    pub fn forget(&self, id: Uuid) {
        self.replies.remove(&id);
    }

    pub fn is_waiting(&self, id: Uuid) -> bool {
        self.replies.contains_key(&id)
    }

    /// Whether invocation `id` waits for an answer and runs in `account`: an invocation of
    /// another account is as absent as one that does not wait.
    pub fn is_waiting_in(&self, id: Uuid, account: &Idn) -> bool {
        self.replies.get(&id).is_some_and(|r| r.0 == *account)
    }

    /// Delivers an answer: commands now; with an outcome, the invocation ends.
    pub fn answer(
        &self,
        id: Uuid,
        outcome: Option<Outcome>,
        commands: Vec<Command>,
    ) -> Result<(), UnknownInvocation> {
        match outcome {
            None => {
                let r = self.replies.get(&id).ok_or(UnknownInvocation(id))?;
                r.1.commands(commands);
            }
            Some(o) => {
                let (_, (_, r)) = self.replies.remove(&id).ok_or(UnknownInvocation(id))?;
                r.finish(o, commands);
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}
