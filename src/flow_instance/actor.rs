//! The flow instance actor: the execution queue of one flow for one user persona. It applies
//! the subscription's interrupt mode, runs one invocation at a time under a deadline, sends the
//! commands of the current invocation only, and retires itself when idle.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, SpawnHandle};
use tokio::time::Instant;
use uuid::Uuid;

use super::directory::{FlowInstanceKey, FlowInstances};
use super::messages::{Enqueue, FlowInstanceSnapshot, Inspect, InvocationReport, ReportKind};
use crate::admission::delivery::Delivery;
use crate::commands::router::Origin;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason};
use crate::domain::{Command, InterruptMode, Name, SharedEvent, SkillSelector};
use crate::routing::index::{FlowRoute, Match};
use crate::skill_runner::{invoke_inline, Handoff, Invocation, Outcome, Reply};
use crate::telemetry::handles::{self, InvocationOutcome};

struct Pending {
    event: SharedEvent,
    matched: Match,
    delivery: Delivery,
    admitted_at: Instant,
}

struct Running {
    id: Uuid,
    uninterruptible: bool,
    /// `None` when the runner answered inside `invoke`.
    deadline: Option<SpawnHandle>,
    started: Instant,
    flow: Arc<FlowRoute>,
    event: SharedEvent,
}

/// The id of the invocation of `event` in `flow`: derived, so a replayed event gets the same
/// invocation id and a runner can tell a redelivery (an event reaches a flow once).
fn invocation_id(event: &Uuid, flow: &FlowRoute) -> Uuid {
    crate::domain::derived_id::derive(
        event.as_bytes(),
        &[
            flow.flow.account.as_str().as_bytes(),
            flow.flow.agent.as_str().as_bytes(),
            flow.flow.flow.as_str().as_bytes(),
        ],
    )
}

/// One flow instance `(account, agent, flow, user persona)`.
pub struct FlowInstance {
    key: FlowInstanceKey,
    generation: u64,
    instances: Arc<FlowInstances>,
    /// Messages received from the directory (see its retirement protocol).
    received: u64,
    running: Option<Running>,
    pending: VecDeque<Pending>,
    /// The idle timer, if armed (see [`FlowInstance::arm_idle`]).
    idle: Option<SpawnHandle>,
    /// When the instance last ran out of work.
    idle_since: Instant,
}

impl FlowInstance {
    pub(crate) fn new(
        key: FlowInstanceKey,
        generation: u64,
        instances: Arc<FlowInstances>,
    ) -> Self {
        FlowInstance {
            key,
            generation,
            instances,
            received: 0,
            running: None,
            pending: VecDeque::new(),
            idle: None,
            idle_since: Instant::now(),
        }
    }

    fn drop_pending(&mut self, outcome: InvocationOutcome) {
        for p in self.pending.drain(..) {
            p.matched.flow.metrics.outcome(outcome);
            // An outcome, not a failure: the delivery is settled as done.
            drop(p.delivery);
        }
    }

    /// Stops the running invocation, if any; its later commands are discarded.
    fn abandon_running(&mut self, outcome: InvocationOutcome, ctx: &mut Context<Self>) {
        if let Some(r) = self.running.take() {
            if let Some(d) = r.deadline {
                ctx.cancel_future(d);
            }
            r.flow.metrics.outcome(outcome);
            r.flow
                .metrics
                .duration
                .record(r.started.elapsed().as_secs_f64());
            r.flow.runner.cancel(r.id);
        }
    }

    fn start_next(&mut self, ctx: &mut Context<Self>) {
        while self.running.is_none() {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.start(p, ctx);
        }
        if self.running.is_none() && self.pending.is_empty() {
            self.idle_since = Instant::now();
            if self.idle.is_none() {
                self.arm_idle(self.instances.deps.idle_timeout, ctx);
            }
        }
    }

    /// One idle timer at a time, armed when the instance first goes idle and left running
    /// while events come and go: when it fires it retires the instance if it has been idle
    /// for the whole timeout, and otherwise re-arms for the rest. Arming and cancelling a
    /// timer per event cost more than the rest of the instance's work.
    fn arm_idle(&mut self, after: std::time::Duration, ctx: &mut Context<Self>) {
        self.idle = Some(ctx.run_later(after, |act, ctx| {
            act.idle = None;
            if act.running.is_some() || !act.pending.is_empty() {
                return; // busy: start_next arms it again when the work is done
            }
            let timeout = act.instances.deps.idle_timeout;
            let idle_for = act.idle_since.elapsed();
            if idle_for < timeout {
                act.arm_idle(timeout - idle_for, ctx);
            } else if act.instances.retire(act.key, act.generation, act.received) {
                ctx.stop();
            }
        }));
    }

    fn skill_of(&self, p: &Pending) -> Result<Name, String> {
        match p.matched.skill() {
            SkillSelector::Skill(s) => Ok(s.clone()),
            SkillSelector::FromState(field) => {
                let flow = &p.matched.flow.flow;
                match self.instances.deps.state.get(flow, field, self.key.persona) {
                    None => Err(format!(
                        "state field {field} of {}/{} has no value and no default",
                        flow.agent, flow.flow
                    )),
                    Some(v) => Name::parse(field.as_str(), &v).map_err(|e| {
                        format!(
                            "state field {field} holds {v:?}, not a skill idn: {}",
                            e.reason
                        )
                    }),
                }
            }
        }
    }

    fn start(&mut self, p: Pending, ctx: &mut Context<Self>) {
        let skill = match self.skill_of(&p) {
            Ok(s) => s,
            Err(detail) => {
                p.matched.flow.metrics.outcome(InvocationOutcome::NoSkill);
                dead_letter::record(
                    &*self.instances.deps.dead_letters,
                    DeadLetter::event(
                        DeadLetterReason::NoSkill,
                        detail,
                        p.event.event.clone(),
                        Some(p.event.persona),
                    ),
                );
                return; // recorded: the delivery settles as done
            }
        };
        // The route moves from the pending entry into `running`: the flow's `Arc` is shared by
        // every instance on every thread, so each clone would be a contended atomic.
        let Pending {
            event,
            matched,
            delivery,
            admitted_at,
        } = p;
        let flow = matched.flow;
        let id = invocation_id(&event.event.id, &flow);
        let invocation = Invocation {
            id,
            account: flow.flow.account.clone(),
            agent: flow.flow.agent.clone(),
            flow: flow.flow.flow.clone(),
            skill,
            persona: self.key.persona,
            event: event.clone(),
            timeout: flow.invocation_timeout,
        };
        let timeout = flow.invocation_timeout;
        let now = Instant::now();
        self.instances
            .deps
            .metrics
            .dispatch_latency
            .record(now.saturating_duration_since(admitted_at).as_secs_f64());
        let reply = Reply {
            addr: ctx.address(),
            invocation_id: id,
        };
        // The runner lets go of the delivery once it really has the invocation.
        let handoff = Handoff::new(delivery);
        let said = invoke_inline(id, || flow.runner.invoke(invocation, reply, handoff));
        self.running = Some(Running {
            id,
            uninterruptible: event.event.uninterruptible,
            deadline: None,
            started: now,
            flow,
            event,
        });
        match said.outcome {
            Some(outcome) => self.complete(id, outcome, said.streamed, ctx),
            None => {
                if let Some(r) = &self.running {
                    self.send_commands(&r.flow, id, said.streamed);
                }
                let deadline = ctx.run_later(timeout, move |act, ctx| {
                    if act.running.as_ref().is_some_and(|r| r.id == id) {
                        act.abandon_running(InvocationOutcome::TimedOut, ctx);
                        act.start_next(ctx);
                    }
                });
                if let Some(r) = self.running.as_mut() {
                    r.deadline = Some(deadline);
                }
            }
        }
    }

    /// Ends the running invocation `id` with its outcome and last commands. The caller starts
    /// the next one.
    fn complete(
        &mut self,
        id: Uuid,
        outcome: Outcome,
        commands: Vec<Command>,
        ctx: &mut Context<Self>,
    ) {
        let Some(r) = self.running.take_if(|r| r.id == id) else {
            return;
        };
        if let Some(d) = r.deadline {
            ctx.cancel_future(d);
        }
        let flow = &r.flow;
        self.send_commands(flow, id, commands);
        flow.metrics
            .duration
            .record(r.started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Completed => flow.metrics.outcome(InvocationOutcome::Completed),
            Outcome::Failed { reason } => {
                flow.metrics.outcome(InvocationOutcome::Failed);
                dead_letter::record(
                    &*self.instances.deps.dead_letters,
                    DeadLetter::event(
                        DeadLetterReason::RunnerFailed,
                        format!(
                            "invocation {} of {}/{}: {reason}",
                            r.id, flow.flow.agent, flow.flow.flow
                        ),
                        r.event.event.clone(),
                        Some(r.event.persona),
                    ),
                );
            }
        }
    }

    fn send_commands(&self, flow: &Arc<FlowRoute>, invocation_id: Uuid, commands: Vec<Command>) {
        if commands.is_empty() {
            return;
        }
        let origin = Origin {
            persona: self.key.persona,
            flow: flow.clone(),
            invocation_id,
        };
        let router = &self.instances.deps.commands;
        for c in commands {
            router.send(&origin, c);
        }
    }
}

impl Actor for FlowInstance {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Only reachable with work left when the system shuts down: ask for redelivery.
        for p in self.pending.drain(..) {
            p.delivery.give_up();
        }
    }
}

impl Handler<Enqueue> for FlowInstance {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        self.received += 1;
        let p = Pending {
            event: msg.event,
            matched: msg.matched,
            delivery: msg.delivery,
            admitted_at: msg.admitted_at,
        };
        match p.matched.interrupt_mode {
            InterruptMode::Queue => {
                if self.pending.len() >= self.instances.deps.max_pending {
                    p.matched.flow.metrics.outcome(InvocationOutcome::Failed);
                    dead_letter::record(
                        &*self.instances.deps.dead_letters,
                        DeadLetter::event(
                            DeadLetterReason::FlowQueueFull,
                            format!(
                                "flow instance {}/{} holds {} pending events",
                                p.matched.flow.flow.agent,
                                p.matched.flow.flow.flow,
                                self.pending.len()
                            ),
                            p.event.event.clone(),
                            Some(p.event.persona),
                        ),
                    );
                } else {
                    self.pending.push_back(p);
                }
            }
            InterruptMode::Interrupt => {
                self.drop_pending(InvocationOutcome::Superseded);
                if self.running.as_ref().is_some_and(|r| !r.uninterruptible) {
                    self.abandon_running(InvocationOutcome::Interrupted, ctx);
                }
                // Runs now, or right after an uninterruptible invocation finishes.
                self.pending.push_back(p);
            }
            InterruptMode::Cancel => {
                if self.running.is_some() || !self.pending.is_empty() {
                    p.matched.flow.metrics.outcome(InvocationOutcome::Cancelled);
                    drop(p.delivery);
                } else {
                    self.pending.push_back(p);
                }
            }
        }
        self.instances
            .deps
            .metrics
            .queue_depth
            .record(self.pending.len() as f64);
        self.start_next(ctx);
    }
}

impl Handler<InvocationReport> for FlowInstance {
    type Result = ();

    fn handle(&mut self, msg: InvocationReport, ctx: &mut Context<Self>) {
        let current = self
            .running
            .as_ref()
            .filter(|r| r.id == msg.invocation_id)
            .map(|r| r.flow.clone());
        let Some(flow) = current else {
            // Interrupted, cancelled or timed out: its commands never leave.
            let commands = match msg.kind {
                ReportKind::Commands(c) => c,
                ReportKind::Finished { commands, .. } => commands,
            };
            for c in commands {
                handles::command(c.integration.as_str(), c.command.as_str(), "dropped");
            }
            return;
        };
        match msg.kind {
            ReportKind::Commands(commands) => {
                self.send_commands(&flow, msg.invocation_id, commands)
            }
            ReportKind::Finished { outcome, commands } => {
                self.complete(msg.invocation_id, outcome, commands, ctx);
                self.start_next(ctx);
            }
        }
    }
}

impl Handler<Inspect> for FlowInstance {
    type Result = actix::MessageResult<Inspect>;

    fn handle(&mut self, _msg: Inspect, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(FlowInstanceSnapshot {
            running: self.running.as_ref().map(|r| (r.id, r.event.event.id)),
            pending: self.pending.iter().map(|p| p.event.event.id).collect(),
        })
    }
}
