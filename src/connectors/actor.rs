//! The connector actor: one per running connector. It drains admitted events from its inbox in
//! batches, resolves the persona of each (a command act it issued wins over the actor named),
//! drops repeats of `external_event_id`, starts and ends sessions (their events go first and
//! last), and hands the batch to routing through [`Routes`]. Commands do not pass through it:
//! the command stage checks the directory and carries them out.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, Context, Handler, Message};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::acts::CommandActs;
use super::route::{Routable, Routes};
use crate::admission::dedupe::DedupeWindow;
use crate::admission::delivery::Delivery;
use crate::catalog::Integration;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{
    ConnectorKey, Event, Idn, PersonaId, RoutedEvent, ScopeKey, SharedEvent, Target,
};
use crate::inbox::BatchInbox;
use crate::ingress::Inbound;
use crate::session::seen::SeenSessions;
use crate::session::table::SessionTable;
use crate::telemetry::handles::{self, ConnectorMetrics, EngineMetrics, CUSTOM_EVENT_LABEL};
use crate::telemetry::queue;

/// What every connector actor needs, shared.
pub struct ConnectorDeps {
    pub routes: Arc<dyn Routes>,
    pub sessions: Arc<SessionTable>,
    pub acts: Arc<CommandActs>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub metrics: Arc<EngineMetrics>,
    pub dedupe_window: Duration,
    pub dedupe_capacity: usize,
}

/// Admitted events a connector's inbox holds; past it, `Ingress::submit` waits.
pub const INBOX_CAPACITY: usize = 1024;

/// How the engine reaches a running connector: its inbox for admitted events, its mailbox for
/// control.
pub struct ConnectorHandle {
    pub addr: Addr<ConnectorActor>,
    /// Made on the first event: a connector that never receives one (most of a large fleet
    /// at any moment) holds no queue.
    inbox: OnceLock<mpsc::Sender<Inbound>>,
}

impl ConnectorHandle {
    pub fn new(addr: Addr<ConnectorActor>) -> Self {
        ConnectorHandle {
            addr,
            inbox: OnceLock::new(),
        }
    }

    /// The connector's inbox, made on first use. Its receiving end goes to the actor through
    /// the mailbox, ahead of any `Shutdown` (that is sent after the handle left the directory).
    pub fn inbox(&self) -> &mpsc::Sender<Inbound> {
        self.inbox.get_or_init(|| {
            let (tx, rx) = queue::bounded(queue::names::CONNECTOR_INBOX, INBOX_CAPACITY);
            self.addr.do_send(Attach(rx));
            tx
        })
    }
}

/// The receiving end of the connector's inbox, made on its first event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(mpsc::Receiver<Inbound>);

/// Stop after the events already in the inbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct ConnectorActor {
    key: ConnectorKey,
    scope: ScopeKey,
    system_scope: ScopeKey,
    integration: Arc<Integration>,
    internal: bool,
    deps: Arc<ConnectorDeps>,
    metrics: ConnectorMetrics,
    dedupe: Option<Box<DedupeWindow>>,
    /// Attached on the first event (see [`ConnectorHandle::inbox`]).
    inbox: Option<mpsc::Receiver<Inbound>>,
    /// The clocks of this connector's live sessions.
    seen: SeenSessions,
    /// The batch being handled, ready to route, and what each event reached.
    routable: Vec<Routable>,
    matched: Vec<usize>,
    /// Per event of the inbox batch: its position in `routable` and its metric label.
    received: Vec<(usize, Idn, bool)>,
    /// The connector's own session idle timeout, when its settings name one.
    session_idle: Option<Duration>,
}

impl ConnectorActor {
    pub fn new(
        key: ConnectorKey,
        integration: Arc<Integration>,
        internal: bool,
        session_idle: Option<Duration>,
        deps: Arc<ConnectorDeps>,
    ) -> Self {
        let system = Idn::known("system");
        ConnectorActor {
            system_scope: ScopeKey::new(key.account.clone(), system.clone(), system),
            scope: ScopeKey::new(
                key.account.clone(),
                key.integration.clone(),
                key.connector.clone(),
            ),
            key,
            metrics: ConnectorMetrics::new(&integration.idn, integration.channel_label()),
            integration,
            internal,
            deps,
            dedupe: None,
            inbox: None,
            seen: SeenSessions::default(),
            routable: Vec::new(),
            matched: Vec::new(),
            received: Vec::new(),
            session_idle,
        }
    }

    /// The persona of `event`: a command act this connector issued wins over the actor named.
    fn resolve_persona(&self, event: &mut SharedEvent) -> Option<PersonaId> {
        let issued = event
            .event
            .command_act_id
            .and_then(|act| self.deps.acts.persona(&act, &self.key));
        if let (Some(act), Some(_)) = (event.event.command_act_id, issued) {
            // Its adapter answered the command: a recall skips it.
            let idn = event.event.event.as_str();
            let recall = match idn {
                "recalled" => Some("recalled"),
                "too_late" => Some("too_late"),
                _ => None,
            };
            if let Some(outcome) = recall {
                crate::telemetry::handles::recall(outcome);
            }
            if recall.is_some() || matches!(idn, "result_success" | "result_error") {
                self.deps.acts.reported(&act);
            }
        }
        match issued {
            Some(p) if p != event.persona => {
                Arc::get_mut(event)
                    .expect("the inbox hands over the only reference")
                    .persona = p;
                Some(p)
            }
            Some(p) => Some(p),
            None if event.persona == PersonaId::UNRESOLVED => None,
            None => Some(event.persona),
        }
    }

    /// Queues a `session_started` / `session_ended` event on the account's system scope.
    fn session_event(
        &mut self,
        name: &str,
        reason: Option<&str>,
        persona: PersonaId,
        session: uuid::Uuid,
        delivery: &Delivery,
        admitted_at: Instant,
    ) {
        let mut e = Event::for_persona(
            self.scope.account.clone(),
            self.system_scope.integration.clone(),
            self.system_scope.connector.clone(),
            Idn::known(name),
            persona,
        );
        e.arguments.push("sessionId", session.to_string());
        e.arguments
            .push("integrationIdn", self.scope.integration.as_str());
        e.arguments
            .push("connectorIdn", self.scope.connector.as_str());
        if let Some(r) = reason {
            e.arguments.push("reason", r);
        }
        self.routable.push(Routable {
            event: Arc::new(RoutedEvent {
                event: e,
                persona,
                room: None,
            }),
            system: true,
            delivery: delivery.clone(),
            admitted_at,
        });
    }

    /// Readies one admitted event: drops a repeat, resolves its persona, touches its session
    /// (a new one routes `session_started` first), and after `conversation_ended` ends the
    /// persona's sessions of the integration (their `session_ended` routes after it).
    fn admit(&mut self, msg: Inbound) {
        let Inbound {
            mut event,
            delivery,
            admitted_at,
        } = msg;
        if let Some(id) = &event.event.external_event_id {
            let deps = &self.deps;
            let window = self.dedupe.get_or_insert_with(|| {
                Box::new(DedupeWindow::new(deps.dedupe_window, deps.dedupe_capacity))
            });
            if window.is_repeat(id, event.event.id, Instant::now()) {
                self.deps.metrics.deduplicated.increment(1);
                return; // a republished copy: acknowledged, not routed again
            }
        }
        let Some(persona) = self.resolve_persona(&mut event) else {
            handles::rejected(DeadLetterReason::UnknownCommandAct.code());
            dead_letter::record(
                &*self.deps.dead_letters,
                DeadLetter::event(
                    DeadLetterReason::UnknownCommandAct,
                    unknown_act(
                        event.event.command_act_id,
                        &self.scope.integration,
                        &self.scope.connector,
                    ),
                    RoutedEvent::into_event(event),
                    None,
                ),
            );
            return;
        };
        if let (Target::Actor(actor), false) = (&event.event.target, self.internal) {
            if let Some(session) = self.seen.touch(
                &self.deps.sessions,
                &self.scope,
                self.integration.channel_label(),
                persona,
                admitted_at,
                Some(actor.external_id.as_str()),
                self.session_idle,
            ) {
                self.session_event(
                    "session_started",
                    None,
                    persona,
                    session,
                    &delivery,
                    admitted_at,
                );
            }
        }
        let ends = event.event.event.as_str() == "conversation_ended";
        let declared = self.integration.event(event.event.event.as_str()).is_some();
        self.received
            .push((self.routable.len(), event.event.event.clone(), declared));
        // The delivery is still needed after routing only to end sessions.
        let ending = ends.then(|| delivery.clone());
        self.routable.push(Routable {
            event,
            system: false,
            delivery,
            admitted_at,
        });
        if let Some(delivery) = ending {
            for ended in self.deps.sessions.end_integration(
                &self.scope.account,
                persona,
                &self.scope.integration,
            ) {
                self.session_event(
                    "session_ended",
                    Some("conversation_ended"),
                    persona,
                    ended,
                    &delivery,
                    admitted_at,
                );
            }
        }
    }
}

impl Actor for ConnectorActor {
    type Context = Context<Self>;
}

impl Handler<Attach> for ConnectorActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        self.inbox = Some(msg.0);
        Self::start_pump(ctx);
    }
}

impl BatchInbox for ConnectorActor {
    type Item = Inbound;

    fn inbox(&mut self) -> &mut mpsc::Receiver<Inbound> {
        self.inbox
            .as_mut()
            .expect("the pump starts when the inbox is attached")
    }

    fn handle_batch(&mut self, batch: &mut Vec<Inbound>, _ctx: &mut Context<Self>) -> usize {
        let n = batch.len();
        for msg in batch.drain(..) {
            self.admit(msg);
        }
        self.deps.routes.route(
            &self.scope,
            &self.system_scope,
            &mut self.routable,
            &mut self.matched,
        );
        for (at, event, declared) in self.received.drain(..) {
            let matched = self.matched[at];
            // Label values stay bounded: custom idns nobody subscribes to share one label.
            let label = if declared || matched > 0 {
                event
            } else {
                Idn::known(CUSTOM_EVENT_LABEL)
            };
            self.metrics.received(&label);
            if matched == 0 {
                self.metrics.unmatched(&label);
            }
        }
        self.matched.clear();
        n
    }

    fn inbox_closed(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Shutdown> for ConnectorActor {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) {
        // Nothing can be sent after this; the pump drains what was, then stops the actor.
        match &mut self.inbox {
            Some(inbox) => inbox.close(),
            None => ctx.stop(),
        }
    }
}

/// The detail of the dead letter of an event naming a command act this connector never issued
/// (or none) and no actor: the act's plain id.
fn unknown_act(act: Option<uuid::Uuid>, integration: &Idn, connector: &Idn) -> String {
    match act {
        Some(act) => format!(
            "command_act_id {act} is unknown to {integration}/{connector} and the event names no actor"
        ),
        None => format!(
            "the event names neither a command_act_id nor an actor for {integration}/{connector}"
        ),
    }
}

#[cfg(test)]
mod tests;
