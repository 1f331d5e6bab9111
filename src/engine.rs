//! The engine: wires catalog, directory, command stage, flow instances, dispatcher, connectors,
//! sessions and ingress together, and offers the in-process API every surface (HTTP, queues,
//! tests) uses.
//! Start it inside an actix `System`.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use actix_rt::ArbiterHandle;
use uuid::Uuid;

use crate::catalog::Catalog;
use crate::commands::refusal::CommandRefusal;
use crate::commands::{CommandRouter, ConnectorChange, Natives};
use crate::connectors::actor::{ConnectorActor, ConnectorDeps, ConnectorHandle};
use crate::connectors::acts::{ActJournal, CommandActs, RecordedAct};
use crate::connectors::registry::{ConnectorRegistry, ConnectorView, ControlError};
use crate::connectors::Directory;
use crate::dead_letter::DeadLetterStore;
use crate::domain::{Command, Flow, Idn, Name, PersonaId};
use crate::flow_instance::messages::FlowInstanceSnapshot;
use crate::flow_instance::state::{StateJournal, StateStore};
use crate::flow_instance::{FlowDeps, FlowInstanceKey, FlowInstances};
use crate::ingress::{Ingress, InternalEvents};
use crate::invocation::RunnerResolver;
use crate::natives::component::{Component, NativeContext, NativeSupport, Routes};
use crate::outbound::outbox::{OutboxSettings, OutboxSlot};
use crate::relay::delivery::{AdapterDelivery, DeliveryParts};
use crate::relay::{CommandSink, NoTransport, Relay};
use crate::routing::explain::{self, Explanation};
use crate::routing::flow_table::{DeleteFlow, FlowRejected, FlowTable, PutFlow, ReplaceFlows};
use crate::routing::{Dispatcher, LiveIndex};
use crate::session::sweeper::SessionSweeper;
use crate::session::table::SessionJournal;
use crate::session::{SessionTable, SessionView};
use crate::telemetry::handles::EngineMetrics;

/// Engine settings with their defaults (see `config/switchboard.toml` for the annotated
/// version of each).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker arbiters (threads) for connector actors and flow shards. 0: the current one.
    pub workers: usize,
    pub invocation_timeout: Duration,
    pub flow_idle_timeout: Duration,
    pub session_idle_timeout: Duration,
    pub session_sweep_interval: Duration,
    pub max_pending_per_flow_instance: usize,
    pub inflight_limit: usize,
    pub dedupe_window: Duration,
    pub dedupe_capacity: usize,
    pub command_act_ttl: Duration,
    pub command_act_capacity: usize,
    /// Flow state values older than this read as unset; at most `flow_state_capacity` kept.
    pub flow_state_ttl: Duration,
    pub flow_state_capacity: usize,
    /// How actors' persona ids are derived (the daemon keys them; see `PersonaKey`).
    pub persona_key: crate::domain::PersonaKey,
}

impl EngineConfig {
    pub const DEFAULT_INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_FLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    pub const DEFAULT_SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_PENDING: usize = 1_000;
    pub const DEFAULT_INFLIGHT_LIMIT: usize = 100_000;
    pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(10 * 60);
    pub const DEFAULT_DEDUPE_CAPACITY: usize = 100_000;
    pub const DEFAULT_ACT_TTL: Duration = Duration::from_secs(60 * 60);
    pub const DEFAULT_ACT_CAPACITY: usize = 100_000;
    pub const DEFAULT_FLOW_STATE_TTL: Duration = StateStore::DEFAULT_TTL;
    pub const DEFAULT_FLOW_STATE_CAPACITY: usize = StateStore::DEFAULT_CAPACITY;
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            invocation_timeout: Self::DEFAULT_INVOCATION_TIMEOUT,
            flow_idle_timeout: Self::DEFAULT_FLOW_IDLE_TIMEOUT,
            session_idle_timeout: Self::DEFAULT_SESSION_IDLE_TIMEOUT,
            session_sweep_interval: Self::DEFAULT_SESSION_SWEEP_INTERVAL,
            max_pending_per_flow_instance: Self::DEFAULT_MAX_PENDING,
            inflight_limit: Self::DEFAULT_INFLIGHT_LIMIT,
            dedupe_window: Self::DEFAULT_DEDUPE_WINDOW,
            dedupe_capacity: Self::DEFAULT_DEDUPE_CAPACITY,
            command_act_ttl: Self::DEFAULT_ACT_TTL,
            command_act_capacity: Self::DEFAULT_ACT_CAPACITY,
            flow_state_ttl: Self::DEFAULT_FLOW_STATE_TTL,
            flow_state_capacity: Self::DEFAULT_FLOW_STATE_CAPACITY,
            persona_key: crate::domain::PersonaKey::Unkeyed,
        }
    }
}

/// Events a flow shard's inbox holds. Admitted events hold an in-flight permit until they are
/// dispatched, so at most `inflight_limit` of them wait anywhere; as many again leave room for
/// the internal events they cause (session starts, command results). Past it an event is
/// dead-lettered (`flow_queue_full`).
fn shard_inbox_capacity(inflight_limit: usize) -> usize {
    inflight_limit.max(1).saturating_mul(2)
}

/// A connector's own session idle timeout: `session_timeout_seconds` or
/// `conversation_timeout_seconds`, whichever its integration declares (with its default).
fn session_idle(
    integration: &crate::catalog::Integration,
    settings: &crate::catalog::settings::Settings,
) -> Option<Duration> {
    ["session_timeout_seconds", "conversation_timeout_seconds"]
        .into_iter()
        .find_map(|idn| {
            crate::catalog::settings::effective(&integration.spec.connector_settings, settings, idn)
        })
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// The outbox's bounds: an attempt may last as long as an `api` connector's `timeout_seconds`
/// allows.
fn outbox_settings() -> OutboxSettings {
    OutboxSettings {
        attempt_timeout: Duration::from_secs(3600 + 5),
        ..OutboxSettings::default()
    }
}

/// Events the internal-events queue holds (command results, session ends, system events):
/// as many as may be in flight, since each admitted event causes a few at most.
fn internal_queue_capacity(inflight_limit: usize) -> usize {
    inflight_limit.max(1024)
}

/// What the engine plugs in from outside.
pub struct EngineParts {
    pub runners: Arc<dyn RunnerResolver>,
    /// Where commands of external integrations leave.
    pub relay: Relay,
    /// Native integrations carried out in the daemon (the registration list), each built
    /// once the engine's parts exist.
    pub natives: Vec<Box<dyn Component>>,
    /// What natives get besides the engine's parts (the outbound toolkit, the store, the start
    /// gate, the shutdown signal).
    pub support: NativeSupport,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Records session starts and ends (the durable store); `None` keeps them in memory only.
    pub sessions: Option<Arc<dyn SessionJournal>>,
    /// Records command acts issued to adapters; `None`: memory only.
    pub acts: Option<Arc<dyn ActJournal>>,
    /// Records flow state values; `None`: memory only.
    pub state: Option<Arc<dyn StateJournal>>,
}

/// A rotated signing secret.
pub struct Rotated {
    pub view: ConnectorView,
    /// The setting rotated (`signing_secret`, `command_delivery_secret`).
    pub setting: &'static str,
    /// The new secret: shown once.
    pub secret: String,
    /// Until when the secret it replaced still counts (none: no overlap).
    pub previous_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// A handle on the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    registry: Arc<ConnectorRegistry>,
    index: Arc<LiveIndex>,
    dispatcher: Arc<Dispatcher>,
    instances: Arc<FlowInstances>,
    flows: Addr<FlowTable>,
    ingress: Ingress,
    sessions: Arc<SessionTable>,
    commands: Arc<CommandRouter>,
    dead_letters: Arc<dyn DeadLetterStore>,
    state: Arc<StateStore>,
    acts: Arc<CommandActs>,
    routes: Arc<Vec<Routes>>,
    _workers: Arc<Workers>,
}

struct Workers(Vec<Arbiter>);

impl Drop for Workers {
    fn drop(&mut self) {
        for a in &self.0 {
            a.stop();
        }
    }
}

impl Engine {
    /// Starts the engine in the current actix system. Every part is built after what it
    /// needs, in stage order from the back: the command stage first (it needs only the
    /// directory, the natives and the internal-events sink), then the flow instances that send
    /// commands to it, the dispatcher that feeds them, the connector actors that route through
    /// it, and ingress. Call-backs (result events, session ends, system events) reach routing
    /// through the internal-events queue, made first and drained last.
    pub fn start(config: EngineConfig, parts: EngineParts) -> Engine {
        let catalog = Catalog::builtin();
        let metrics = Arc::new(EngineMetrics::new());
        let workers: Vec<Arbiter> = (0..config.workers).map(|_| Arbiter::new()).collect();
        let handles: Vec<ArbiterHandle> = workers.iter().map(|a| a.handle()).collect();
        let directory = Arc::new(Directory::new(catalog.clone()));
        let state = Arc::new(StateStore::new(
            config.flow_state_ttl,
            config.flow_state_capacity,
            parts.state.clone(),
        ));
        let sessions = Arc::new(SessionTable::new(parts.sessions.clone()));
        let index = Arc::new(LiveIndex::default());
        let acts = Arc::new(
            CommandActs::new(config.command_act_ttl, config.command_act_capacity)
                .with_journal(parts.acts.clone()),
        );
        let (events, queue) = InternalEvents::new(
            internal_queue_capacity(config.inflight_limit),
            parts.dead_letters.clone(),
        );

        let outbox = OutboxSlot::new();
        let store = parts.support.store;
        let cx = NativeContext {
            outbox: outbox.clone(),
            events: events.clone(),
            directory: directory.clone(),
            catalog: catalog.clone(),
            sessions: sessions.clone(),
            index: index.clone(),
            persona_key: config.persona_key,
            state: state.clone(),
            dead_letters: parts.dead_letters.clone(),
            egress: parts.support.egress,
            store: store.clone(),
            secrets: parts.support.secrets,
            started: parts.support.started,
            shutdown: parts.support.shutdown,
            stream: parts.support.stream,
        };
        let mut natives = Natives::default();
        let mut routes = Vec::new();
        for component in parts.natives {
            let idn = component.idn();
            crate::dead_letter::native::register(component.dead_letter_reasons());
            let built = component.build(&cx);
            natives = natives.with(idn, built.executor);
            routes.extend(built.routes);
        }
        let relay: Arc<dyn CommandSink> = match (parts.relay, &store) {
            (Relay::To(sink), _) => sink,
            (Relay::Embedded, None) => Arc::new(NoTransport),
            (Relay::Embedded, Some(_)) => {
                let delivery = AdapterDelivery::new(DeliveryParts {
                    directory: directory.clone(),
                    egress: cx.egress.clone(),
                    events: events.clone(),
                    dead_letters: parts.dead_letters.clone(),
                    outbox: outbox.clone(),
                });
                routes.push(Routes::new(delivery.routes()));
                delivery
            }
        };
        if let Some(store) = store {
            // Replayed messages answer their owners: not before the daemon restored its state.
            let (started, shutdown) = (cx.started.clone(), cx.shutdown.clone());
            let dead_letters = parts.dead_letters.clone();
            tokio::spawn(async move {
                if !started.wait().await || shutdown.is_cancelled() {
                    return;
                }
                if let Err(e) = outbox.start(store, dead_letters, outbox_settings()).await {
                    tracing::error!(error = %e, "the outbox did not start");
                }
            });
        }
        let commands = Arc::new(CommandRouter::new(
            directory.clone(),
            natives,
            relay,
            events.clone(),
            parts.dead_letters.clone(),
            acts.clone(),
        ));
        let instances = Arc::new(FlowInstances::start(
            &handles,
            FlowDeps {
                state: state.clone(),
                commands: commands.clone(),
                sessions: sessions.clone(),
                dead_letters: parts.dead_letters.clone(),
                events: events.clone(),
                metrics: metrics.clone(),
                max_pending: config.max_pending_per_flow_instance,
                idle_timeout: config.flow_idle_timeout,
            },
            shard_inbox_capacity(config.inflight_limit),
        ));
        let dispatcher = Arc::new(Dispatcher::new(index.clone(), instances.clone()));

        let deps = Arc::new(ConnectorDeps {
            routes: dispatcher.clone(),
            sessions: sessions.clone(),
            acts: acts.clone(),
            dead_letters: parts.dead_letters.clone(),
            metrics: metrics.clone(),
            dedupe_window: config.dedupe_window,
            dedupe_capacity: config.dedupe_capacity,
        });
        let next = std::sync::atomic::AtomicUsize::new(0);
        let registry = Arc::new(ConnectorRegistry::new(
            directory.clone(),
            Box::new(move |key, integration, internal, settings| {
                let actor = ConnectorActor::new(
                    key.clone(),
                    integration.clone(),
                    internal,
                    session_idle(integration, settings),
                    deps.clone(),
                );
                let addr = if handles.is_empty() {
                    actor.start()
                } else {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % handles.len();
                    ConnectorActor::start_in_arbiter(&handles[n], move |_| actor)
                };
                ConnectorHandle::new(addr)
            }),
        ));
        registry.ensure_account(&Idn::known(crate::domain::DEFAULT_ACCOUNT));

        let flows = FlowTable::new(
            index.clone(),
            parts.runners,
            metrics.clone(),
            config.invocation_timeout,
        )
        .start();
        SessionSweeper {
            sessions: sessions.clone(),
            events,
            idle: config.session_idle_timeout,
            interval: config.session_sweep_interval,
        }
        .start();
        let ingress = Ingress::new(
            directory,
            catalog.clone(),
            parts.dead_letters.clone(),
            metrics,
            config.inflight_limit,
        )
        .with_persona_key(config.persona_key)
        .with_room(Arc::new(crate::routing::room::InstanceRoom::new(
            index.clone(),
            config.max_pending_per_flow_instance,
        )));
        queue.pump(ingress.clone(), dispatcher.clone());
        Engine {
            catalog,
            registry,
            index,
            dispatcher,
            instances,
            flows,
            ingress,
            sessions,
            commands,
            dead_letters: parts.dead_letters,
            state,
            acts,
            routes: Arc::new(routes),
            _workers: Arc::new(Workers(workers)),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The HTTP routes native integrations own.
    pub fn native_routes(&self) -> &[Routes] {
        &self.routes
    }

    pub fn registry(&self) -> &Arc<ConnectorRegistry> {
        &self.registry
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The subscription index in force.
    pub fn index(&self) -> &Arc<LiveIndex> {
        &self.index
    }

    pub fn ingress(&self) -> &Ingress {
        &self.ingress
    }

    /// Live sessions of `account`.
    pub fn sessions(&self, account: &Idn) -> Vec<SessionView> {
        self.sessions.list(account)
    }

    pub fn session_table(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    pub fn dead_letters(&self) -> &Arc<dyn DeadLetterStore> {
        &self.dead_letters
    }

    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Puts back the command acts an earlier run recorded (at start, before intake).
    pub fn restore_acts(&self, recorded: impl IntoIterator<Item = RecordedAct>) {
        self.acts.restore(recorded, tokio::time::Instant::now());
    }

    // ---- control plane ----

    /// Creates a stopped connector.
    pub fn create_connector(
        &self,
        account: &Idn,
        integration: &str,
        connector: &str,
        title: &str,
        settings: &[(String, String)],
    ) -> Result<ConnectorView, ControlError> {
        self.registry
            .create(account, integration, connector, title, settings, |key| {
                self.commands.connector_created(key)
            })
    }

    /// Starts a connector; its native integration (or its adapter's delivery) hears it. An
    /// adapter's connector whose commands have no way to it does not run (naming the setting).
    pub fn run_connector(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        let (key, status) = self.registry.check_runnable(id)?;
        if status != crate::connectors::registry::Status::Running {
            self.commands
                .check_run(&key)
                .map_err(|e| ControlError::Invalid {
                    field: format!("settings.{}", e.setting),
                    reason: e.reason,
                })?;
        }
        let view = self.registry.run(id)?;
        self.commands
            .connector_changed(&view.key, ConnectorChange::Running);
        Ok(view)
    }

    /// Rotates connector `id`'s signing secret: a new one (answered, to be shown once) in its
    /// place; the old one keeps counting (verifying, signing beside the new) for `overlap`.
    pub fn rotate_secret(&self, id: Uuid, overlap: Duration) -> Result<Rotated, ControlError> {
        let view = self.registry.directory().get(id)?;
        let setting =
            self.commands
                .rotatable_secret(&view.key)
                .ok_or_else(|| ControlError::Invalid {
                    field: "id".into(),
                    reason: format!(
                        "connector {}/{} has no signing secret to rotate",
                        view.key.integration, view.key.connector
                    ),
                })?;
        let current = self.registry.directory().setting(&view.key, setting);
        let secret = self
            .commands
            .fresh_secret(&view.key)
            .unwrap_or_else(crate::relay::webhook::new_secret);
        let (changes, previous_until) =
            crate::relay::webhook::rotation(setting, current, &secret, overlap, chrono::Utc::now());
        let view = self.registry.update_as(
            id,
            None,
            &changes,
            crate::catalog::settings::Writer::Daemon,
        )?;
        Ok(Rotated {
            view,
            setting,
            secret,
            previous_until,
        })
    }

    /// Stops a connector; its native integration hears it.
    pub fn stop_connector(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        let view = self.registry.stop(id)?;
        self.commands
            .connector_changed(&view.key, ConnectorChange::Stopped);
        Ok(view)
    }

    /// Deletes a stopped connector; its native integration forgets what it held for it.
    pub fn delete_connector(&self, id: Uuid) -> Result<(), ControlError> {
        let key = self.registry.delete(id)?;
        self.commands
            .connector_changed(&key, ConnectorChange::Deleted);
        Ok(())
    }

    /// Adds or replaces a flow; resolves once the index that contains it is live.
    pub async fn put_flow(&self, flow: Flow) -> Result<(), FlowRejected> {
        self.flows
            .send(PutFlow(flow))
            .await
            .map_err(|e| FlowRejected {
                field: "flows".into(),
                reason: e.to_string(),
            })?
    }

    /// Replaces every flow of `account` at once: all are applied, or none.
    pub async fn replace_flows(&self, account: &Idn, flows: Vec<Flow>) -> Result<(), FlowRejected> {
        self.flows
            .send(ReplaceFlows {
                account: account.clone(),
                flows,
            })
            .await
            .map_err(|e| FlowRejected {
                field: "flows".into(),
                reason: e.to_string(),
            })?
    }

    pub async fn delete_flow(&self, account: &Idn, agent: &Name, flow: &Name) -> bool {
        self.flows
            .send(DeleteFlow {
                account: account.clone(),
                agent: agent.clone(),
                flow: flow.clone(),
            })
            .await
            .unwrap_or(false)
    }

    // ---- data plane ----

    /// Checks what can be checked of a command before it is sent: its connector runs, its
    /// integration accepts it, its required arguments are set, its native integration has a
    /// handler.
    pub fn check_command(&self, command: &Command) -> Result<(), CommandRefusal> {
        self.commands.check(command).map(|_| ())
    }

    /// Sends a command for `persona` outside any invocation. Returns the act id.
    pub fn send_command(&self, command: Command, persona: PersonaId) -> Uuid {
        let act = Uuid::now_v7();
        self.commands.send_for(command, act, persona, None, None);
        act
    }

    // ---- operations ----

    pub fn explain(
        &self,
        account: &Idn,
        integration: &Idn,
        connector: &Idn,
        event: &Idn,
    ) -> Explanation {
        explain::explain(
            &self.index.load(),
            &self.registry,
            account,
            integration,
            connector,
            event,
        )
    }

    /// Live flow instances.
    pub fn flow_instances(&self) -> usize {
        self.instances.len()
    }

    /// What the flow instance `(agent, flow, persona)` holds now; `None` if it is not live.
    pub async fn inspect_flow_instance(
        &self,
        account: &str,
        agent: &str,
        flow: &str,
        persona: PersonaId,
    ) -> Option<FlowInstanceSnapshot> {
        let id = self.index.load().flow(account, agent, flow)?.id;
        self.instances
            .inspect(FlowInstanceKey { flow: id, persona })
            .await
    }
}
