//! The native `program_timer` integration: durable, per-persona timers that fire events into
//! the flows. `set_timer` (alias `set_repeatable_timer`) creates or replaces the persona's
//! timer of a name, `cancel_timer` (or `enabled=false`) removes it; when a timer falls due, its
//! event (`timer`, or the `eventIdn` it was set with) is emitted on its connector for its
//! persona and routed as any event. [`spec`] reads the commands, [`service`] keeps and fires
//! the timers (the soon-due ones in its [`window`], those fired and not yet moved on in the
//! book as [`outstanding`]), [`book`] is where they are kept ([`store`] its tables in the
//! daemon's store, with their migrations), [`routes`] lists them over HTTP (`GET /v1/timers`),
//! [`config`] is its `[timers]` section.

pub mod book;
pub mod config;
pub mod metrics;
mod outstanding;
pub mod routes;
pub mod service;
pub mod spec;
pub mod store;
mod window;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::commands::{
    Answered, CommandRefusal, ConnectorChange, NativeCommand, NativeIntegration,
};
use crate::connectors::Directory;
use crate::domain::{ConnectorKey, Idn};
use crate::natives::component::{Built, Component, NativeContext, Started};
use crate::natives::section::{Section, Sections};
use crate::session::SessionTable;
use crate::telemetry::queue;
use book::Book;
use config::TimersConfig;
use service::{Clock, Job, Service, Settings};
use spec::{Limits, Request};

/// Its `[timers]` section, for its registration line.
pub const SECTION: Section = Section::of::<TimersConfig>();

/// Commands waiting for the timer service, at most; past it a command is refused (retryable).
const JOBS: usize = 4096;

/// The connector settings' defaults (the catalog's), when a value does not parse.
const DEFAULT_MIN_INTERVAL_S: f64 = 60.0;
const DEFAULT_MAX_PER_PERSONA: usize = 100;

struct TimersComponent {
    book: Option<Arc<dyn Book>>,
    settings: Settings,
}

impl Component for TimersComponent {
    fn idn(&self) -> &'static str {
        "program_timer"
    }

    fn metrics(&self) -> Option<fn()> {
        Some(metrics::describe)
    }

    fn migrations(&self) -> &'static [&'static str] {
        store::MIGRATIONS
    }

    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        let book: Arc<dyn Book> = self.book.unwrap_or_else(|| match &cx.store {
            Some(store) => Arc::new(book::StoredBook::new(store.clone())),
            None => Arc::new(book::MemoryBook::default()),
        });
        let native = ProgramTimer::start(cx, book.clone(), self.settings, cx.started.clone());
        Built::executor(Arc::new(native)).with_routes(move |cfg| routes::routes(cfg, book.clone()))
    }
}

pub struct ProgramTimer {
    jobs: mpsc::Sender<Job>,
    clock: Clock,
    directory: Arc<Directory>,
    sessions: Arc<SessionTable>,
    past_grace_ms: i64,
}

/// The component as the daemon registers it: its `[timers]` section, and
/// `limits.timers_per_account`; timers kept in the daemon's store.
pub fn component(sections: &Sections, timers_per_account: u64) -> Box<dyn Component> {
    let config: TimersConfig = sections.get();
    ProgramTimer::component_with(None, config.settings(timers_per_account))
}

impl ProgramTimer {
    /// The component: timers kept in `book`, or, when `None`, in the daemon's store (in memory
    /// for an engine without one). The service starts on the current arbiter and runs until
    /// the engine goes; it fires nothing before the start gate opens (see [`Service::start`]).
    pub fn component_with(book: Option<Arc<dyn Book>>, settings: Settings) -> Box<dyn Component> {
        Box::new(TimersComponent { book, settings })
    }

    /// Starts the service and answers the native integration that feeds it.
    pub fn start(
        cx: &NativeContext,
        book: Arc<dyn Book>,
        settings: Settings,
        start: Started,
    ) -> Self {
        let (jobs, rx) = queue::bounded(queue::names::TIMER_COMMANDS, JOBS);
        let clock = Clock::start();
        let past_grace_ms = settings.grace.as_millis() as i64;
        let service = Service {
            metrics: metrics::TimerMetrics::new(),
            started_ms: clock.now_ms(),
            start,
            jobs: rx,
            book,
            events: cx.events.clone(),
            stream: cx.stream.clone(),
            directory: cx.directory.clone(),
            sessions: cx.sessions.clone(),
            dead_letters: cx.dead_letters.clone(),
            clock,
            settings,
            integration: Idn::known("program_timer"),
        };
        actix_rt::spawn(service.run());
        ProgramTimer {
            jobs,
            clock,
            directory: cx.directory.clone(),
            sessions: cx.sessions.clone(),
            past_grace_ms,
        }
    }

    /// The connector's settings: time zone, minimum interval, timers per persona.
    fn limits(&self, connector: &ConnectorKey) -> Result<(Limits, usize), CommandRefusal> {
        let setting = |idn: &str| self.directory.setting(connector, idn);
        let time_zone = match setting("time_zone") {
            None => chrono_tz::UTC,
            Some(tz) => tz.parse().map_err(|_| CommandRefusal::InvalidArgument {
                argument: "fireAt".into(),
                reason: format!("the connector's time_zone {tz:?} is not an IANA time zone"),
            })?,
        };
        let min_interval_s = setting("min_interval_seconds")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(DEFAULT_MIN_INTERVAL_S);
        let max = setting("max_timers_per_persona")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(DEFAULT_MAX_PER_PERSONA);
        Ok((
            Limits {
                time_zone,
                min_interval_ms: (min_interval_s * 1000.0) as i64,
                past_grace_ms: self.past_grace_ms,
            },
            max,
        ))
    }
}

impl NativeIntegration for ProgramTimer {
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let command = c.command;
        let connector =
            ConnectorKey::new(&command.account, &command.integration, &command.connector);
        let (limits, max) = self.limits(&connector)?;
        let request = spec::parse(
            command,
            c.persona,
            self.clock.now_ms(),
            &limits,
            |key, integration, session_connector| {
                let integration = Idn::parse("integration", integration).ok()?;
                let session_connector = Idn::parse("connector", session_connector).ok()?;
                self.sessions
                    .find(&key.account, key.persona, &integration, &session_connector)
                    .map(|s| s.id)
            },
        )?;
        let answer = c.answer_later();
        let job = match request {
            Request::Set(timer) => Job::Set { timer, max, answer },
            Request::Cancel(key) => Job::Cancel { key, answer },
        };
        self.jobs.try_send(job).map_err(|e| {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                queue::full(queue::names::TIMER_COMMANDS);
            }
            CommandRefusal::Unavailable {
                integration: "program_timer".into(),
                reason: "the timer service is busy; try again".into(),
            }
        })?;
        Ok(Answered::Later)
    }

    /// A deleted connector's timers go, held in memory or not (sent on: the queue may be full
    /// for a moment).
    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        if change != ConnectorChange::Deleted {
            return;
        }
        let (jobs, job) = (
            self.jobs.clone(),
            Job::Purge {
                account: connector.account.clone(),
                connector: connector.connector.clone(),
            },
        );
        tokio::spawn(async move {
            let _ = jobs.send(job).await;
        });
    }
}
