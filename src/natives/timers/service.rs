//! The timer service: one task that owns the soon-due window of timers and fires them. Commands
//! reach it in order through a bounded queue; every change is written to the [`Book`] before it
//! is answered. Only timers due within `window` are held in memory (a map ordered by due time),
//! refilled from the book as time moves on, so a million pending timers cost their rows on
//! disk, not a million entries here.
//!
//! Firing: the due timers (up to a batch) are recorded as firings and moved on (a repeating
//! timer re-arms from its schedule, so it never drifts) in one transaction, queued in the
//! store's writer before their events are emitted through the internal-events sink; a firing is
//! forgotten once its event was handed on, which the writer sees after the record. The events
//! do not wait for the commit (its fsync would bound a burst by the writer's pace); so a crash
//! can come after an event left and before its record committed: the timer is then still due
//! at the next start, and every timer found due at start fires marked `redelivered`. A
//! recorded firing not yet handed on is replayed at start, marked, with the same event id.
//! Either way a firing is lost never, and repeated only marked.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::future::FutureExt;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use uuid::Uuid;

use super::book::{Book, Firing};
use super::spec::{Timer, TimerKey};
use crate::admission::delivery::Settlement;
use crate::commands::{Answer, CommandRefusal};
use crate::connectors::Directory;
use crate::dead_letter::{self, DeadLetter, DeadLetterStore};
use crate::domain::{Arguments, ConnectorKey, Event, Idn};
use crate::ingress::InternalEvents;
use crate::session::SessionTable;
use crate::store::timers::After;
use crate::telemetry::handles;
use crate::telemetry::throttle::Throttle;

/// Firings recorded in one transaction, at most.
const FIRE_BATCH: usize = 2048;
/// Timers loaded into the window by one refill, at most.
const REFILL_LIMIT: usize = 100_000;
/// Batches of firings being recorded at once, at most.
const IN_FLIGHT: usize = 64;
/// How long a failed firing waits before it is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// What to do with a repeating timer that fell due while the daemon was down (late by more
/// than the grace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatePolicy {
    /// Fire once, late (with `lateBySeconds`), then go on from the schedule.
    FireOnce,
    /// Skip to the next interval without firing. One-shot timers always fire.
    Skip,
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Timers due within this are held in memory.
    pub window: Duration,
    /// How late a firing may be and still count as on time (for [`LatePolicy::Skip`]).
    pub grace: Duration,
    pub late: LatePolicy,
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
}

pub struct Service {
    pub metrics: handles::TimerMetrics,
    /// When this run started (Unix ms): timers due before it fire marked `redelivered`.
    pub started_ms: i64,
    /// Opened (sent, or dropped) once what the firings need is in place: connectors restored,
    /// flows loaded. Until then commands wait in their queue and nothing fires.
    pub start: tokio::sync::oneshot::Receiver<()>,
    pub jobs: mpsc::Receiver<Job>,
    pub book: Arc<dyn Book>,
    pub events: InternalEvents,
    pub directory: Arc<Directory>,
    pub sessions: Arc<SessionTable>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub clock: Clock,
    pub settings: Settings,
}

/// Due timers taken together: their firings (recorded in one transaction) and those skipped.
struct Batch {
    due: Vec<Timer>,
    now: i64,
    firings: Vec<(Firing, After)>,
    /// Not fired: `(timer, its next due time, the reason it is cancelled)`.
    skipped: Vec<(Timer, Option<i64>, Option<&'static str>)>,
}

/// The soon-due timers, by due time and by key.
#[derive(Default)]
struct Window {
    by_due: BTreeMap<(i64, u64), TimerKey>,
    by_key: FxHashMap<TimerKey, (u64, Timer)>,
    next_seq: u64,
    /// Every timer due before this is here.
    horizon_ms: i64,
}

impl Window {
    fn remove(&mut self, key: &TimerKey) -> Option<Timer> {
        let (seq, t) = self.by_key.remove(key)?;
        self.by_due.remove(&(t.due_ms, seq));
        Some(t)
    }

    /// Holds `t` if it falls due inside the window (replacing a timer of its key).
    fn put(&mut self, t: Timer) {
        self.remove(&t.key);
        if t.due_ms < self.horizon_ms {
            self.next_seq += 1;
            self.by_due.insert((t.due_ms, self.next_seq), t.key.clone());
            self.by_key.insert(t.key.clone(), (self.next_seq, t));
        }
    }

    fn next_due(&self) -> Option<i64> {
        self.by_due.first_key_value().map(|((due, _), _)| *due)
    }

    /// Takes the timers due at `now_ms`, soonest first, at most `limit`.
    fn take_due(&mut self, now_ms: i64, limit: usize) -> Vec<Timer> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(((d, _), _)) = self.by_due.first_key_value() else {
                break;
            };
            if *d > now_ms {
                break;
            }
            let (_, key) = self.by_due.pop_first().expect("just seen");
            if let Some((_, t)) = self.by_key.remove(&key) {
                due.push(t);
            }
        }
        due
    }
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

/// The event of a firing.
fn event_of(f: &Firing, redelivered: bool) -> Event {
    let mut e = Event::for_persona(
        f.key.account.clone(),
        Idn::known("program_timer"),
        f.key.connector.clone(),
        f.event.clone(),
        f.key.persona,
    );
    e.id = f.id;
    e.redelivered = redelivered;
    for (name, value) in &f.arguments {
        e.arguments.push(name.as_str(), value.as_str());
    }
    e
}

impl Service {
    /// Runs until every sender of jobs is gone.
    pub async fn run(mut self) {
        let mut ends = self.sessions.subscribe_ends();
        let _ = (&mut self.start).await;
        let mut window = Window::default();
        self.replay().await;
        self.refill(&mut window).await;
        loop {
            let now = self.clock.now_ms();
            // Refill when half the window has passed; fire at the next due time before that.
            let refill_at = window.horizon_ms - self.settings.window.as_millis() as i64 / 2;
            let wake = window.next_due().map_or(refill_at, |d| d.min(refill_at));
            let sleep = tokio::time::sleep_until(self.clock.instant_at(wake.max(now)));
            tokio::select! {
                biased;
                job = self.jobs.recv() => match job {
                    Some(job) => self.handle(job, &mut window).await,
                    None => break,
                },
                end = ends.recv() => match end {
                    Ok((session, reason)) => self.session_ended(session, reason, &mut window).await,
                    // Missed some: a bound timer checks its session when it falls due.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => ends = self.sessions.subscribe_ends(),
                },
                _ = sleep => {
                    if !self.fire_due(&mut window).await {
                        tokio::time::sleep(RETRY).await;
                    }
                    if self.clock.now_ms() >= refill_at {
                        self.refill(&mut window).await;
                    }
                }
            }
        }
    }

    /// Firings recorded by a run that stopped before their events were handed on: emitted
    /// again, marked redelivered, with their ids.
    async fn replay(&self) {
        match self.book.pending_firings().await {
            Ok(firings) => {
                let mut running = None;
                for f in firings {
                    self.emit(
                        &Firing {
                            redelivered: true,
                            ..f
                        },
                        &mut running,
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "timer firings could not be read; they stay for the next start")
            }
        }
    }

    /// Loads the timers due within the window, and counts what the book holds (the pending
    /// gauge is as fresh as the last refill, half a window at most).
    async fn refill(&self, window: &mut Window) {
        if let Ok(n) = self.book.total().await {
            handles::timers_pending(n);
        }
        let horizon = self.clock.now_ms() + self.settings.window.as_millis() as i64;
        match self.book.due_before(horizon, REFILL_LIMIT).await {
            Ok(due) => {
                // A full load may have left later ones out: the window ends at the last loaded.
                window.horizon_ms = if due.len() >= REFILL_LIMIT {
                    due.last().map_or(horizon, |t| t.due_ms)
                } else {
                    horizon
                };
                for t in due {
                    window.put(t);
                }
            }
            Err(e) => {
                static FAILED: Throttle = Throttle::new();
                if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
                    tracing::warn!(error = %e, suppressed, "timers could not be loaded; trying again");
                }
            }
        }
    }

    async fn handle(&self, job: Job, window: &mut Window) {
        match job {
            Job::Set { timer, max, answer } => {
                // A replacement does not add one.
                if !window.by_key.contains_key(&timer.key) {
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
                }
                match self.book.save(&timer).await {
                    Ok(()) => {
                        let mut extra = Arguments::default();
                        extra.push("timerName", timer.key.name.as_str());
                        extra.push("result", iso(timer.due_ms));
                        extra.push("nextFireAt", iso(timer.due_ms));
                        window.put(timer);
                        answer.succeed(extra);
                    }
                    Err(e) => answer.refuse(unavailable(e)),
                }
            }
            Job::Cancel { key, answer } => match self.book.delete(&key).await {
                Ok(existed) => {
                    window.remove(&key);
                    if existed {
                        handles::timer_cancelled("command");
                    }
                    let mut extra = Arguments::default();
                    extra.push("timerName", key.name.as_str());
                    extra.push("result", if existed { "cancelled" } else { "none" });
                    answer.succeed(extra);
                }
                Err(e) => answer.refuse(unavailable(e)),
            },
        }
    }

    /// A session ended: the timers bound to it are cancelled, and each flow is told.
    async fn session_ended(&self, session: Uuid, reason: &str, window: &mut Window) {
        match self.book.delete_session(session).await {
            Ok(gone) => {
                for t in gone {
                    window.remove(&t.key);
                    self.cancelled(&t, reason);
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

    /// Emits `timer_cancelled` for `t`.
    fn cancelled(&self, t: &Timer, reason: &str) {
        handles::timer_cancelled("session_ended");
        let mut e = Event::for_persona(
            t.key.account.clone(),
            Idn::known("program_timer"),
            t.key.connector.clone(),
            Idn::known("timer_cancelled"),
            t.key.persona,
        );
        e.arguments.push("timerName", t.key.name.as_str());
        e.arguments.push("reason", reason);
        if let Some(s) = t.session {
            e.arguments.push("sessionId", s.to_string());
        }
        self.events.emit(e);
    }

    /// Fires what is due; `false` when recording the firings failed (they are tried again).
    /// Up to [`IN_FLIGHT`] batches are being recorded at once (the store joins their writes
    /// into one commit); each batch's events leave once its own record committed, in order.
    async fn fire_due(&self, window: &mut Window) -> bool {
        let mut in_flight = FuturesOrdered::new();
        loop {
            if in_flight.len() < IN_FLIGHT {
                let now = self.clock.now_ms();
                let due = window.take_due(now, FIRE_BATCH);
                if !due.is_empty() {
                    let batch = self.prepare(due, now);
                    let durable = if batch.firings.is_empty() {
                        Ok(futures_util::future::ready(Ok(())).boxed())
                    } else {
                        self.book.fire(&batch.firings)
                    };
                    match durable {
                        Ok(durable) => {
                            // Queued in the writer: the events leave now.
                            let mut running = None;
                            for (f, _) in &batch.firings {
                                self.metrics
                                    .fired((now - f.scheduled_ms).max(0) as f64 / 1000.0);
                                self.emit(f, &mut running);
                            }
                            in_flight.push_back(durable.map(move |r| (r, batch)));
                        }
                        Err(e) => {
                            // Nothing queued, nothing left: they stay due.
                            self.failed(&e);
                            for t in batch.due {
                                window.put(t);
                            }
                            while let Some((_, later)) = in_flight.next().await {
                                self.settle(later, window).await;
                            }
                            return false;
                        }
                    }
                    continue;
                }
            }
            let Some((recorded, batch)) = in_flight.next().await else {
                return true;
            };
            match recorded {
                Ok(()) => self.settle(batch, window).await,
                Err(e) => {
                    // The events left, the record did not commit: in the book the timers are
                    // still due as they were, so they fire again at the next refill or start,
                    // then marked (`started_ms` moves on only with a new run: mark them here).
                    self.failed(&e);
                    for t in batch.due {
                        window.put(t);
                    }
                    return false;
                }
            }
        }
    }

    fn failed(&self, e: &crate::store::StoreError) {
        static FAILED: Throttle = Throttle::new();
        if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
            tracing::warn!(error = %e, suppressed, "timer firings could not be recorded; trying again");
        }
    }

    /// The firings of `due` at `now`, and what is skipped instead.
    fn prepare(&self, due: Vec<Timer>, now: i64) -> Batch {
        let mut firings = Vec::with_capacity(due.len());
        let mut skipped = Vec::new();
        for t in &due {
            let late_ms = now - t.due_ms;
            let next = t.next_after(t.due_ms, now);
            if let Some(session) = t.session {
                if !self
                    .sessions
                    .is_live(&t.key.account, t.key.persona, session)
                {
                    skipped.push((t.clone(), None, Some("session_ended")));
                    continue;
                }
            }
            if self.settings.late == LatePolicy::Skip
                && next.is_some()
                && late_ms > self.settings.grace.as_millis() as i64
            {
                skipped.push((t.clone(), next, None));
                continue;
            }
            let mut arguments = vec![
                ("timerName".to_owned(), t.key.name.clone()),
                ("personaId".to_owned(), t.key.persona.0.to_string()),
                ("fireAt".to_owned(), iso(t.due_ms)),
                ("firedAt".to_owned(), iso(now)),
                (
                    "lateBySeconds".to_owned(),
                    format!("{:.3}", late_ms.max(0) as f64 / 1000.0),
                ),
            ];
            arguments.extend(t.arguments.iter().cloned());
            let firing = Firing {
                id: firing_id(&t.key, t.due_ms),
                key: t.key.clone(),
                event: t.event.clone(),
                arguments,
                scheduled_ms: t.due_ms,
                // Due before this run started: a run before may have emitted it unrecorded.
                redelivered: t.due_ms < self.started_ms,
            };
            let after = next.map_or(After::Remove, After::Rearm);
            firings.push((firing, after));
        }
        Batch {
            due,
            now,
            firings,
            skipped,
        }
    }

    /// A batch's record committed: its events leave, its timers move on.
    async fn settle(&self, batch: Batch, window: &mut Window) {
        let Batch {
            due,
            now,
            firings,
            skipped,
        } = batch;
        drop(firings);
        for t in due {
            let scheduled = t.due_ms;
            if let Some(next) = t.next_after(scheduled, now) {
                window.put(Timer { due_ms: next, ..t });
            }
        }
        for (t, next, cancelled) in skipped {
            match (next, cancelled) {
                (_, Some(reason)) => {
                    if self.book.delete(&t.key).await.is_ok() {
                        self.cancelled(&t, reason);
                    }
                }
                (Some(next), None) => {
                    let moved = Timer { due_ms: next, ..t };
                    if self.book.save(&moved).await.is_ok() {
                        window.put(moved);
                    }
                }
                (None, None) => {}
            }
        }
    }

    /// Emits a firing's event; the firing is forgotten once the event was handed on. A timer
    /// whose connector does not run is refused as any event would be: dead-lettered.
    ///
    /// `running` remembers the last connector found running, so a batch of one connector's
    /// firings asks the directory once.
    fn emit(&self, f: &Firing, running: &mut Option<ConnectorKey>) {
        let event = event_of(f, f.redelivered);
        let key = ConnectorKey::new(
            &f.key.account,
            &Idn::known("program_timer"),
            &f.key.connector,
        );
        let reached = if running.as_ref() == Some(&key) {
            Ok(())
        } else {
            self.directory.with_running(&key, (), |_, ()| ())
        };
        *running = reached.is_ok().then_some(key);
        if let Err(((), reach)) = reached {
            let refusal = crate::admission::Refusal::from(reach);
            handles::rejected(refusal.code());
            if let Some(reason) = refusal.dead_letter_reason() {
                dead_letter::record(
                    &*self.dead_letters,
                    DeadLetter::event(reason, refusal.to_string(), event, Some(f.key.persona)),
                );
            }
            self.book.done(f.id);
            return;
        }
        let (book, id) = (self.book.clone(), f.id);
        self.events.emit_with(
            event,
            Some(Box::new(move |s: Settlement| {
                if s == Settlement::Done {
                    book.done(id);
                }
            })),
        );
    }
}

fn unavailable(e: crate::store::StoreError) -> CommandRefusal {
    CommandRefusal::Unavailable {
        integration: "program_timer".into(),
        reason: format!("the timer could not be stored: {e}"),
    }
}
