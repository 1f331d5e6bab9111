//! Invocations waiting for a later answer (`POST /v1/invocations/{id}/result`): the runner
//! parks the [`Reply`] here; the HTTP handler finds it by id. Entries leave on the final
//! answer or when the engine gives the invocation up (`SkillRunner::cancel`): then the
//! runner's [`CancelNotice`], parked with the reply, tells the remote runner.

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

/// Tells the remote runner that an invocation it holds was given up; called at most once, with
/// the reason (`interrupted`, `superseded`, `cancelled`, `timed_out`).
pub type CancelNotice = Box<dyn FnOnce(&'static str) + Send + Sync>;

/// A reply waiting, with the account its invocation runs in and how to tell the runner.
struct Parked {
    account: Idn,
    reply: Reply,
    notice: Option<CancelNotice>,
}

#[derive(Default)]
pub struct PendingInvocations {
    replies: DashMap<Uuid, Parked, FxBuildHasher>,
}

impl PendingInvocations {
    pub fn park(&self, account: Idn, reply: Reply) {
        self.park_with(account, reply, None);
    }

    /// Parks `reply`; `notice` tells the runner if the engine gives the invocation up.
    pub fn park_with(&self, account: Idn, reply: Reply, notice: Option<CancelNotice>) {
        self.replies.insert(
            reply.invocation_id(),
            Parked {
                account,
                reply,
                notice,
            },
        );
    }

    /// The engine gave invocation `id` up: it stops waiting, and the runner is told why (when
    /// it still held the invocation and its runner parked a notice). Whether it was waiting.
    pub fn cancel(&self, id: Uuid, reason: &'static str) -> bool {
        let Some((_, parked)) = self.replies.remove(&id) else {
            return false;
        };
        if let Some(notice) = parked.notice {
            notice(reason);
        }
        true
    }

    pub fn is_waiting(&self, id: Uuid) -> bool {
        self.replies.contains_key(&id)
    }

    /// Whether invocation `id` waits for an answer and runs in `account`: an invocation of
    /// another account is as absent as one that does not wait.
    pub fn is_waiting_in(&self, id: Uuid, account: &Idn) -> bool {
        self.replies.get(&id).is_some_and(|r| r.account == *account)
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
                r.reply.commands(commands);
            }
            Some(o) => {
                let (_, r) = self.replies.remove(&id).ok_or(UnknownInvocation(id))?;
                r.reply.finish(o, commands);
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
