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
//!
//! An answer may come with a delivery of its own (a result message on the results stream): it
//! follows the event's delivery parked with the reply ([`Delivery::follow`]), so the message is
//! acknowledged once the event is (its invocation ended, its commands durable) and delivered
//! again if the event is: a crash in between loses neither.

use std::time::Duration;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Outcome, Reply};
use crate::admission::delivery::Delivery;
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
    /// The event's delivery, which answers' own deliveries follow.
    event: Option<Delivery>,
}

/// An answer: the outcome if final, the commands, and the delivery that brought it.
pub struct Answer {
    pub outcome: Option<Outcome>,
    pub commands: Vec<Command>,
    pub delivery: Option<Delivery>,
}

/// Answers to an invocation not parked yet, in the order they came, each with whoever waits to
/// learn whether it was applied.
type Early = Vec<(Answer, oneshot::Sender<bool>)>;

#[derive(Default)]
pub struct PendingInvocations {
    replies: DashMap<Uuid, Parked, FxBuildHasher>,
    early: DashMap<Uuid, Early, FxBuildHasher>,
}

impl PendingInvocations {
    pub fn park(&self, account: Idn, reply: Reply) {
        self.park_with(account, reply, None, None);
    }

    /// Parks `reply`; `notice` tells the runner if the engine gives the invocation up; answers
    /// that bring a delivery follow `event`'s. Answers that came before it are applied now.
    pub fn park_with(
        &self,
        account: Idn,
        reply: Reply,
        notice: Option<CancelNotice>,
        event: Option<Delivery>,
    ) {
        let id = reply.invocation_id();
        self.replies.insert(
            id,
            Parked {
                account,
                reply,
                notice,
                event,
            },
        );
        self.apply_early(id);
    }

    /// Applies the answers waiting for invocation `id`, now parked.
    fn apply_early(&self, id: Uuid) {
        let Some((_, early)) = self.early.remove(&id) else {
            return;
        };
        for (answer, applied) in early {
            let _ = applied.send(self.apply(id, answer).is_ok());
        }
    }

    /// Delivers an answer (see [`PendingInvocations::answer`]); when its invocation is not
    /// parked, the answer waits for it until `wait` has passed. The receiver learns whether it
    /// was applied (`false`: given up). Needs a tokio runtime.
    pub fn answer_when_parked(
        self: &std::sync::Arc<Self>,
        id: Uuid,
        answer: Answer,
        wait: Duration,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        if self.replies.contains_key(&id) {
            let _ = tx.send(self.apply(id, answer).is_ok());
            return rx;
        }
        let first = {
            let mut entry = self.early.entry(id).or_default();
            entry.push((answer, tx));
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
                    for (_, applied) in given_up {
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
        self.apply(
            id,
            Answer {
                outcome,
                commands,
                delivery: None,
            },
        )
    }

    /// Delivers an answer; its delivery, if any, follows the event's (settles at once when
    /// the invocation's runner parked none).
    pub fn apply(&self, id: Uuid, answer: Answer) -> Result<(), UnknownInvocation> {
        let Answer {
            outcome,
            commands,
            delivery,
        } = answer;
        let follow = |event: &Option<Delivery>| {
            if let (Some(event), Some(d)) = (event, delivery) {
                event.follow(d);
            }
        };
        match outcome {
            None => {
                let r = self.replies.get(&id).ok_or(UnknownInvocation(id))?;
                follow(&r.event);
                r.reply.commands(commands);
            }
            Some(o) => {
                let (_, r) = self.replies.remove(&id).ok_or(UnknownInvocation(id))?;
                follow(&r.event);
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::admission::delivery::Settlement;
    use crate::domain::{FlowId, PersonaId};
    use crate::invocation::{FlowInstanceKey, InvocationReport, ReportSink};

    struct Ignore;

    impl ReportSink for Ignore {
        fn report(&self, _: InvocationReport) {}
    }

    type Log = Arc<Mutex<Vec<Settlement>>>;

    fn delivery() -> (Log, Delivery) {
        let log: Log = Arc::default();
        let l = log.clone();
        let source = move |s: Settlement| l.lock().unwrap().push(s);
        (log, Delivery::new(Some(Box::new(source)), None))
    }

    fn reply(n: u128) -> Reply {
        let key = FlowInstanceKey {
            flow: FlowId(1),
            persona: PersonaId(Uuid::nil()),
        };
        Reply::new(Arc::new(Ignore), key, Uuid::from_u128(n))
    }

    fn answer(delivery: Delivery) -> Answer {
        Answer {
            outcome: Some(Outcome::Completed),
            commands: Vec::new(),
            delivery: Some(delivery),
        }
    }

    #[tokio::test]
    async fn an_answer_s_delivery_settles_with_the_event_it_answers_early_or_not() {
        let account = Idn::known("a");
        let pending = Arc::new(PendingInvocations::default());
        for (n, early, event_redelivered) in [(1, false, false), (2, true, false), (3, true, true)]
        {
            let (event_log, event) = delivery();
            let (answer_log, answer_delivery) = delivery();
            let park = |event: Delivery| {
                pending.park_with(account.clone(), reply(n), None, Some(event));
            };
            let mut applied = None;
            if early {
                applied = Some(pending.answer_when_parked(
                    Uuid::from_u128(n),
                    answer(answer_delivery),
                    Duration::from_secs(60),
                ));
                park(event.clone());
            } else {
                park(event.clone());
                assert!(pending
                    .apply(Uuid::from_u128(n), answer(answer_delivery))
                    .is_ok());
            }
            if let Some(applied) = applied {
                assert!(applied.await.unwrap(), "applied once parked");
            }
            assert!(!pending.is_waiting(Uuid::from_u128(n)), "answered");
            assert!(answer_log.lock().unwrap().is_empty(), "held by the event");
            let expected = if event_redelivered {
                event.give_up();
                Settlement::Redeliver
            } else {
                drop(event);
                Settlement::Done
            };
            assert_eq!(*event_log.lock().unwrap(), vec![expected]);
            assert_eq!(*answer_log.lock().unwrap(), vec![expected], "case {n}");
        }
    }

    #[tokio::test]
    async fn an_answer_nobody_parked_for_settles_when_given_up() {
        let pending = Arc::new(PendingInvocations::default());
        let (log, d) = delivery();
        let applied =
            pending.answer_when_parked(Uuid::from_u128(9), answer(d), Duration::from_millis(1));
        assert!(!applied.await.unwrap());
        assert_eq!(*log.lock().unwrap(), vec![Settlement::Done]);
    }
}
