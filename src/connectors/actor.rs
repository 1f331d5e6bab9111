//! The connector actor: one per running connector. It drains admitted events from its inbox in
//! batches, resolves the persona of each, drops repeats, starts sessions, routes the event
//! through the subscription index to the flow shards, and validates the commands addressed to
//! its connector (its mailbox) before they leave.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, Context, Handler, Message};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::system;
use crate::admission::dedupe::DedupeWindow;
use crate::admission::delivery::Delivery;
use crate::catalog::Integration;
use crate::catalog::Runs;
use crate::commands::refusal::{refuse, result_event, CommandRefusal};
use crate::commands::validation::validate;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{Command, Event, Idn, PersonaId, RoutedEvent, SharedEvent, Target};
use crate::egress::EgressError;
use crate::egress::{CommandSink, OutboundCommand};
use crate::flow_instance::directory::Outbox;
use crate::flow_instance::state::StateStore;
use crate::inbox::BatchInbox;
use crate::routing::dispatch::Dispatcher;
use crate::routing::index::{FlowRoute, ScopeKey, SubscriptionIndex};
use crate::session::seen::SeenSessions;
use crate::session::table::SessionTable;
use crate::telemetry::handles::{self, ConnectorMetrics, EngineMetrics, CUSTOM_EVENT_LABEL};

/// What every connector actor needs, shared.
pub struct ConnectorDeps {
    pub dispatcher: Arc<Dispatcher>,
    pub sessions: Arc<SessionTable>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub sink: Arc<dyn CommandSink>,
    pub state: Arc<StateStore>,
    pub metrics: Arc<EngineMetrics>,
    pub dedupe_window: Duration,
    pub dedupe_capacity: usize,
    /// How long a command act id stays known for routing its results.
    pub act_ttl: Duration,
    pub act_capacity: usize,
}

/// Admitted events a connector's inbox holds; past it, `Ingress::submit` waits.
pub const INBOX_CAPACITY: usize = 1024;

/// How the engine reaches a running connector: its inbox for admitted events, its mailbox for
/// commands and control.
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
    /// the mailbox, ahead of any `Shutdown` (that is sent after the handle left the registry).
    pub fn inbox(&self) -> &mpsc::Sender<Inbound> {
        self.inbox.get_or_init(|| {
            let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
            self.addr.do_send(Attach(rx));
            tx
        })
    }
}

/// The receiving end of the connector's inbox, made on its first event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(mpsc::Receiver<Inbound>);

/// An admitted event for this connector. Travels through the connector's inbox.
pub struct Inbound {
    /// With the persona its target names (the connector may resolve it from a command act).
    pub event: SharedEvent,
    pub delivery: Delivery,
    pub admitted_at: Instant,
}

/// A command addressed to this connector.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound {
    pub command: Command,
    pub act: Uuid,
    pub persona: PersonaId,
    /// The invoking flow, when the command came from a skill.
    pub flow: Option<Arc<FlowRoute>>,
}

/// Stop after the events already in the inbox and the messages already in the mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct ConnectorActor {
    scope: ScopeKey,
    system_scope: ScopeKey,
    integration: Arc<Integration>,
    internal: bool,
    deps: Arc<ConnectorDeps>,
    metrics: ConnectorMetrics,
    dedupe: Option<Box<DedupeWindow>>,
    /// Command act id → persona, for commands sent to adapters: their results come back to
    /// the same persona. Bounded by count and age; `act_order` gives the eviction order.
    acts: FxHashMap<Uuid, PersonaId>,
    act_order: std::collections::VecDeque<(Instant, Uuid)>,
    /// Attached on the first event (see [`ConnectorHandle::inbox`]).
    inbox: Option<mpsc::Receiver<Inbound>>,
    /// The clocks of this connector's live sessions.
    seen: SeenSessions,
    /// Matches of the batch being handled, per flow shard.
    outbox: Outbox,
}

impl ConnectorActor {
    pub fn new(
        account: Idn,
        integration: Arc<Integration>,
        connector: Idn,
        internal: bool,
        deps: Arc<ConnectorDeps>,
    ) -> Self {
        let system = Idn::known("system");
        let outbox = deps.dispatcher.instances().outbox();
        ConnectorActor {
            system_scope: ScopeKey::new(account.clone(), system.clone(), system),
            scope: ScopeKey::new(account, integration.idn.clone(), connector),
            metrics: ConnectorMetrics::new(&integration.idn, integration.channel_label()),
            integration,
            internal,
            deps,
            dedupe: None,
            acts: FxHashMap::default(),
            act_order: std::collections::VecDeque::new(),
            inbox: None,
            seen: SeenSessions::default(),
            outbox,
        }
    }

    /// The persona of `event`: a command act this connector issued wins over the actor named.
    fn resolve_persona(&self, event: &mut SharedEvent) -> Option<PersonaId> {
        let issued = event
            .event
            .command_act_id
            .and_then(|act| self.acts.get(&act).copied());
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

    fn remember_act(&mut self, act: Uuid, persona: PersonaId, now: Instant) {
        // Amortized O(1): the oldest acts leave first, by age or past the capacity.
        while let Some((at, old)) = self.act_order.front() {
            if now.duration_since(*at) < self.deps.act_ttl
                && self.act_order.len() < self.deps.act_capacity
            {
                break;
            }
            self.acts.remove(old);
            self.act_order.pop_front();
        }
        self.acts.insert(act, persona);
        self.act_order.push_back((now, act));
    }

    #[allow(clippy::too_many_arguments)]
    fn route_session_event(
        &mut self,
        index: &SubscriptionIndex,
        name: &str,
        reason: Option<&str>,
        persona: PersonaId,
        session: Uuid,
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
        e.arguments.push("session_id", session.to_string());
        e.arguments
            .push("integration_idn", self.scope.integration.as_str());
        e.arguments
            .push("connector_idn", self.scope.connector.as_str());
        if let Some(r) = reason {
            e.arguments.push("reason", r);
        }
        dispatch(
            &self.deps,
            &mut self.outbox,
            index,
            Arc::new(RoutedEvent { event: e, persona }),
            &self.system_scope,
            delivery.clone(),
            admitted_at,
        );
    }
}

/// Routes `event` against `index`, gathering its matches in `outbox` (sent per flow shard at
/// the end of the batch); returns how many flows receive it.
fn dispatch(
    deps: &ConnectorDeps,
    outbox: &mut Outbox,
    index: &SubscriptionIndex,
    event: SharedEvent,
    scope: &ScopeKey,
    delivery: Delivery,
    admitted_at: Instant,
) -> usize {
    let instances = deps.dispatcher.instances();
    deps.dispatcher
        .route_in(index, event, scope, delivery, admitted_at, &mut |m| {
            instances.post(outbox, m)
        })
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
        // One look at the live index per batch, one message per flow shard.
        let index = self.deps.dispatcher.index();
        let n = batch.len();
        for msg in batch.drain(..) {
            self.admit(&index, msg);
        }
        self.deps.dispatcher.instances().flush(&mut self.outbox);
        n
    }

    fn inbox_closed(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl ConnectorActor {
    fn admit(&mut self, index: &SubscriptionIndex, msg: Inbound) {
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
                    format!(
                        "command_act_id {:?} is unknown to {}/{} and the event names no actor",
                        event.event.command_act_id, self.scope.integration, self.scope.connector
                    ),
                    RoutedEvent::into_event(event),
                    None,
                ),
            );
            return;
        };
        let from_actor = matches!(event.event.target, Target::Actor(_));
        if from_actor && !self.internal {
            if let Some(session) = self.seen.touch(
                &self.deps.sessions,
                &self.scope,
                self.integration.channel_label(),
                persona,
                admitted_at,
                match &event.event.target {
                    Target::Actor(a) => Some(a.external_id.as_str()),
                    _ => None,
                },
            ) {
                self.route_session_event(
                    index,
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
        let event_idn = event.event.event.clone();
        // The delivery is still needed after routing only to end sessions.
        let ending = ends.then(|| delivery.clone());
        let matched = dispatch(
            &self.deps,
            &mut self.outbox,
            index,
            event,
            &self.scope,
            delivery,
            admitted_at,
        );
        // Label values stay bounded: custom idns nobody subscribes to share one label.
        let label = if declared || matched > 0 {
            event_idn
        } else {
            Idn::known(CUSTOM_EVENT_LABEL)
        };
        self.metrics.received(&label);
        if matched == 0 {
            self.metrics.unmatched(&label);
        }
        if let Some(delivery) = ending {
            for ended in self.deps.sessions.end_integration(
                &self.scope.account,
                persona,
                &self.scope.integration,
            ) {
                self.route_session_event(
                    index,
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

impl Handler<Outbound> for ConnectorActor {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _ctx: &mut Context<Self>) {
        let Outbound {
            command,
            act,
            persona,
            flow,
        } = msg;
        if let Err(refusal) = validate(&self.integration, &command) {
            refuse(
                &self.deps.dispatcher,
                &*self.deps.dead_letters,
                command,
                act,
                persona,
                refusal,
            );
            return;
        }
        let command_idn = command.command.clone();
        let result = if self.integration.idn == *"system" {
            system::execute(&self.deps, &command, act, persona, flow.as_deref())
        } else {
            if self.integration.runs() == Runs::External {
                self.remember_act(act, persona, Instant::now());
            }
            self.deps
                .sink
                .deliver(OutboundCommand {
                    command: command.clone(),
                    act,
                    persona,
                })
                .map_err(|e| match e {
                    EgressError::Full => {
                        CommandRefusal::EgressFull(self.integration.idn.to_string())
                    }
                    EgressError::NoTransport => {
                        CommandRefusal::NoTransport(self.integration.idn.to_string())
                    }
                    EgressError::NotBuilt => {
                        CommandRefusal::NotBuilt(self.integration.idn.to_string())
                    }
                })
                .map(|()| {
                    if self.integration.runs() == Runs::Native {
                        // The daemon carried it out itself: it reports the success.
                        answer_success(
                            &self.deps.dispatcher,
                            &self.integration,
                            &command,
                            act,
                            persona,
                        );
                    }
                })
        };
        match result {
            Ok(()) => self.metrics.command(&command_idn, "sent"),
            Err(refusal) => refuse(
                &self.deps.dispatcher,
                &*self.deps.dead_letters,
                command,
                act,
                persona,
                refusal,
            ),
        }
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

/// Emits `result_success` for a command the daemon executed itself, if its integration reports
/// success for that command.
pub(crate) fn answer_success(
    dispatcher: &Arc<Dispatcher>,
    integration: &Integration,
    command: &Command,
    act: Uuid,
    persona: PersonaId,
) {
    let reports = integration
        .command(command.command.as_str())
        .is_some_and(|d| d.reports("result_success"));
    if reports {
        dispatcher.route_internal(result_event(command, "result_success", act, persona));
    }
}
