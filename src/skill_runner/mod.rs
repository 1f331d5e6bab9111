//! The one narrow interface invocations leave through: [`SkillRunner`]. A runner receives an
//! [`Invocation`] and a [`Reply`]; it reports commands and the outcome through the reply, now
//! or later, from any thread. [`webhook`] runners POST invocations to a URL; queue runners
//! plug in here too; tests use [`in_process`].

pub mod demo;
pub mod in_process;
pub mod pending;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::domain::{Command, Idn, Name, PersonaId, RunnerSpec, SharedEvent};
use crate::flow_instance::messages::{InvocationReport, ReportKind};
use crate::flow_instance::shard::ShardAddr;
use crate::flow_instance::FlowInstanceKey;

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
}

/// How a skill run ended, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed { reason: String },
}

/// Where a runner reports. Cheap to clone; safe to use from any thread.
#[derive(Clone)]
pub struct Reply {
    pub(crate) shard: ShardAddr,
    pub(crate) key: FlowInstanceKey,
    pub(crate) invocation_id: Uuid,
}

impl Reply {
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
        self.shard.do_send(InvocationReport {
            key: self.key,
            invocation_id: self.invocation_id,
            kind: ReportKind::Commands(commands),
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
            self.shard.do_send(InvocationReport {
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
    /// Held only to be dropped: dropping the last holder settles the delivery.
    _delivery: Option<crate::admission::delivery::Delivery>,
}

impl Handoff {
    pub(crate) fn new(delivery: crate::admission::delivery::Delivery) -> Self {
        Handoff {
            _delivery: Some(delivery),
        }
    }

    /// A handoff nobody waits on (tests, internal use).
    pub fn none() -> Self {
        Handoff { _delivery: None }
    }

    /// The invocation is handed over.
    pub fn done(self) {}
}

/// A skill runner.
pub trait SkillRunner: Send + Sync + 'static {
    /// Starts `invocation`. Must not block: hand slow work to a task or a queue.
    fn invoke(&self, invocation: Invocation, reply: Reply, handoff: Handoff);

    /// The engine gave up on `invocation_id` (interrupted, timed out). Best effort.
    fn cancel(&self, _invocation_id: Uuid) {}
}

/// Turns a flow's [`RunnerSpec`] into a runner, when the flow is loaded.
pub trait RunnerResolver: Send + Sync + 'static {
    fn resolve(&self, spec: &RunnerSpec) -> Result<Arc<dyn SkillRunner>, String>;
}

/// Resolves `default`, named in-process runners and, given a factory, webhook runners;
/// refuses kinds it was not given.
#[derive(Clone)]
pub struct RunnerRegistry {
    default: Arc<dyn SkillRunner>,
    named: FxHashMap<String, Arc<dyn SkillRunner>>,
    demo: Option<Arc<dyn SkillRunner>>,
    webhooks: Option<webhook::WebhookRunners>,
}

impl RunnerRegistry {
    pub fn new(default: Arc<dyn SkillRunner>) -> Self {
        RunnerRegistry {
            default,
            named: FxHashMap::default(),
            demo: None,
            webhooks: None,
        }
    }

    pub fn with_named(mut self, name: &str, runner: Arc<dyn SkillRunner>) -> Self {
        self.named.insert(name.to_owned(), runner);
        self
    }

    pub fn with_demo(mut self, runner: Arc<dyn SkillRunner>) -> Self {
        self.demo = Some(runner);
        self
    }

    /// Resolves `{kind: webhook}` runners with `factory`.
    pub fn with_webhooks(mut self, factory: webhook::WebhookRunners) -> Self {
        self.webhooks = Some(factory);
        self
    }

    /// The webhook factory, if webhook runners are enabled.
    pub fn webhooks(&self) -> Option<&webhook::WebhookRunners> {
        self.webhooks.as_ref()
    }
}

impl RunnerResolver for RunnerRegistry {
    fn resolve(&self, spec: &RunnerSpec) -> Result<Arc<dyn SkillRunner>, String> {
        match spec {
            RunnerSpec::Default => Ok(self.default.clone()),
            RunnerSpec::InProcess { name } => self
                .named
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no in-process runner named {name:?}")),
            RunnerSpec::Demo => self
                .demo
                .clone()
                .ok_or_else(|| "the demo runner is not enabled".to_owned()),
            RunnerSpec::Webhook {
                url,
                timeout,
                max_attempts,
            } => self
                .webhooks
                .as_ref()
                .map(|w| w.runner(url, *timeout, *max_attempts))
                .ok_or_else(|| "webhook runners are not enabled".to_owned()),
            other => Err(format!(
                "runner kind {} is not available here",
                other.kind()
            )),
        }
    }
}
