//! One flow instance: the execution queue of one flow for one user persona. It applies the
//! subscription's interrupt mode, runs one invocation at a time under a deadline, sends the
//! commands of the current invocation only, and asks to retire when idle. It is a state
//! machine driven by its shard ([`super::shard`]), which owns it, its timers and its inbox.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};
use uuid::Uuid;

use super::commands::Origin;
use super::directory::{FlowDeps, FlowInstanceKey};
use super::messages::{Enqueue, FlowInstanceSnapshot, ReportKind};
use super::shard::ShardAddr;
use crate::admission::delivery::Delivery;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason};
use crate::domain::{Command, Event, Idn, InterruptMode, Name, SharedEvent, SkillSelector};
use crate::invocation::{invoke_inline, Handoff, Invocation, InvocationSession, Outcome, Reply};
use crate::routing::index::{FlowRoute, Match};
use crate::telemetry::handles::{self, InvocationOutcome};

/// A timer of one flow instance, kept in its shard's delay queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The deadline of the invocation `invocation`.
    Deadline {
        key: FlowInstanceKey,
        invocation: Uuid,
    },
    /// Check whether the instance has been idle for the whole idle timeout.
    Idle { key: FlowInstanceKey },
}

/// What a flow instance reaches of its shard while it handles one message.
pub(crate) struct ShardCx<'a> {
    pub deps: &'a FlowDeps,
    pub timers: &'a mut DelayQueue<Timer>,
    pub reply_to: &'a ShardAddr,
    /// Read once per message.
    pub now: Instant,
}

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
    deadline: Option<delay_queue::Key>,
    started: Instant,
    flow: Arc<FlowRoute>,
    event: SharedEvent,
    /// Commands it sent so far: the next one's place in the invocation (see [`Origin::seq`]).
    sent: u32,
    /// The event's delivery, beside the runner's hand-off: it settles only once the
    /// invocation ended and the commands it sent are durable (each holds a clone), so an
    /// event acknowledged can no longer lose its answer.
    hold: Delivery,
}

/// The id of the invocation of `event` in `flow`: derived, so a replayed event gets the same
/// invocation id and a runner can tell a redelivery (an event reaches a flow once).
/// The parts are `(account, agent, flow)`, encoded once per flow.
fn invocation_id(event: &Uuid, flow: &FlowRoute) -> Uuid {
    crate::domain::derived_id::derive_encoded(event.as_bytes(), &flow.id_parts)
}

/// One flow instance `(account, agent, flow, user persona)`.
pub(crate) struct FlowInstance {
    key: FlowInstanceKey,
    running: Option<Running>,
    pending: VecDeque<Pending>,
    /// Whether an idle timer is in the shard's queue (see [`FlowInstance::arm_idle`]).
    idle_armed: bool,
    /// When the instance last ran out of work.
    idle_since: Instant,
}

impl FlowInstance {
    pub(crate) fn new(key: FlowInstanceKey, now: Instant) -> Self {
        FlowInstance {
            key,
            running: None,
            pending: VecDeque::new(),
            idle_armed: false,
            idle_since: now,
        }
    }

    /// Queues `msg` by its interrupt mode and starts what can start.
    pub(crate) fn enqueue(&mut self, msg: Enqueue, cx: &mut ShardCx<'_>) {
        let p = Pending {
            event: msg.event,
            matched: msg.matched,
            delivery: msg.delivery,
            admitted_at: msg.admitted_at,
        };
        match p.matched.interrupt_mode {
            InterruptMode::Queue => {
                // An event admission reserved room for always has it; the limit is for the
                // daemon's own events.
                if p.event.room.is_none() && self.pending.len() >= cx.deps.max_pending {
                    let holds = format!("{} pending events", self.pending.len());
                    queue_full(cx.deps, &p.matched, &p.event, "flow instance", &holds);
                } else {
                    self.pending.push_back(p);
                }
            }
            InterruptMode::Interrupt => {
                self.drop_pending(InvocationOutcome::Superseded);
                if self.running.as_ref().is_some_and(|r| !r.uninterruptible) {
                    self.abandon_running(InvocationOutcome::Interrupted, cx);
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
        cx.deps
            .metrics
            .queue_depth
            .record(self.pending.len() as f64);
        self.start_next(cx);
    }

    /// Handles a runner's report about invocation `invocation_id`.
    pub(crate) fn report(&mut self, invocation_id: Uuid, kind: ReportKind, cx: &mut ShardCx<'_>) {
        let Some(r) = self.running.as_mut().filter(|r| r.id == invocation_id) else {
            drop_stale(kind);
            return;
        };
        match kind {
            ReportKind::Commands(commands) => {
                let first = r.sent;
                r.sent += commands.len() as u32;
                let (flow, hold) = (r.flow.clone(), r.hold.clone());
                self.send_commands(&flow, invocation_id, first, commands, hold, cx)
            }
            ReportKind::Finished { outcome, commands } => {
                self.complete(invocation_id, outcome, commands, cx);
                self.start_next(cx);
            }
            ReportKind::Retrying { until } => self.extend_deadline(until, cx),
        }
    }

    /// The runner retries a failed attempt: the running invocation's deadline moves to `until`
    /// when that is later (the queue behind it waits).
    fn extend_deadline(&mut self, until: Instant, cx: &mut ShardCx<'_>) {
        let Some(deadline) = self.running.as_ref().and_then(|r| r.deadline) else {
            return;
        };
        if until > cx.timers.deadline(&deadline) {
            cx.timers.reset_at(&deadline, until);
        }
    }

    /// A timer of this instance fired. `true` means the instance retires: the shard drops it.
    pub(crate) fn fire(&mut self, timer: Timer, cx: &mut ShardCx<'_>) -> bool {
        match timer {
            Timer::Deadline { invocation, .. } => {
                if let Some(r) = self.running.as_mut().filter(|r| r.id == invocation) {
                    r.deadline = None; // it fired: no longer in the queue
                    self.abandon_running(InvocationOutcome::TimedOut, cx);
                    self.start_next(cx);
                }
                false
            }
            Timer::Idle { .. } => {
                self.idle_armed = false;
                if self.running.is_some() || !self.pending.is_empty() {
                    return false; // busy: start_next arms it again when the work is done
                }
                let timeout = cx.deps.idle_timeout;
                let idle_for = cx.now.saturating_duration_since(self.idle_since);
                if idle_for < timeout {
                    self.arm_idle(timeout - idle_for, cx);
                    false
                } else {
                    true
                }
            }
        }
    }

    pub(crate) fn snapshot(&self) -> FlowInstanceSnapshot {
        FlowInstanceSnapshot {
            running: self.running.as_ref().map(|r| (r.id, r.event.event.id)),
            pending: self.pending.iter().map(|p| p.event.event.id).collect(),
        }
    }

    /// The instance is going away with the system: its pending events ask for redelivery.
    pub(crate) fn give_up(self) {
        for p in self.pending {
            p.delivery.give_up();
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
    fn abandon_running(&mut self, outcome: InvocationOutcome, cx: &mut ShardCx<'_>) {
        if let Some(r) = self.running.take() {
            if let Some(d) = r.deadline {
                cx.timers.try_remove(&d);
            }
            r.flow.metrics.outcome(outcome);
            r.flow
                .metrics
                .duration
                .record(cx.now.saturating_duration_since(r.started).as_secs_f64());
            r.flow.runner.cancel(r.id, outcome.as_str());
            if outcome == InvocationOutcome::Interrupted {
                cx.deps.commands.supersede(&Origin {
                    persona: self.key.persona,
                    flow: r.flow.clone(),
                    invocation_id: r.id,
                    seq: r.sent,
                    hold: None,
                });
            }
        }
    }

    fn start_next(&mut self, cx: &mut ShardCx<'_>) {
        while self.running.is_none() {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            // Fenced: the partition it came from is another daemon's now, which has it again.
            if p.delivery.revoked() {
                metrics::counter!(crate::telemetry::metrics::EVENTS_FENCED_TOTAL).increment(1);
                p.delivery.give_up();
                continue;
            }
            self.start(p, cx);
        }
        if self.running.is_none() && self.pending.is_empty() {
            self.idle_since = cx.now;
            if !self.idle_armed {
                self.arm_idle(cx.deps.idle_timeout, cx);
            }
        }
    }

    /// One idle timer at a time, armed when the instance first goes idle and left in the queue
    /// while events come and go: when it fires the instance retires if it has been idle for the
    /// whole timeout, and otherwise re-arms for the rest. Arming and cancelling a timer per
    /// event would cost more than the rest of the instance's work.
    fn arm_idle(&mut self, after: Duration, cx: &mut ShardCx<'_>) {
        self.idle_armed = true;
        cx.timers
            .insert_at(Timer::Idle { key: self.key }, cx.now + after);
    }

    fn skill_of(&self, p: &Pending, cx: &ShardCx<'_>) -> Result<Name, String> {
        match p.matched.skill() {
            SkillSelector::Skill(s) => Ok(s.clone()),
            SkillSelector::FromState(field) => {
                let flow = &p.matched.flow.flow;
                match cx.deps.state.get(flow, field, self.key.persona) {
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

    /// The persona's live session on the event's connector.
    fn session_of(&self, inv: &Invocation, cx: &ShardCx<'_>) -> Option<InvocationSession> {
        let e = &inv.event.event;
        cx.deps
            .sessions
            .find(&inv.account, inv.persona, &e.integration, &e.connector)
            .map(|s| InvocationSession {
                id: s.id,
                integration: s.integration,
                connector: s.connector,
                started_at: s.started_at,
            })
    }

    fn start(&mut self, p: Pending, cx: &mut ShardCx<'_>) {
        let skill = match self.skill_of(&p, cx) {
            Ok(s) => s,
            Err(detail) => {
                p.matched.flow.metrics.outcome(InvocationOutcome::NoSkill);
                dead_letter::record(
                    &*cx.deps.dead_letters,
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
            session: None,
        };
        let invocation = if flow.runner.wants_session() {
            Invocation {
                session: self.session_of(&invocation, cx),
                ..invocation
            }
        } else {
            invocation
        };
        let timeout = flow.invocation_timeout;
        cx.deps
            .metrics
            .dispatch_latency
            .record(cx.now.saturating_duration_since(admitted_at).as_secs_f64());
        let reply = Reply::new(cx.reply_to.clone(), self.key, id);
        // The runner lets go of the delivery once it really has the invocation; the running
        // invocation holds it too, until it ends and its commands are durable.
        let hold = delivery.clone();
        let handoff = Handoff::new(delivery);
        let said = invoke_inline(id, || flow.runner.invoke(invocation, reply, handoff));
        self.running = Some(Running {
            id,
            uninterruptible: event.event.uninterruptible,
            deadline: None,
            started: cx.now,
            flow,
            event,
            sent: 0,
            hold,
        });
        match said.outcome {
            Some(outcome) => self.complete(id, outcome, said.streamed, cx),
            None => {
                let deadline = cx.timers.insert_at(
                    Timer::Deadline {
                        key: self.key,
                        invocation: id,
                    },
                    cx.now + timeout,
                );
                if let Some(r) = self.running.as_mut() {
                    r.deadline = Some(deadline);
                    r.sent = said.streamed.len() as u32;
                    let (flow, hold) = (r.flow.clone(), r.hold.clone());
                    self.send_commands(&flow, id, 0, said.streamed, hold, cx);
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
        cx: &mut ShardCx<'_>,
    ) {
        let Some(r) = self.running.take_if(|r| r.id == id) else {
            return;
        };
        if let Some(d) = r.deadline {
            cx.timers.try_remove(&d);
        }
        let flow = &r.flow;
        self.send_commands(flow, id, r.sent, commands, r.hold.clone(), cx);
        flow.metrics
            .duration
            .record(cx.now.saturating_duration_since(r.started).as_secs_f64());
        let gone = matches!(outcome, Outcome::RunnerGone { .. });
        match outcome {
            Outcome::Completed => flow.metrics.outcome(InvocationOutcome::Completed),
            Outcome::Fenced => flow.metrics.outcome(InvocationOutcome::Fenced),
            Outcome::Failed { reason } | Outcome::RunnerGone { reason } => {
                flow.metrics.outcome(InvocationOutcome::Failed);
                dead_letter::record(
                    &*cx.deps.dead_letters,
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
        if gone {
            // The flows hear of it as of any system event on `system/system`, for the same
            // persona.
            let system = Idn::known("system");
            let mut notice = Event::for_persona(
                flow.flow.account.clone(),
                system.clone(),
                system,
                Idn::known("runner_disabled"),
                self.key.persona,
            );
            let a = &mut notice.arguments;
            a.push("agentIdn", flow.flow.agent.as_str());
            a.push("flowIdn", flow.flow.flow.as_str());
            a.push("reason", "the webhook runner answered HTTP 410 Gone");
            cx.deps.events.emit(notice);
        }
    }

    /// Sends `commands` of invocation `invocation_id`, the first of them its `first`-th.
    fn send_commands(
        &self,
        flow: &Arc<FlowRoute>,
        invocation_id: Uuid,
        first: u32,
        commands: Vec<Command>,
        hold: Delivery,
        cx: &ShardCx<'_>,
    ) {
        if commands.is_empty() {
            return;
        }
        let mut origin = Origin {
            persona: self.key.persona,
            flow: flow.clone(),
            invocation_id,
            seq: first,
            hold: Some(hold),
        };
        for c in commands {
            cx.deps.commands.send(&origin, c);
            origin.seq += 1;
        }
    }
}

/// Records an event that found no room (`flow_queue_full`): `place` (an instance, a shard)
/// `holds` what it holds.
pub(crate) fn queue_full(
    deps: &FlowDeps,
    matched: &Match,
    event: &SharedEvent,
    place: &str,
    holds: &str,
) {
    let flow = &matched.flow.flow;
    matched.flow.metrics.outcome(InvocationOutcome::Failed);
    dead_letter::record(
        &*deps.dead_letters,
        DeadLetter::event(
            DeadLetterReason::FlowQueueFull,
            format!("{place} of {}/{} holds {holds}", flow.agent, flow.flow),
            event.event.clone(),
            Some(event.persona),
        ),
    );
}

/// The commands of an invocation that was interrupted, cancelled or timed out never leave.
pub(crate) fn drop_stale(kind: ReportKind) {
    let commands = match kind {
        ReportKind::Commands(c) => c,
        ReportKind::Finished { commands, .. } => commands,
        ReportKind::Retrying { .. } => return,
    };
    let catalog = crate::catalog::Catalog::builtin();
    for c in commands {
        // Bounded labels: what a skill names is not trusted to be a known command.
        let (integration, command) =
            catalog.command_labels(c.integration.as_str(), c.command.as_str());
        handles::command(integration, command, "dropped");
    }
}

#[cfg(test)]
mod tests;
