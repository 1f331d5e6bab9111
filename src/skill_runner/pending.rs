//! Invocations waiting for a later answer (`POST /v1/invocations/{id}/result`): the runner
//! parks the [`Reply`] here; the HTTP handler finds it by id. Entries leave on the final
//! answer or when the engine gives the invocation up (`SkillRunner::cancel`): then the
//! runner's [`CancelNotice`], parked with the reply, tells the remote runner.
//!
//! An answer may come before its invocation is parked: after a restart, the results stream
//! still holds answers to invocations of the last run, whose events are being replayed (same
//! invocation ids) and wait in their flow instances' queues. Such an answer waits here
//! ([`PendingInvocations::answer_when_parked`]) and is applied the moment its invocation is
//! parked, or given up at its deadline.

use std::time::Duration;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use tokio::sync::oneshot;
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

/// Answers to an invocation not parked yet, in the order they came, each with whoever waits to
/// learn whether it was applied.
type Early = Vec<(Option<Outcome>, Vec<Command>, oneshot::Sender<bool>)>;

#[derive(Default)]
pub struct PendingInvocations {
    replies: DashMap<Uuid, Parked, FxBuildHasher>,
    early: DashMap<Uuid, Early, FxBuildHasher>,
}

impl PendingInvocations {
    pub fn park(&self, account: Idn, reply: Reply) {
        self.park_with(account, reply, None);
    }

    /// Parks `reply`; `notice` tells the runner if the engine gives the invocation up. Answers
    /// that came before it are applied now.
    pub fn park_with(&self, account: Idn, reply: Reply, notice: Option<CancelNotice>) {
        let id = reply.invocation_id();
        self.replies.insert(
            id,
            Parked {
                account,
                reply,
                notice,
            },
        );
        self.apply_early(id);
    }

    /// Applies the answers waiting for invocation `id`, now parked.
    fn apply_early(&self, id: Uuid) {
        let Some((_, early)) = self.early.remove(&id) else {
            return;
        };
        for (outcome, commands, applied) in early {
            let _ = applied.send(self.answer(id, outcome, commands).is_ok());
        }
    }

    /// Delivers an answer (see [`PendingInvocations::answer`]); when its invocation is not
    /// parked, the answer waits for it until `wait` has passed. The receiver learns whether it
    /// was applied (`false`: given up). Needs a tokio runtime.
    pub fn answer_when_parked(
        self: &std::sync::Arc<Self>,
        id: Uuid,
        outcome: Option<Outcome>,
        commands: Vec<Command>,
        wait: Duration,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        if self.replies.contains_key(&id) {
            let _ = tx.send(self.answer(id, outcome, commands).is_ok());
            return rx;
        }
        let first = {
            let mut entry = self.early.entry(id).or_default();
            entry.push((outcome, commands, tx));
            entry.len() == 1
        };
        // Parked meanwhile: its park found nothing waiting, so apply here.
        if self.replies.contains_key(&id) {
            self.apply_early(id);
        } else if first {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if let Some((_, given_up)) = me.early.remove(&id) {
                    for (_, _, applied) in given_up {
                        let _ = applied.send(false);
                    }
                }
            });
        }
        rx
    }

    /// The runner of invocation `id` retries and needs until `until` (see [`Reply::retrying`]).
    pub fn retrying(&self, id: Uuid, until: tokio::time::Instant) {
        if let Some(p) = self.replies.get(&id) {
            p.reply.retrying(until);
        }
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
