//! The timer service: one task that owns the soon-due window of timers and fires them. Commands
//! reach it in order through a bounded queue; every change is written to the [`Book`] before it
//! is answered. Only timers due within `window` are held in memory (a map ordered by due time),
//! refilled from the book as time moves on, so a million pending timers cost their rows on
//! disk, not a million entries here.
//!
//! Firing: a due timer's event is emitted through the internal-events sink at once (with NATS,
//! appended to the events stream, signed as the daemon's, so the persona's partition owner
//! routes it), and the timer moves on in memory (a repeating timer re-arms from its schedule,
//! so it never drifts). In the book it moves on only once the event was handed on (with NATS:
//! once the stream stored it), many moves to a transaction: the timer's row is the firing's
//! record. A crash before the move committed finds the timer still
//! due at the next start, where every timer found due fires marked `redelivered`, with the same
//! event id. So a firing is lost never, and repeated only marked; and it costs the store one
//! write, off the firing's path. Until its move committed a firing is *outstanding* (see
//! [`Outstanding`]): firing waits while [`MAX_UNSETTLED`] are held by flows, or
//! [`MAX_UNMOVED`] wait for the store.
//!
//! Loading: each load reads the timers past the window's horizon and due within `window` (at
//! most `load_limit`, in the order of due time, then key), while firing goes on; commands,
//! session ends and committed moves wait until it is merged, so what it read and what the
//! service did meanwhile agree.

use crate::natives::component::Started;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use smol_str::SmolStr;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use uuid::Uuid;

pub use super::config::LatePolicy;

use super::book::{Book, Firing, Horizon, Move};
use super::outstanding::Outstanding;
use super::spec::{Next, Timer, TimerKey};
use super::store::After;
use super::window::Window;
use crate::admission::delivery::{Settle, Settlement};
use crate::commands::{Answer, CommandRefusal};
use crate::connectors::Directory;
use crate::dead_letter::{self, DeadLetter, DeadLetterStore};
use crate::domain::{Arguments, ConnectorKey, Event, Idn, PersonaId};
use crate::ingress::InternalEvents;
use crate::intake::StreamInbox;
use crate::session::SessionTable;
use crate::store::StoreError;
use crate::telemetry::throttle::Throttle;
use crate::telemetry::{handles, queue};

/// Timers fired at once, at most, between looks at the service's other work.
const FIRE_BATCH: usize = 1024;
/// Timers one load reads, at most, in the daemon.
pub const LOAD_LIMIT: usize = 100_000;
/// Firings emitted and not yet handed on, at most. A flow holds a firing until its runner has
/// the invocation (a persona's queue holds `engine.max_pending_per_flow_instance` at most), so
/// this is large: one agent whose runner is away must not stop every other agent's timers.
/// About 200 bytes each.
pub const MAX_UNSETTLED: usize = 1 << 20;
/// Firings handed on whose timers have not moved on in the book yet, at most: past it, firing
/// waits for the store.
pub const MAX_UNMOVED: usize = 65_536;
/// Writes of moves being committed at once, at most: moves handed on meanwhile wait and join
/// the next write.
const WRITES: usize = 2;
/// Settlements taken from their queue at once, at most.
const SETTLE_BATCH: usize = 1024;

type Writes = FuturesUnordered<BoxFuture<'static, (u64, Result<(), StoreError>)>>;
/// A load: the end of the range it read (exclusive), and the timers in the book with those due.
type Load = BoxFuture<'static, (i64, Result<(usize, Vec<Timer>), StoreError>)>;

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Timers due within this are held in memory.
    pub window: Duration,
    /// How late a firing may be and still count as on time (for [`LatePolicy::Skip`]).
    pub grace: Duration,
    pub late: LatePolicy,
    /// Timers one load reads, at most ([`LOAD_LIMIT`] in the daemon).
    pub load_limit: usize,
    /// Timers one account may hold (`limits.timers_per_account`).
    pub max_per_account: usize,
}

/// Wall-clock milliseconds read from tokio's clock: the service's timers run on it (so tests
/// run on tokio's paused clock), anchored to the wall clock when the service starts.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            base_ms: Utc::now().timestamp_millis(),
            base: Instant::now(),
        }
    }

    /// Now, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }

    /// The instant of Unix milliseconds `ms` on tokio's clock.
    pub fn instant_at(&self, ms: i64) -> Instant {
        self.base + Duration::from_millis((ms - self.base_ms).max(0) as u64)
    }
}

/// A command for the service.
pub enum Job {
    /// Creates or replaces a timer; `max` timers per persona and connector.
    Set {
        timer: Timer,
        max: usize,
        answer: Answer,
    },
    Cancel {
        key: TimerKey,
        answer: Answer,
    },
    /// The connector was deleted: its timers go, held or not.
    Purge {
        account: Idn,
        connector: Idn,
    },
}

pub struct Service {
    pub metrics: super::metrics::TimerMetrics,
    /// When this run started (Unix ms): timers due before it fire marked `redelivered`.
    pub started_ms: i64,
    /// Opens once what the firings need is in place: connectors restored,
    /// flows loaded. Until then commands wait in their queue and nothing fires.
    pub start: Started,
    pub jobs: mpsc::Receiver<Job>,
    pub book: Arc<dyn Book>,
    pub events: InternalEvents,
    /// With NATS, the events stream firings are appended to instead of `events`.
    pub stream: Option<Arc<dyn StreamInbox>>,
    pub directory: Arc<Directory>,
    pub sessions: Arc<SessionTable>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub clock: Clock,
    pub settings: Settings,
    /// `program_timer`, the integration its events come from.
    pub integration: Idn,
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The id of the event a timer fires at `scheduled_ms`: the same at every replay.
fn firing_id(key: &TimerKey, scheduled_ms: i64) -> Uuid {
    crate::domain::derived_id::derive(
        b"timer-firing",
        &[
            key.account.as_str().as_bytes(),
            key.connector.as_str().as_bytes(),
            key.persona.0.as_bytes(),
            key.name.as_bytes(),
            &scheduled_ms.to_le_bytes(),
        ],
    )
}

/// The event of a replayed firing (marked).
fn replayed_event(f: &Firing) -> Event {
    let mut e = Event::for_persona(
        f.key.account.clone(),
        Idn::known("program_timer"),
        f.key.connector.clone(),
        f.event.clone(),
        f.key.persona,
    );
    e.id = f.id;
    e.redelivered = true;
    for (name, value) in &f.arguments {
        e.arguments.push(name.as_str(), value.as_str());
    }
    e
}

impl Service {
    /// Runs until every sender of jobs is gone.
    pub async fn run(mut self) {
        let mut ends = self.sessions.subscribe_ends();
        let _ = self.start.clone().wait().await;
        // Each unsettled firing settles once: twice their bound never fills.
        let (settle, mut settled) = queue::bounded::<(Uuid, Settlement)>(
            queue::names::TIMER_FIRINGS_DONE,
            2 * MAX_UNSETTLED,
        );
        let mut settlements = Vec::with_capacity(SETTLE_BATCH);
        let mut out = Outstanding::default();
        let mut writes = Writes::new();
        let mut window = Window::default();
        let mut held = Held::default();
        self.replay().await;
        let (before, loaded) = self.load(&window).await;
        self.merge(&mut window, &mut out, before, loaded);
        let mut loading: Option<Load> = None;
        loop {
            self.write_moves(&mut out, &mut writes);
            let now = self.clock.now_ms();
            // Fire at the next due time; load at the window's time unless a load is running.
            let next = window.next_due().unwrap_or(i64::MAX);
            let wake = if loading.is_some() {
                next
            } else {
                next.min(window.refill_at())
            };
            let sleep = tokio::time::sleep_until(self.clock.instant_at(wake.max(now)));
            let room = room(&out) > 0;
            let idle = loading.is_none();
            tokio::select! {
                biased;
                job = self.jobs.recv(), if idle => match job {
                    Some(job) => self.handle(job, &mut window, &mut out, &mut held).await,
                    None => break,
                },
                end = ends.recv(), if idle => match end {
                    Ok((session, reason)) => {
                        self.session_ended(session, reason, &mut window, &mut out).await
                    }
                    // Missed some: a bound timer checks its session when it falls due.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        crate::telemetry::queue::full(crate::telemetry::queue::names::SESSION_ENDS);
                    }
                    Err(broadcast::error::RecvError::Closed) => ends = self.sessions.subscribe_ends(),
                },
                (before, loaded) = async { loading.as_mut().expect("a load runs").await }, if !idle => {
                    loading = None;
                    held.clear();
                    self.merge(&mut window, &mut out, before, loaded);
                }
                _ = settled.recv_many(&mut settlements, SETTLE_BATCH) => {
                    for (id, s) in settlements.drain(..) {
                        out.settled(id, s);
                    }
                }
                Some((write, result)) = writes.next(), if idle && !writes.is_empty() => {
                    if let Err(e) = out.written(write, result) {
                        failed(&e);
                    }
                }
                _ = sleep, if room => {
                    self.fire_due(&mut window, &mut out, &settle).await;
                    if loading.is_none() && window.wants_refill(self.clock.now_ms()) {
                        out.retry_unwritten();
                        loading = Some(self.load(&window));
                    }
                }
            }
        }
    }

    /// Queues the moves handed on in the book, unless [`WRITES`] are being committed.
    fn write_moves(&self, out: &mut Outstanding, writes: &mut Writes) {
        if writes.len() >= WRITES {
            return;
        }
        let Some(moves) = out.take_handed_on() else {
            return;
        };
        match self.book.advance(&moves) {
            Ok(durable) => {
                let write = out.writing(moves);
                writes.push(durable.map(move |r| (write, r)).boxed());
            }
            Err(e) => {
                failed(&e);
                out.unwritten(moves);
            }
        }
    }

    /// Firings an earlier build recorded and did not hand on: emitted again, marked
    /// redelivered, with their ids.
    async fn replay(&self) {
        match self.book.pending_firings().await {
            Ok(firings) => {
                let mut running = None;
                for f in firings {
                    let (book, id) = (self.book.clone(), f.id);
                    let (_, append) = self.emit(
                        replayed_event(&f),
                        f.key.persona,
                        &mut running,
                        Box::new(move |s: Settlement| {
                            if s == Settlement::Done {
                                book.done(id);
                            }
                        }),
                    );
                    if let Some(append) = append {
                        append.await;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "timer firings could not be read; they stay for the next start")
            }
        }
    }

    /// Reads the timers past the window's horizon due within `window`, and counts what the
    /// book holds (the pending gauge is as fresh as the last load, half a window at most).
    fn load(&self, window: &Window) -> Load {
        let book = self.book.clone();
        let from = window.horizon().clone();
        let limit = self.settings.load_limit;
        let before = self.clock.now_ms() + self.settings.window.as_millis() as i64;
        async move {
            let read = async {
                let total = book.total().await?;
                let due = book.due_after(&from, before, limit).await?;
                Ok((total, due))
            };
            (before, read.await)
        }
        .boxed()
    }

    /// Holds what a load read (but not a timer that fired and has not moved on in the book
    /// yet), and the timers re-armed past the old horizon that fall before the new one.
    fn merge(
        &self,
        window: &mut Window,
        out: &mut Outstanding,
        before: i64,
        loaded: Result<(usize, Vec<Timer>), StoreError>,
    ) {
        let half = self.settings.window.as_millis() as i64 / 2;
        let (total, due) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                static FAILED: Throttle = Throttle::new();
                if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
                    tracing::warn!(error = %e, suppressed, "timers could not be loaded; trying again");
                }
                let horizon = window.horizon().clone();
                window.reached(horizon, self.clock.now_ms() + half.min(1_000), None);
                return;
            }
        };
        super::metrics::timers_pending(total);
        // A load cut at its limit may have left later ones out: the window ends at the last
        // read, and the next load reads on from it.
        match due.last().filter(|_| due.len() >= self.settings.load_limit) {
            Some(last) => {
                let horizon = Horizon {
                    due_ms: last.due_ms,
                    last: Some(last.key.clone()),
                };
                window.reached(horizon, last.due_ms, Some(due.len()));
            }
            None => {
                let horizon = Horizon {
                    due_ms: before,
                    last: None,
                };
                window.reached(horizon, before - half, None);
            }
        }
        let fired = out.fired_until();
        for t in due {
            if fired.get(&t.key).is_none_or(|at| t.due_ms > *at) {
                window.put(t);
            }
        }
        for t in out.take_beyond(window.horizon()) {
            window.put(t);
        }
    }

    async fn handle(&self, job: Job, window: &mut Window, out: &mut Outstanding, held: &mut Held) {
        match job {
            Job::Set { timer, max, answer } => {
                // Not held in the window: maybe new. A replacement adds none, so whether the
                // timer exists is asked only at a limit.
                let mut new = !window.holds(&timer.key);
                if new {
                    let full = match self.book.count(&timer.key).await {
                        Ok(n) if n >= max => match self.book.exists(&timer.key).await {
                            Ok(exists) => (!exists).then_some(n),
                            Err(e) => return answer.refuse(unavailable(e)),
                        },
                        Ok(_) => None,
                        Err(e) => return answer.refuse(unavailable(e)),
                    };
                    if let Some(n) = full {
                        return answer.refuse(CommandRefusal::InvalidArgument {
                            argument: "timerName".into(),
                            reason: format!(
                                "the persona holds {n} timers on this connector, its maximum"
                            ),
                        });
                    }
                    let account = &timer.key.account;
                    let n = match held.get(account) {
                        Some(n) => n,
                        None => match self.book.count_account(account).await {
                            Ok(n) => held.counted(account, n),
                            Err(e) => return answer.refuse(unavailable(e)),
                        },
                    };
                    if n >= self.settings.max_per_account {
                        match self.book.exists(&timer.key).await {
                            Ok(true) => new = false,
                            Ok(false) => {
                                handles::limit_reached("limits.timers_per_account");
                                return answer.refuse(CommandRefusal::InvalidArgument {
                                    argument: "timerName".into(),
                                    reason: format!(
                                        "the account holds {n} timers, its limit (limits.timers_per_account)"
                                    ),
                                });
                            }
                            Err(e) => return answer.refuse(unavailable(e)),
                        }
                    }
                }
                match self.book.save(&timer).await {
                    Ok(()) => {
                        if new {
                            held.add(&timer.key.account, 1);
                        }
                        let mut extra = Arguments::default();
                        extra.push("timerName", timer.key.name.as_str());
                        extra.push("result", iso(timer.due_ms));
                        extra.push("nextFireAt", iso(timer.due_ms));
                        out.forget(&timer.key);
                        window.put(timer);
                        answer.succeed(extra);
                    }
                    Err(e) => answer.refuse(unavailable(e)),
                }
            }
            Job::Cancel { key, answer } => match self.book.delete(&key).await {
                Ok(existed) => {
                    out.forget(&key);
                    window.remove(&key);
                    if existed {
                        super::metrics::timer_cancelled("command");
                        held.add(&key.account, -1);
                    }
                    let mut extra = Arguments::default();
                    extra.push("timerName", key.name.as_str());
                    extra.push("result", if existed { "cancelled" } else { "none" });
                    answer.succeed(extra);
                }
                Err(e) => answer.refuse(unavailable(e)),
            },
            Job::Purge { account, connector } => {
                let of = |k: &TimerKey| k.account == account && k.connector == connector;
                window.remove_where(of);
                out.forget_where(of);
                held.forget(&account);
                match self.book.delete_connector(&account, &connector).await {
                    Ok(n) => {
                        for _ in 0..n {
                            super::metrics::timer_cancelled("connector_deleted");
                        }
                    }
                    Err(e) => {
                        // A timer left in the book fires on no connector once: removed then.
                        static FAILED: Throttle = Throttle::new();
                        if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
                            tracing::warn!(error = %e, suppressed, "a deleted connector's timers could not be removed; each goes when it falls due");
                        }
                    }
                }
            }
        }
    }

    /// A session ended: the timers bound to it are cancelled, and each flow is told.
    async fn session_ended(
        &self,
        session: Uuid,
        reason: &str,
        window: &mut Window,
        out: &mut Outstanding,
    ) {
        match self.book.delete_session(session).await {
            Ok(gone) => {
                for t in gone {
                    out.forget(&t.key);
                    window.remove(&t.key);
                    self.cancelled(&t, reason).await;
                }
            }
            Err(e) => {
                static FAILED: Throttle = Throttle::new();
                if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
                    tracing::warn!(error = %e, suppressed, "session timers could not be cancelled; they are checked when due");
                }
            }
        }
    }

    /// Emits `timer_cancelled` for `t` (with NATS, appended to the events stream as a firing
    /// is: its persona's partition owner routes it).
    async fn cancelled(&self, t: &Timer, reason: &str) {
        super::metrics::timer_cancelled("session_ended");
        let mut e = Event::for_persona(
            t.key.account.clone(),
            self.integration.clone(),
            t.key.connector.clone(),
            Idn::known("timer_cancelled"),
            t.key.persona,
        );
        e.arguments.push("timerName", t.key.name.as_str());
        e.arguments.push("reason", reason);
        if let Some(s) = t.session {
            e.arguments.push("sessionId", s.to_string());
        }
        match &self.stream {
            // A notice nobody waits on, as in process: settled for nobody.
            Some(stream) => stream.append_own(e, Box::new(|_: Settlement| {})).await,
            None => self.events.emit(e),
        }
    }

    /// Fires what is due, as much as there is room for, [`FIRE_BATCH`] at most.
    async fn fire_due(
        &self,
        window: &mut Window,
        out: &mut Outstanding,
        settle: &mpsc::Sender<(Uuid, Settlement)>,
    ) {
        let now = self.clock.now_ms();
        let due = window.take_due(now, room(out).min(FIRE_BATCH));
        if due.is_empty() {
            return;
        }
        let fired_at = SmolStr::from(iso(now));
        let mut running = None;
        // Not fired: `(timer, its next due time, the reason it is cancelled)`.
        let mut skipped = Vec::new();
        for t in due {
            let late_ms = now.saturating_sub(t.due_ms);
            let next = t.next_after(t.due_ms, now);
            if let Some(session) = t.session {
                if !self
                    .sessions
                    .is_live(&t.key.account, t.key.persona, session)
                {
                    skipped.push((t, Next::Done, Some("session_ended")));
                    continue;
                }
            }
            if self.settings.late == LatePolicy::Skip
                && matches!(next, Next::At(_))
                && late_ms > self.settings.grace.as_millis() as i64
            {
                skipped.push((t, next, None));
                continue;
            }
            let id = firing_id(&t.key, t.due_ms);
            let event = self.event_of(&t, id, &fired_at, late_ms);
            self.metrics.fired(late_ms.max(0) as f64 / 1000.0);
            if next == Next::Broken {
                self.broken(&t, &event);
            }
            let persona = t.key.persona;
            let scheduled_ms = t.due_ms;
            let settle = settle.clone();
            // Settled through the queue, so after `out.emitted` below.
            let (reached, append) = self.emit(
                event,
                persona,
                &mut running,
                Box::new(move |s: Settlement| {
                    // Cannot be full (see `run`); closed only once the service is gone.
                    let _ = settle.try_send((id, s));
                }),
            );
            if let Some(append) = append {
                append.await;
            }
            let (key, after, beyond) = match next {
                // A timer whose connector is gone (deleted while the daemon was down) ends.
                Next::At(next) if reached != Reached::Gone => {
                    let key = t.key.clone();
                    let rearmed = Timer { due_ms: next, ..t };
                    let beyond = if window.horizon().covers(next, &rearmed.key) {
                        window.put(rearmed);
                        None
                    } else {
                        Some(rearmed)
                    };
                    (key, After::Rearm(next), beyond)
                }
                _ => (t.key, After::Remove, None),
            };
            let m = Move {
                key,
                scheduled_ms,
                after,
            };
            out.emitted(id, m, beyond);
        }
        for (t, next, cancelled) in skipped {
            match (next, cancelled) {
                (_, Some(reason)) => {
                    if self.book.delete(&t.key).await.is_ok() {
                        self.cancelled(&t, reason).await;
                    }
                }
                (Next::At(next), None) => {
                    let moved = Timer { due_ms: next, ..t };
                    if self.book.save(&moved).await.is_ok() {
                        window.put(moved);
                    }
                }
                (Next::Done | Next::Broken, None) => {}
            }
        }
    }

    /// Timer `t` fires for the last time: it cannot be re-armed (see [`Next::Broken`]). A dead
    /// letter of its event says so.
    fn broken(&self, t: &Timer, event: &Event) {
        super::metrics::timer_cancelled("broken");
        dead_letter::record(
            &*self.dead_letters,
            DeadLetter::event(
                dead_letter::DeadLetterReason::Malformed,
                format!(
                    "timer {:?} cannot be re-armed (interval {:?} ms from {}): removed",
                    t.key.name, t.interval_ms, t.due_ms
                ),
                event.clone(),
                Some(t.key.persona),
            ),
        );
    }

    /// The event timer `t` fires at its due time, `late_ms` late.
    fn event_of(&self, t: &Timer, id: Uuid, fired_at: &SmolStr, late_ms: i64) -> Event {
        let mut e = Event::for_persona(
            t.key.account.clone(),
            self.integration.clone(),
            t.key.connector.clone(),
            t.event.clone(),
            t.key.persona,
        );
        e.id = id;
        // Due before this run started: a run before may have emitted it unrecorded.
        e.redelivered = t.due_ms < self.started_ms;
        let a = &mut e.arguments;
        a.push("timerName", t.key.name.as_str());
        a.push("personaId", t.key.persona.0.to_string());
        a.push("fireAt", iso(t.due_ms));
        a.push("firedAt", fired_at.clone());
        a.push(
            "lateBySeconds",
            format!("{:.3}", late_ms.max(0) as f64 / 1000.0),
        );
        for (name, value) in &t.arguments {
            a.push(name.as_str(), value.as_str());
        }
        e
    }

    /// Emits an event of a `program_timer` connector; `source` settles once it was handed on.
    /// With NATS it answers the append to the events stream, to be awaited before the next
    /// (appended in the order of the calls; `source` settles once the stream stored it): the
    /// embedded path stays synchronous. A timer whose connector does not run is refused as any
    /// event would be: dead-lettered, and settled.
    ///
    /// `running` remembers the last connector found running, so a batch of one connector's
    /// firings asks the directory once.
    fn emit(
        &self,
        event: Event,
        persona: PersonaId,
        running: &mut Option<ConnectorKey>,
        source: Box<dyn Settle>,
    ) -> (Reached, Option<Append<'_>>) {
        let key = ConnectorKey::new(&event.account, &self.integration, &event.connector);
        let reached = if running.as_ref() == Some(&key) {
            Ok(())
        } else {
            self.directory.with_running(&key, (), |_, ()| ())
        };
        *running = reached.is_ok().then_some(key);
        if let Err(((), reach)) = reached {
            let gone = !matches!(
                reach,
                crate::admission::Unreachable::ConnectorStopped { .. }
            );
            let refusal = crate::admission::Refusal::from(reach);
            handles::rejected(refusal.code());
            if let Some(reason) = refusal.dead_letter_reason() {
                dead_letter::record(
                    &*self.dead_letters,
                    DeadLetter::event(reason, refusal.to_string(), event, Some(persona)),
                );
            }
            source.settle(Settlement::Done);
            let reached = if gone {
                Reached::Gone
            } else {
                Reached::Stopped
            };
            return (reached, None);
        }
        match &self.stream {
            Some(stream) => (Reached::Running, Some(stream.append_own(event, source))),
            None => {
                self.events.emit_with(event, Some(source));
                (Reached::Running, None)
            }
        }
    }
}

/// A firing's append to the events stream (NATS), under way once awaited.
type Append<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Where a firing's event went: its connector ran, was stopped (the timer stays), or is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    Running,
    Stopped,
    Gone,
}

/// How many timers each account holds, as counted from the book and changed by commands since.
/// Firings that end a timer are not followed: the counts are dropped at every load (half a
/// window at most) and counted again when next needed.
#[derive(Default)]
struct Held(rustc_hash::FxHashMap<Idn, usize>);

impl Held {
    fn get(&self, account: &Idn) -> Option<usize> {
        self.0.get(account).copied()
    }

    fn counted(&mut self, account: &Idn, n: usize) -> usize {
        self.0.insert(account.clone(), n);
        n
    }

    fn add(&mut self, account: &Idn, delta: isize) {
        if let Some(n) = self.0.get_mut(account) {
            *n = n.saturating_add_signed(delta);
        }
    }

    fn forget(&mut self, account: &Idn) {
        self.0.remove(account);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// How many more timers may fire now.
fn room(out: &Outstanding) -> usize {
    MAX_UNSETTLED
        .saturating_sub(out.unsettled())
        .min(MAX_UNMOVED.saturating_sub(out.unmoved()))
}

fn failed(e: &StoreError) {
    static FAILED: Throttle = Throttle::new();
    if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
        tracing::warn!(error = %e, suppressed, "fired timers could not be moved on in the store; tried again at the next load");
    }
}

fn unavailable(e: crate::store::StoreError) -> CommandRefusal {
    CommandRefusal::Unavailable {
        integration: "program_timer".into(),
        reason: format!("the timer could not be stored: {e}"),
    }
}
