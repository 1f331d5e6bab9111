//! The runner contract: the one narrow interface invocations leave the flow instances
//! through. A [`SkillRunner`] receives an [`Invocation`], a [`Reply`] and a [`Handoff`]; it
//! reports commands and the outcome through the reply, now or later, from any thread. The flow
//! instances drive it; `skill_runner/` and `transport/` implement it. It sits below both so
//! that neither imports the other.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::admission::delivery::Delivery;
use crate::domain::{Command, FlowId, Idn, Name, PersonaId, RunnerSpec, SharedEvent};

/// Identifies a flow instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowInstanceKey {
    pub flow: FlowId,
    pub persona: PersonaId,
}

/// What a runner reports about one invocation of the flow instance `key`.
pub struct InvocationReport {
    pub key: FlowInstanceKey,
    pub invocation_id: Uuid,
    pub kind: ReportKind,
}

pub enum ReportKind {
    /// Commands sent while the skill runs.
    Commands(Vec<Command>),
    /// The outcome, with the run's last commands.
    Finished {
        outcome: Outcome,
        commands: Vec<Command>,
    },
    /// The runner retries a failed attempt: the invocation may run until `until`.
    Retrying { until: tokio::time::Instant },
}

/// Where replies go: the flow shard hosting the instance implements it.
pub trait ReportSink: Send + Sync + 'static {
    fn report(&self, report: InvocationReport);
}

/// One skill run.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: Uuid,
    pub account: Idn,
    pub agent: Name,
    pub flow: Name,
    pub skill: Name,
    pub persona: PersonaId,
    /// The subscription's event idn and the event itself.
    pub event: SharedEvent,
    /// How long the runner has before the invocation times out.
    pub timeout: Duration,
    /// The persona's live session on the event's connector, attached by the flow instance for
    /// runners that carry it ([`SkillRunner::wants_session`]).
    pub session: Option<InvocationSession>,
}

/// The live session an invocation runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationSession {
    pub id: Uuid,
    pub integration: Idn,
    pub connector: Idn,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// How a skill run ended, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed {
        reason: String,
    },
    /// The runner is gone for good (a webhook's HTTP 410) and is disabled: a failure the flow
    /// is told of (`runner_disabled` on `system`).
    RunnerGone {
        reason: String,
    },
    /// The runner did not send it: its event's source revoked it meanwhile (a partition this
    /// daemon lost, see `Settle::revoked`); the event is given up for the partition's owner.
    Fenced,
}

/// Where a runner reports. Cheap to clone; safe to use from any thread.
#[derive(Clone)]
pub struct Reply {
    to: Arc<dyn ReportSink>,
    key: FlowInstanceKey,
    invocation_id: Uuid,
}

impl Reply {
    /// Reports of invocation `invocation_id` of the instance `key` go to `to`.
    pub fn new(to: Arc<dyn ReportSink>, key: FlowInstanceKey, invocation_id: Uuid) -> Self {
        Reply {
            to,
            key,
            invocation_id,
        }
    }

    pub fn invocation_id(&self) -> Uuid {
        self.invocation_id
    }

    /// Commands sent while the skill still runs. They leave at once, in this order, unless
    /// the invocation was interrupted or timed out meanwhile.
    pub fn commands(&self, commands: Vec<Command>) {
        let mut commands = Some(commands);
        INLINE.with(|slot| {
            if let Some(inline) = &mut *slot.borrow_mut() {
                if inline.id == self.invocation_id && inline.outcome.is_none() {
                    inline.streamed.extend(commands.take().unwrap_or_default());
                }
            }
        });
        let Some(commands) = commands else { return };
        self.to.report(InvocationReport {
            key: self.key,
            invocation_id: self.invocation_id,
            kind: ReportKind::Commands(commands),
        });
    }

    /// The runner retries a failed attempt and needs until `until`: the invocation's deadline
    /// moves there if it is later (the flow instance's queue waits meanwhile).
    pub fn retrying(&self, until: tokio::time::Instant) {
        self.to.report(InvocationReport {
            key: self.key,
            invocation_id: self.invocation_id,
            kind: ReportKind::Retrying { until },
        });
    }

    /// The outcome, with the last commands of the run.
    pub fn finish(self, outcome: Outcome, commands: Vec<Command>) {
        let mut finished = Some((outcome, commands));
        // A runner answering inside `invoke` (in-process runners) hands the outcome straight
        // back to the flow instance that is calling it: no mailbox round trip, no timer.
        INLINE.with(|slot| {
            if let Some(inline) = &mut *slot.borrow_mut() {
                if inline.id == self.invocation_id && inline.outcome.is_none() {
                    if let Some((outcome, commands)) = finished.take() {
                        inline.streamed.extend(commands);
                        inline.outcome = Some(outcome);
                    }
                }
            }
        });
        if let Some((outcome, commands)) = finished {
            self.to.report(InvocationReport {
                key: self.key,
                invocation_id: self.invocation_id,
                kind: ReportKind::Finished { outcome, commands },
            });
        }
    }
}

/// What a runner said inside `invoke`: commands in the order sent, and the outcome if it
/// finished.
pub(crate) struct Inline {
    id: Uuid,
    pub(crate) streamed: Vec<Command>,
    pub(crate) outcome: Option<Outcome>,
}

thread_local! {
    /// The invocation a flow instance is handing to its runner on this thread.
    static INLINE: std::cell::RefCell<Option<Inline>> = const { std::cell::RefCell::new(None) };
}

/// Calls `invoke`; returns what the runner said before it returned.
pub(crate) fn invoke_inline(invocation_id: Uuid, invoke: impl FnOnce()) -> Inline {
    INLINE.with(|slot| {
        *slot.borrow_mut() = Some(Inline {
            id: invocation_id,
            streamed: Vec::new(),
            outcome: None,
        })
    });
    invoke();
    INLINE
        .with(|slot| slot.borrow_mut().take())
        .expect("the slot set above")
}

/// The event's delivery ticket, handed over with its invocation. While a runner holds it the
/// event still counts as in flight: it keeps its in-flight permit and stays in the daemon's
/// inbox. A runner lets go (drops it, or calls [`Handoff::done`]) once the invocation is
/// really handed over: at once for in-process runners, when the remote runner answered for a
/// webhook, when the queue acknowledged the publish. A crash before that replays the event.
pub struct Handoff {
    /// Held to be dropped: dropping the last holder settles the delivery.
    delivery: Option<Delivery>,
}

impl Handoff {
    pub fn new(delivery: Delivery) -> Self {
        Handoff {
            delivery: Some(delivery),
        }
    }

    /// A handoff nobody waits on (tests, internal use).
    pub fn none() -> Self {
        Handoff { delivery: None }
    }

    /// The invocation is handed over.
    pub fn done(self) {}

    /// The event's delivery, for a runner whose answer comes on a queue of its own: that
    /// answer's message follows it ([`Delivery::follow`]), so it is acknowledged only once the
    /// event is.
    pub fn delivery(&self) -> Option<Delivery> {
        self.delivery.clone()
    }

    /// Whether the event's source revoked it: the runner should not send the invocation, but
    /// [`Handoff::give_up`] and answer [`Outcome::Fenced`].
    pub fn revoked(&self) -> bool {
        self.delivery.as_ref().is_some_and(|d| d.revoked())
    }

    /// The invocation was not handed over: its event is delivered again (to its new owner).
    pub fn give_up(self) {
        if let Some(d) = self.delivery {
            d.give_up();
        }
    }
}

/// A skill runner.
pub trait SkillRunner: Send + Sync + 'static {
    /// Starts `invocation`. Must not block: hand slow work to a task or a queue.
    fn invoke(&self, invocation: Invocation, reply: Reply, handoff: Handoff);

    /// The engine gave up on `invocation_id`; `reason` is the outcome it counts
    /// (`interrupted`, `superseded`, `cancelled`, `timed_out`). Runners that handed the
    /// invocation to a remote runner tell it (a cancel notice). Best effort.
    fn cancel(&self, _invocation_id: Uuid, _reason: &'static str) {}

    /// Whether invocations should carry the persona's live session (runners that send it to a
    /// remote skill); looking it up costs a table probe per invocation, so others say no.
    fn wants_session(&self) -> bool {
        false
    }
}

/// Why a flow's runner cannot be had here (the flow is refused, naming its `runner`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoRunner(pub String);

impl crate::fault::Blame for NoRunner {
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

/// Turns a flow's [`RunnerSpec`] into a runner, when the flow is loaded.
pub trait RunnerResolver: Send + Sync + 'static {
    fn resolve(&self, spec: &RunnerSpec) -> Result<Arc<dyn SkillRunner>, NoRunner>;
}
