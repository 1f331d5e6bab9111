//! One flow instance driven as its shard drives it: events enqueued by interrupt mode, runner
//! reports handed back, timers taken from the delay queue on tokio's paused clock. The runner
//! is manual (the test finishes invocations), the command port and the report sink record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use uuid::Uuid;

use super::*;
use crate::admission::delivery::{Settle, Settlement};
use crate::dead_letter::memory::MemoryDeadLetters;
use crate::dead_letter::DeadLetterPayload;
use crate::domain::{
    Event, FlowId, Idn, PersonaId, RoutedEvent, RunnerSpec, ScopeKey, Subscription,
};
use crate::flow_instance::commands::CommandPort;
use crate::flow_instance::state::StateStore;
use crate::invocation::{InvocationReport, ReportSink, SkillRunner};
use crate::session::SessionTable;
use crate::telemetry::handles::EngineMetrics;
use crate::telemetry::metrics as m;

const TIMEOUT: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(60);

/// Subscriptions of the test flow, by position.
const QUEUE: u32 = 0;
const INTERRUPT: u32 = 1;
const CANCEL: u32 = 2;
const FROM_STATE: u32 = 3;

/// A runner the test finishes by hand; or, when `inline` is set, one that answers inside
/// `invoke` as in-process runners do.
#[derive(Default)]
struct ManualRunner {
    invoked: Mutex<Vec<(Invocation, Reply)>>,
    cancelled: Mutex<Vec<Uuid>>,
    inline: Mutex<Option<Vec<Command>>>,
    wants_session: bool,
}

impl ManualRunner {
    /// The invocations handed over so far, oldest first, with their replies.
    fn take(&self) -> Vec<(Invocation, Reply)> {
        std::mem::take(&mut self.invoked.lock().unwrap())
    }

    fn cancelled(&self) -> Vec<Uuid> {
        self.cancelled.lock().unwrap().clone()
    }
}

impl SkillRunner for ManualRunner {
    fn invoke(&self, invocation: Invocation, reply: Reply, handoff: Handoff) {
        handoff.done(); // handed over at once, as in-process runners do
        let inline = self.inline.lock().unwrap().clone();
        match inline {
            Some(commands) => {
                reply.commands(vec![commands[0].clone()]);
                reply.finish(Outcome::Completed, commands[1..].to_vec());
                self.invoked
                    .lock()
                    .unwrap()
                    .push((invocation, reply_stub()));
            }
            None => self.invoked.lock().unwrap().push((invocation, reply)),
        }
    }

    fn cancel(&self, invocation_id: Uuid, _reason: &'static str) {
        self.cancelled.lock().unwrap().push(invocation_id);
    }

    fn wants_session(&self) -> bool {
        self.wants_session
    }
}

/// A reply nobody reads (for invocations answered inline).
fn reply_stub() -> Reply {
    Reply::new(
        Arc::new(Reports::default()),
        FlowInstanceKey {
            flow: FlowId(0),
            persona: PersonaId::UNRESOLVED,
        },
        Uuid::nil(),
    )
}

/// The shard's side of the reports: recorded, handed to the instance by [`World::pump`].
#[derive(Default)]
struct Reports(Mutex<Vec<InvocationReport>>);

impl ReportSink for Reports {
    fn report(&self, report: InvocationReport) {
        self.0.lock().unwrap().push(report);
    }
}

/// Records every command with the invocation it came from, and its act id; holds each
/// command's hold on its event's delivery until [`Port::store`] (a sink making it durable).
#[derive(Default)]
struct Port(
    Mutex<Vec<(Uuid, PersonaId, String)>>,
    Mutex<Vec<Uuid>>,
    Mutex<Vec<Option<Delivery>>>,
);

impl CommandPort for Port {
    fn send(&self, origin: &Origin, command: Command) -> Uuid {
        let text = command.arguments.get("text").unwrap_or_default().to_owned();
        self.0
            .lock()
            .unwrap()
            .push((origin.invocation_id, origin.persona, text));
        let act = origin.act_id();
        self.1.lock().unwrap().push(act);
        self.2.lock().unwrap().push(origin.hold.clone());
        act
    }
}

impl Port {
    /// The commands sent so far are durable: their holds let go.
    fn store(&self) {
        self.2.lock().unwrap().clear();
    }

    fn acts(&self) -> Vec<Uuid> {
        self.1.lock().unwrap().clone()
    }

    fn sent(&self) -> Vec<(Uuid, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _, text)| (*id, text.clone()))
            .collect()
    }
}

type Settled = Arc<Mutex<Vec<(String, Settlement)>>>;

struct World {
    deps: FlowDeps,
    timers: DelayQueue<Timer>,
    reports: Arc<Reports>,
    reply_to: ShardAddr,
    runner: Arc<ManualRunner>,
    port: Arc<Port>,
    dead: Arc<MemoryDeadLetters>,
    flow: Arc<FlowRoute>,
    persona: PersonaId,
    key: FlowInstanceKey,
    settled: Settled,
    metrics: Snapshotter,
    counted: Mutex<std::collections::HashMap<String, u64>>,
}

impl World {
    fn new(max_pending: usize) -> World {
        World::with_runner(max_pending, ManualRunner::default())
    }

    fn with_runner(max_pending: usize, runner: ManualRunner) -> World {
        let runner = Arc::new(runner);
        let port = Arc::new(Port::default());
        let dead = Arc::new(MemoryDeadLetters::new(100));
        let sub = |event: &str, skill: SkillSelector, mode| Subscription {
            event: Idn::known(event),
            integration: Some(Idn::known("api")),
            connector: None,
            skill,
            interrupt_mode: mode,
        };
        let by_name = |s: &str| SkillSelector::Skill(Name::known(s));
        let flow = crate::domain::Flow {
            account: Idn::known("default"),
            agent: Name::known("Agent"),
            flow: Name::known("Main"),
            runner: RunnerSpec::Default,
            invocation_timeout: Some(TIMEOUT),
            state_fields: Vec::new(),
            subscriptions: vec![
                sub("q_event", by_name("Queued"), InterruptMode::Queue),
                sub("i_event", by_name("Interrupting"), InterruptMode::Interrupt),
                sub("c_event", by_name("Cancelling"), InterruptMode::Cancel),
                sub(
                    "s_event",
                    SkillSelector::FromState(Idn::known("next_skill")),
                    InterruptMode::Queue,
                ),
            ],
        };
        // The flow's outcome counters go to a recorder of this test alone.
        let recorder = DebuggingRecorder::new();
        let metrics = recorder.snapshotter();
        let flow = metrics::with_local_recorder(&recorder, || {
            Arc::new(FlowRoute::new(FlowId(1), flow, runner.clone(), TIMEOUT))
        });
        let persona = PersonaId::derive(&Idn::known("default"), &Idn::known("api"), "alice");
        let reports = Arc::new(Reports::default());
        World {
            deps: FlowDeps {
                state: Arc::new(StateStore::default()),
                commands: port.clone(),
                sessions: Arc::new(SessionTable::default()),
                dead_letters: dead.clone(),
                events: crate::ingress::InternalEvents::new(16, dead.clone()).0,
                metrics: Arc::new(EngineMetrics::new()),
                max_pending,
                idle_timeout: IDLE,
            },
            timers: DelayQueue::new(),
            reply_to: reports.clone(),
            reports,
            runner,
            port,
            dead,
            flow,
            persona,
            key: FlowInstanceKey {
                flow: FlowId(1),
                persona,
            },
            settled: Arc::default(),
            metrics,
            counted: Mutex::default(),
        }
    }

    fn cx(&mut self) -> ShardCx<'_> {
        ShardCx {
            deps: &self.deps,
            timers: &mut self.timers,
            reply_to: &self.reply_to,
            now: Instant::now(),
        }
    }

    fn instance(&self) -> FlowInstance {
        FlowInstance::new(self.key, Instant::now())
    }

    /// An event of alice on `api/webhook`, labelled `label` in the settlements.
    fn event(&self, name: &str) -> SharedEvent {
        Arc::new(RoutedEvent::named(Event::from_actor(
            Idn::known("default"),
            Idn::known("api"),
            Idn::known("webhook"),
            Idn::known(name),
            "alice",
        )))
    }

    /// Enqueues `event` as matched by the subscription at `position`; its delivery reports to
    /// `settled` under `label`.
    fn enqueue(&mut self, inst: &mut FlowInstance, label: &str, event: SharedEvent, position: u32) {
        let settled = self.settled.clone();
        let label = label.to_owned();
        let source: Box<dyn Settle> =
            Box::new(move |s: Settlement| settled.lock().unwrap().push((label.clone(), s)));
        let msg = Enqueue {
            key: self.key,
            event,
            matched: Match {
                flow_id: self.flow.id,
                flow: self.flow.clone(),
                position,
                interrupt_mode: self.flow.flow.subscriptions[position as usize].interrupt_mode,
            },
            delivery: Delivery::new(Some(source), None),
            admitted_at: Instant::now(),
        };
        inst.enqueue(msg, &mut self.cx());
    }

    /// Enqueues a new event named after the subscription at `position`; returns its id.
    fn send(&mut self, inst: &mut FlowInstance, label: &str, position: u32) -> Uuid {
        let name = self.flow.flow.subscriptions[position as usize]
            .event
            .clone();
        let event = self.event(name.as_str());
        let id = event.event.id;
        self.enqueue(inst, label, event, position);
        id
    }

    /// Hands the reports runners made since the last call to the instance, as the shard does.
    fn pump(&mut self, inst: &mut FlowInstance) {
        let reports = std::mem::take(&mut *self.reports.0.lock().unwrap());
        for r in reports {
            assert_eq!(r.key, self.key);
            inst.report(r.invocation_id, r.kind, &mut self.cx());
        }
    }

    /// Waits (on the paused clock, which jumps ahead when nothing else can run) for the next
    /// timer of the shard's queue and hands it to the instance; returns the timer and whether
    /// the instance retires.
    async fn next_timer(&mut self, inst: &mut FlowInstance) -> (Timer, bool) {
        let timers = &mut self.timers;
        let expired = std::future::poll_fn(|task| timers.poll_expired(task))
            .await
            .expect("a timer is armed");
        let timer = expired.into_inner();
        let retire = inst.fire(timer, &mut self.cx());
        (timer, retire)
    }

    fn settled(&self) -> Vec<(String, Settlement)> {
        self.settled.lock().unwrap().clone()
    }

    fn dead_letters(&self) -> Vec<(&'static str, Uuid, String)> {
        self.dead
            .all()
            .into_iter()
            .map(|d| {
                let DeadLetterPayload::Event { event, persona } = d.payload else {
                    panic!("an event's dead letter");
                };
                assert_eq!(persona, Some(self.persona));
                (d.reason.code(), event.id, d.detail)
            })
            .collect()
    }

    /// How many invocations of the flow ended in `outcome` so far. (A snapshot takes the
    /// counts it reads: they are added up here.)
    fn outcomes(&self, outcome: &str) -> u64 {
        let mut counted = self.counted.lock().unwrap();
        for (k, _, _, v) in self.metrics.snapshot().into_vec() {
            let key = k.key();
            let label = key.labels().find(|l| l.key() == "outcome");
            if let (true, Some(label), DebugValue::Counter(n)) =
                (key.name() == m::INVOCATIONS_TOTAL, label, v)
            {
                *counted.entry(label.value().to_owned()).or_default() += n;
            }
        }
        counted.get(outcome).copied().unwrap_or(0)
    }
}

fn say(text: &str) -> Command {
    Command::new(
        Idn::known("default"),
        Idn::known("telegram"),
        Idn::known("bot"),
        Idn::known("send_message"),
    )
    .with_argument("text", text)
}

/// A timer fires at its instant, give or take the millisecond the timer wheel rounds to.
fn assert_near(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed < expected + Duration::from_millis(5),
        "fired after {elapsed:?}, expected {expected:?}"
    );
}

fn done(label: &str) -> (String, Settlement) {
    (label.to_owned(), Settlement::Done)
}

#[tokio::test(start_paused = true)]
async fn queue_runs_one_invocation_at_a_time_in_arrival_order() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let ids: Vec<Uuid> = ["a", "b", "c"]
        .iter()
        .map(|l| w.send(&mut inst, l, QUEUE))
        .collect();
    let started = w.runner.take();
    assert_eq!(started.len(), 1, "one invocation at a time");
    let (inv, reply) = started.into_iter().next().unwrap();
    assert_eq!(inv.event.event.id, ids[0]);
    assert_eq!(inv.skill.as_str(), "Queued");
    assert_eq!(inv.persona, w.persona);
    assert_eq!(inv.timeout, TIMEOUT);
    assert_eq!(
        inv.id,
        invocation_id(&ids[0], &w.flow),
        "derived from event and flow"
    );
    assert_eq!(inst.snapshot().running, Some((inv.id, ids[0])));
    assert_eq!(inst.snapshot().pending, ids[1..]);
    assert_eq!(w.timers.len(), 1, "the running invocation's deadline");
    // Handed over at once, but held while it runs (its answer is not durable yet).
    assert!(w.settled().is_empty(), "{:?}", w.settled());

    // Commands streamed while running leave at once; the last ones with the outcome.
    reply.commands(vec![say("one")]);
    w.pump(&mut inst);
    reply.finish(Outcome::Completed, vec![say("two")]);
    w.pump(&mut inst);
    assert_eq!(
        w.port.sent(),
        [(inv.id, "one".to_owned()), (inv.id, "two".to_owned())]
    );
    // Ended, but settled only once the commands it sent are durable.
    assert!(w.settled().is_empty(), "{:?}", w.settled());
    w.port.store();
    assert_eq!(w.settled(), [done("a")]);
    for id in &ids[1..] {
        let mut started = w.runner.take();
        assert_eq!(started.len(), 1);
        let (inv, reply) = started.remove(0);
        assert_eq!(inv.event.event.id, *id);
        reply.finish(Outcome::Completed, Vec::new());
        w.pump(&mut inst);
    }
    assert_eq!(w.settled(), [done("a"), done("b"), done("c")]);
    assert_eq!(w.outcomes("completed"), 3);
    assert_eq!(inst.snapshot().running, None);
    assert!(inst.snapshot().pending.is_empty());
    assert_eq!(w.timers.len(), 1, "deadlines removed; the idle timer armed");
    assert!(w.dead.is_empty());
}

#[tokio::test(start_paused = true)]
async fn queue_dead_letters_an_event_past_max_pending() {
    let mut w = World::new(2);
    let mut inst = w.instance();
    let running = w.send(&mut inst, "running", QUEUE);
    let kept: Vec<Uuid> = ["p1", "p2"]
        .iter()
        .map(|l| w.send(&mut inst, l, QUEUE))
        .collect();
    let refused = w.send(&mut inst, "refused", QUEUE);
    let s = inst.snapshot();
    assert_eq!(s.running.map(|r| r.1), Some(running));
    assert_eq!(s.pending, kept, "the refused event is not queued");
    let dead = w.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "flow_queue_full");
    assert_eq!(dead[0].1, refused);
    assert!(
        dead[0].2.contains("Agent/Main") && dead[0].2.contains("2 pending events"),
        "{}",
        dead[0].2
    );
    // Recorded as a dead letter: its delivery settles, as an answer.
    assert_eq!(w.settled(), [done("refused")], "the running one is held");
    assert_eq!(w.outcomes("failed"), 1);
    // Room again once the running one is done and the next started.
    let (_, reply) = w.runner.take().remove(0);
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);
    let again = w.send(&mut inst, "again", QUEUE);
    assert_eq!(inst.snapshot().pending, vec![kept[1], again]);
    assert_eq!(w.dead.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn interrupt_supersedes_pending_and_interrupts_the_running_invocation() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    w.send(&mut inst, "first", QUEUE);
    let (first, first_reply) = w.runner.take().remove(0);
    w.send(&mut inst, "p1", QUEUE);
    w.send(&mut inst, "p2", QUEUE);
    let barge = w.send(&mut inst, "barge", INTERRUPT);

    assert_eq!(w.runner.cancelled(), [first.id], "the runner is told");
    let mut started = w.runner.take();
    assert_eq!(started.len(), 1);
    let (inv, reply) = started.remove(0);
    assert_eq!(inv.event.event.id, barge, "the interrupting event runs now");
    assert_eq!(inv.skill.as_str(), "Interrupting");
    assert_eq!(inst.snapshot().running, Some((inv.id, barge)));
    assert!(inst.snapshot().pending.is_empty());
    assert_eq!(w.timers.len(), 1, "the interrupted deadline left the queue");
    // Superseded events settle as an outcome, never invoked; the interrupted one too; the
    // interrupting one is held while it runs.
    assert_eq!(w.settled(), [done("p1"), done("p2"), done("first")]);
    assert_eq!(w.outcomes("superseded"), 2);
    assert_eq!(w.outcomes("interrupted"), 1);

    // The interrupted run's late commands never leave; the new run's do.
    first_reply.finish(Outcome::Completed, vec![say("stale")]);
    w.pump(&mut inst);
    reply.finish(Outcome::Completed, vec![say("fresh")]);
    w.pump(&mut inst);
    assert_eq!(w.port.sent(), [(inv.id, "fresh".to_owned())]);
    assert_eq!(w.outcomes("completed"), 1);
    assert!(w.dead.is_empty());
}

#[tokio::test(start_paused = true)]
async fn interrupt_waits_for_an_uninterruptible_invocation() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let mut event = Event::from_actor(
        Idn::known("default"),
        Idn::known("api"),
        Idn::known("webhook"),
        Idn::known("q_event"),
        "alice",
    );
    event.uninterruptible = true;
    w.enqueue(
        &mut inst,
        "solid",
        Arc::new(RoutedEvent::named(event)),
        QUEUE,
    );
    let (solid, reply) = w.runner.take().remove(0);
    w.send(&mut inst, "pending", QUEUE);
    let barge = w.send(&mut inst, "barge", INTERRUPT);

    assert!(w.runner.cancelled().is_empty(), "not interrupted");
    assert!(w.runner.take().is_empty(), "nothing else runs meanwhile");
    let s = inst.snapshot();
    assert_eq!(s.running.map(|r| r.0), Some(solid.id));
    assert_eq!(s.pending, [barge], "the pending event was superseded");
    assert_eq!(w.outcomes("superseded"), 1);

    reply.finish(Outcome::Completed, vec![say("kept")]);
    w.pump(&mut inst);
    assert_eq!(w.port.sent(), [(solid.id, "kept".to_owned())]);
    let (next, _) = w.runner.take().remove(0);
    assert_eq!(next.event.event.id, barge, "runs right after");
}

#[tokio::test(start_paused = true)]
async fn cancel_drops_the_new_event_while_busy_and_runs_it_when_idle() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let idle_run = w.send(&mut inst, "idle", CANCEL);
    let (inv, reply) = w.runner.take().remove(0);
    assert_eq!(inv.event.event.id, idle_run, "an idle instance runs it");
    assert_eq!(inv.skill.as_str(), "Cancelling");

    // Busy running: dropped.
    w.send(&mut inst, "while_running", CANCEL);
    assert!(w.runner.take().is_empty());
    assert!(inst.snapshot().pending.is_empty());
    // Busy with pending events too: dropped, and what was pending stays.
    let queued = w.send(&mut inst, "queued", QUEUE);
    w.send(&mut inst, "while_pending", CANCEL);
    assert_eq!(inst.snapshot().pending, [queued]);
    assert!(w.runner.cancelled().is_empty(), "nothing was interrupted");
    assert_eq!(w.outcomes("cancelled"), 2);
    assert_eq!(
        w.settled(),
        [done("while_running"), done("while_pending")],
        "the running one is held"
    );
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);
    let (next, _) = w.runner.take().remove(0);
    assert_eq!(next.event.event.id, queued);
    assert!(w.dead.is_empty(), "cancelled is an outcome, not a failure");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_times_out_the_running_invocation_and_starts_the_next() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let t0 = Instant::now();
    w.send(&mut inst, "slow", QUEUE);
    let next = w.send(&mut inst, "next", QUEUE);
    let (slow, slow_reply) = w.runner.take().remove(0);

    let (timer, retire) = w.next_timer(&mut inst).await;
    assert_eq!(
        timer,
        Timer::Deadline {
            key: w.key,
            invocation: slow.id
        }
    );
    assert!(!retire);
    assert_near(Instant::now() - t0, TIMEOUT);
    assert_eq!(w.runner.cancelled(), [slow.id]);
    assert_eq!(w.outcomes("timed_out"), 1);
    let (inv, reply) = w.runner.take().remove(0);
    assert_eq!(inv.event.event.id, next, "the next event starts at once");

    // The timed-out run's answer comes too late: its commands never leave.
    slow_reply.finish(Outcome::Completed, vec![say("late")]);
    w.pump(&mut inst);
    assert_eq!(inst.snapshot().running, Some((inv.id, next)));
    reply.finish(Outcome::Completed, vec![say("on time")]);
    w.pump(&mut inst);
    assert_eq!(w.port.sent(), [(inv.id, "on time".to_owned())]);
    assert_eq!(w.outcomes("completed"), 1);

    // A deadline of an invocation that is no longer running does nothing.
    let stale = Timer::Deadline {
        key: w.key,
        invocation: slow.id,
    };
    assert!(!inst.fire(stale, &mut w.cx()));
    assert_eq!(w.runner.cancelled(), [slow.id]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_instance_retires_after_the_idle_timeout() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let t0 = Instant::now();
    w.send(&mut inst, "a", QUEUE);
    let (_, reply) = w.runner.take().remove(0);
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);
    assert_eq!(w.timers.len(), 1, "the idle timer replaced the deadline");

    // Activity half-way through: the timer, still armed for t0 + IDLE, re-arms for the rest.
    tokio::time::advance(IDLE / 2).await;
    w.send(&mut inst, "b", QUEUE);
    let (_, reply) = w.runner.take().remove(0);
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);

    let (timer, retire) = w.next_timer(&mut inst).await;
    assert_eq!(timer, Timer::Idle { key: w.key });
    assert_near(Instant::now() - t0, IDLE);
    assert!(!retire, "idle for half the timeout only");
    let (timer, retire) = w.next_timer(&mut inst).await;
    assert_eq!(timer, Timer::Idle { key: w.key });
    assert_near(Instant::now() - t0, IDLE + IDLE / 2);
    assert!(retire, "idle for the whole timeout");
}

#[tokio::test(start_paused = true)]
async fn a_busy_instance_does_not_retire() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    w.send(&mut inst, "a", QUEUE);
    let (_, reply) = w.runner.take().remove(0);
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);
    // Busy again when the idle timer fires: it is not re-armed while busy...
    tokio::time::advance(IDLE - Duration::from_secs(1)).await;
    w.send(&mut inst, "b", QUEUE);
    let (timer, retire) = w.next_timer(&mut inst).await;
    assert_eq!(timer, Timer::Idle { key: w.key });
    assert!(!retire);
    assert!(inst.snapshot().running.is_some());
    // ... and when the work ends ...
    let (_, reply) = w.runner.take().remove(0);
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);
    // ... it is armed again, for a whole timeout.
    let done_at = Instant::now();
    let (timer, retire) = w.next_timer(&mut inst).await;
    assert_eq!(timer, Timer::Idle { key: w.key });
    assert_near(Instant::now() - done_at, IDLE);
    assert!(retire);
}

#[tokio::test(start_paused = true)]
async fn an_answer_inside_invoke_completes_without_a_deadline() {
    let runner = ManualRunner {
        inline: Mutex::new(Some(vec![say("streamed"), say("last")])),
        ..ManualRunner::default()
    };
    let mut w = World::with_runner(10, runner);
    let mut inst = w.instance();
    w.send(&mut inst, "a", QUEUE);
    w.send(&mut inst, "b", QUEUE);
    let invoked = w.runner.take();
    assert_eq!(
        invoked.len(),
        2,
        "each finished inside invoke, so the next ran at once"
    );
    assert!(
        w.reports.0.lock().unwrap().is_empty(),
        "no report went through the shard"
    );
    let sent: Vec<String> = w.port.sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(sent, ["streamed", "last", "streamed", "last"]);
    let (first, second) = (invoked[0].0.id, invoked[1].0.id);
    let by: Vec<Uuid> = w.port.sent().into_iter().map(|(id, _)| id).collect();
    assert_eq!(by, [first, first, second, second]);
    assert_eq!(inst.snapshot().running, None);
    assert_eq!(w.timers.len(), 1, "only the idle timer");
    assert_eq!(w.outcomes("completed"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_invocation_is_dead_lettered_and_the_next_starts() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let failing = w.send(&mut inst, "failing", QUEUE);
    let next = w.send(&mut inst, "next", QUEUE);
    let (inv, reply) = w.runner.take().remove(0);
    reply.finish(
        Outcome::Failed {
            reason: "skill crashed".into(),
        },
        vec![say("partial")],
    );
    w.pump(&mut inst);
    assert_eq!(
        w.port.sent(),
        [(inv.id, "partial".to_owned())],
        "its commands still leave"
    );
    let dead = w.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].0, dead[0].1), ("runner_failed", failing));
    assert!(dead[0].2.contains("skill crashed"), "{}", dead[0].2);
    assert_eq!(w.outcomes("failed"), 1);
    assert_eq!(w.runner.take()[0].0.event.event.id, next);
}

#[tokio::test(start_paused = true)]
async fn a_skill_from_state_without_a_value_is_dead_lettered_as_no_skill() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    let missing = w.send(&mut inst, "missing", FROM_STATE);
    let next = w.send(&mut inst, "next", QUEUE);
    let dead = w.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].0, dead[0].1), ("no_skill", missing));
    assert!(dead[0].2.contains("next_skill"), "{}", dead[0].2);
    assert_eq!(w.outcomes("no_skill"), 1);
    let (inv, reply) = w.runner.take().remove(0);
    assert_eq!(inv.event.event.id, next, "the instance went on");
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);

    // With a value, the skill named by the state runs.
    w.deps.state.set(
        &w.flow.flow,
        Idn::known("next_skill"),
        crate::flow_instance::state::StateOwner::User(w.persona),
        "FromState".into(),
    );
    w.send(&mut inst, "stated", FROM_STATE);
    let (inv, _) = w.runner.take().remove(0);
    assert_eq!(inv.skill.as_str(), "FromState");
}

#[tokio::test(start_paused = true)]
async fn reports_of_another_invocation_are_dropped() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    w.send(&mut inst, "a", QUEUE);
    let (inv, _reply) = w.runner.take().remove(0);
    inst.report(
        Uuid::now_v7(),
        ReportKind::Finished {
            outcome: Outcome::Completed,
            commands: vec![say("stranger")],
        },
        &mut w.cx(),
    );
    assert!(w.port.sent().is_empty());
    assert_eq!(
        inst.snapshot().running.map(|r| r.0),
        Some(inv.id),
        "still running"
    );
}

#[tokio::test(start_paused = true)]
async fn the_live_session_is_attached_for_runners_that_want_it() {
    let runner = ManualRunner {
        wants_session: true,
        ..ManualRunner::default()
    };
    let mut w = World::with_runner(10, runner);
    let mut inst = w.instance();
    w.send(&mut inst, "no_session", QUEUE);
    let (inv, reply) = w.runner.take().remove(0);
    assert_eq!(inv.session, None, "no live session yet");
    reply.finish(Outcome::Completed, Vec::new());
    w.pump(&mut inst);

    let scope = ScopeKey::new(
        Idn::known("default"),
        Idn::known("api"),
        Idn::known("webhook"),
    );
    let (started, _) = w.deps.sessions.touch(
        &scope,
        "none",
        w.persona,
        Instant::now(),
        Some("alice"),
        None,
    );
    w.send(&mut inst, "in_session", QUEUE);
    let (inv, _) = w.runner.take().remove(0);
    let session = inv.session.expect("the live session");
    assert_eq!(Some(session.id), started);
    assert_eq!(session.integration.as_str(), "api");
    assert_eq!(session.connector.as_str(), "webhook");
}

#[tokio::test(start_paused = true)]
async fn giving_up_asks_for_redelivery_of_pending_events() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    w.send(&mut inst, "running", QUEUE);
    w.send(&mut inst, "pending", QUEUE);
    inst.give_up();
    assert_eq!(
        w.settled(),
        [
            ("pending".to_owned(), Settlement::Redeliver),
            done("running")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_invocation_s_commands_get_acts_derived_from_it_and_their_place() {
    let mut w = World::new(10);
    let mut inst = w.instance();
    w.send(&mut inst, "a", QUEUE);
    let (inv, reply) = w.runner.take().remove(0);
    reply.commands(vec![say("one"), say("two")]);
    w.pump(&mut inst);
    reply.finish(Outcome::Completed, vec![say("three")]);
    w.pump(&mut inst);
    let acts = w.port.acts();
    let expected: Vec<Uuid> = (0..3u32)
        .map(|seq| {
            crate::domain::derived_id::derive(b"act", &[inv.id.as_bytes(), &seq.to_le_bytes()])
        })
        .collect();
    assert_eq!(acts, expected, "numbered across the streamed and the last");

    // The same event again (a redelivery, here or on the daemon that took its partition):
    // the same invocation id, so the same acts, which the commands stream drops as repeats.
    let mut again = w.instance();
    w.enqueue(&mut again, "a again", inv.event.clone(), QUEUE);
    let (inv2, reply2) = w.runner.take().remove(0);
    assert_eq!(inv2.id, inv.id);
    reply2.finish(
        Outcome::Completed,
        vec![say("one"), say("two"), say("three")],
    );
    w.pump(&mut again);
    assert_eq!(w.port.acts()[3..], expected[..]);
}
