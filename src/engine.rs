//! The engine: wires catalog, registry, router, dispatcher, flow instances, sessions and
//! commands together and offers the in-process API every surface (HTTP, queues, tests) uses.
//! Start it inside an actix `System`.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use actix_rt::ArbiterHandle;
use uuid::Uuid;

use crate::admission::delivery::Settle;
use crate::admission::Refusal;
use crate::catalog::Catalog;
use crate::commands::refusal::CommandRefusal;
use crate::commands::router::CommandRouter;
use crate::commands::validation::validate;
use crate::connectors::actor::{ConnectorActor, ConnectorDeps, ConnectorHandle};
use crate::connectors::registry::{ConnectorKey, ConnectorRegistry, ConnectorView, ControlError};
use crate::dead_letter::DeadLetterStore;
use crate::domain::{Command, Event, Flow, Idn, Name, PersonaId};
use crate::egress::CommandSink;
use crate::flow_instance::messages::FlowInstanceSnapshot;
use crate::flow_instance::state::StateStore;
use crate::flow_instance::{FlowDeps, FlowInstanceKey, FlowInstances};
use crate::ingress::Ingress;
use crate::routing::dispatch::Dispatcher;
use crate::routing::explain::{self, Explanation};
use crate::routing::router::{DeleteFlow, FlowRejected, PutFlow, ReplaceFlows, Router};
use crate::session::sweeper::SessionSweeper;
use crate::session::table::SessionJournal;
use crate::session::{SessionTable, SessionView};
use crate::skill_runner::RunnerResolver;
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

/// What the engine plugs in from outside.
pub struct EngineParts {
    pub runners: Arc<dyn RunnerResolver>,
    pub sink: Arc<dyn CommandSink>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Records session starts and ends (the durable store); `None` keeps them in memory only.
    pub sessions: Option<Arc<dyn SessionJournal>>,
}

/// A handle on the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    registry: Arc<ConnectorRegistry>,
    dispatcher: Arc<Dispatcher>,
    router: Addr<Router>,
    ingress: Ingress,
    sessions: Arc<SessionTable>,
    commands: Arc<CommandRouter>,
    dead_letters: Arc<dyn DeadLetterStore>,
    state: Arc<StateStore>,
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
    /// Starts the engine in the current actix system.
    pub fn start(config: EngineConfig, parts: EngineParts) -> Engine {
        let catalog = Catalog::builtin();
        let metrics = Arc::new(EngineMetrics::new());
        let workers: Vec<Arbiter> = (0..config.workers).map(|_| Arbiter::new()).collect();
        let handles: Vec<ArbiterHandle> = workers.iter().map(|a| a.handle()).collect();
        let registry = Arc::new(ConnectorRegistry::new(catalog.clone()));
        let state = Arc::new(StateStore::default());
        let sessions = Arc::new(SessionTable::new(parts.sessions.clone()));

        let dispatcher = Arc::new_cyclic(|weak| {
            let commands = Arc::new(CommandRouter::new(
                registry.clone(),
                weak.clone(),
                parts.dead_letters.clone(),
            ));
            let instances = Arc::new(FlowInstances::start(
                &handles,
                FlowDeps {
                    state: state.clone(),
                    commands,
                    dead_letters: parts.dead_letters.clone(),
                    metrics: metrics.clone(),
                    max_pending: config.max_pending_per_flow_instance,
                    idle_timeout: config.flow_idle_timeout,
                },
                shard_inbox_capacity(config.inflight_limit),
            ));
            Dispatcher::new(instances, catalog.clone())
        });
        let commands = dispatcher.instances().deps.commands.clone();

        let deps = Arc::new(ConnectorDeps {
            dispatcher: dispatcher.clone(),
            sessions: sessions.clone(),
            dead_letters: parts.dead_letters.clone(),
            sink: parts.sink,
            state: state.clone(),
            metrics: metrics.clone(),
            dedupe_window: config.dedupe_window,
            dedupe_capacity: config.dedupe_capacity,
            act_ttl: config.command_act_ttl,
            act_capacity: config.command_act_capacity,
        });
        let next = std::sync::atomic::AtomicUsize::new(0);
        registry.set_factory(Box::new(move |key, integration, internal| {
            let actor = ConnectorActor::new(
                key.account.clone(),
                integration.clone(),
                key.connector.clone(),
                internal,
                deps.clone(),
            );
            let addr = if handles.is_empty() {
                actor.start()
            } else {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % handles.len();
                ConnectorActor::start_in_arbiter(&handles[n], move |_| actor)
            };
            ConnectorHandle::new(addr)
        }));
        registry.ensure_account(&Idn::known(crate::domain::DEFAULT_ACCOUNT));

        let router = Router::new(
            dispatcher.clone(),
            parts.runners,
            metrics.clone(),
            config.invocation_timeout,
        )
        .start();
        SessionSweeper {
            sessions: sessions.clone(),
            dispatcher: dispatcher.clone(),
            idle: config.session_idle_timeout,
            interval: config.session_sweep_interval,
        }
        .start();
        let ingress = Ingress::new(
            registry.clone(),
            parts.dead_letters.clone(),
            metrics,
            config.inflight_limit,
        );
        Engine {
            catalog,
            registry,
            dispatcher,
            router,
            ingress,
            sessions,
            commands,
            dead_letters: parts.dead_letters,
            state,
            _workers: Arc::new(Workers(workers)),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn registry(&self) -> &Arc<ConnectorRegistry> {
        &self.registry
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    pub fn ingress(&self) -> &Ingress {
        &self.ingress
    }

    pub fn sessions(&self) -> Vec<SessionView> {
        self.sessions
            .list(&Idn::known(crate::domain::DEFAULT_ACCOUNT))
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
            .create(account, integration, connector, title, settings)
    }

    pub fn run_connector(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        self.registry.run(id)
    }

    pub fn stop_connector(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        self.registry.stop(id)
    }

    pub fn delete_connector(&self, id: Uuid) -> Result<(), ControlError> {
        self.registry.delete(id)
    }

    /// Adds or replaces a flow; resolves once the index that contains it is live.
    pub async fn put_flow(&self, flow: Flow) -> Result<(), FlowRejected> {
        self.router
            .send(PutFlow(flow))
            .await
            .map_err(|e| FlowRejected {
                field: "router".into(),
                reason: e.to_string(),
            })?
    }

    /// Replaces every flow of `account` at once: all are applied, or none.
    pub async fn replace_flows(&self, account: &Idn, flows: Vec<Flow>) -> Result<(), FlowRejected> {
        self.router
            .send(ReplaceFlows {
                account: account.clone(),
                flows,
            })
            .await
            .map_err(|e| FlowRejected {
                field: "router".into(),
                reason: e.to_string(),
            })?
    }

    pub async fn delete_flow(&self, account: &Idn, agent: &Name, flow: &Name) -> bool {
        self.router
            .send(DeleteFlow {
                account: account.clone(),
                agent: agent.clone(),
                flow: flow.clone(),
            })
            .await
            .unwrap_or(false)
    }

    // ---- data plane ----

    /// Admits an event (waiting for capacity); see [`Ingress::submit`]. The ingress's own
    /// future, not a wrapper around it: the event is moved once less.
    pub fn submit(
        &self,
        event: Event,
        source: Option<Box<dyn Settle>>,
    ) -> impl std::future::Future<Output = Result<(), Refusal>> + '_ {
        self.ingress.submit(event, source)
    }

    /// Admits events in order, sharing permits and look-ups; see [`Ingress::submit_batch`].
    pub async fn submit_batch(
        &self,
        events: Vec<(Event, Option<Box<dyn Settle>>)>,
    ) -> Vec<Result<(), Refusal>> {
        self.ingress.submit_batch(events).await
    }

    /// Checks what can be checked of a command before it is sent: its connector runs, its
    /// integration accepts it, its required arguments are set.
    pub fn check_command(&self, command: &Command) -> Result<(), CommandRefusal> {
        self.registry
            .with_running(
                &ConnectorKey::new(&command.account, &command.integration, &command.connector),
                (),
                |_, ()| (),
            )
            .map_err(|((), reach)| CommandRefusal::from(reach))?;
        let integration = self
            .catalog
            .get(command.integration.as_str())
            .ok_or_else(|| CommandRefusal::UnknownIntegration(command.integration.to_string()))?;
        validate(integration, command)
    }

    /// Sends a command for `persona` outside any invocation. Returns the act id.
    pub fn send_command(&self, command: Command, persona: PersonaId) -> Uuid {
        let act = Uuid::now_v7();
        self.commands.send_for(command, act, persona, None);
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
            &self.dispatcher.index(),
            &self.registry,
            account,
            integration,
            connector,
            event,
        )
    }

    /// Live flow instances.
    pub fn flow_instances(&self) -> usize {
        self.dispatcher.instances().len()
    }

    /// What the flow instance `(agent, flow, persona)` holds now; `None` if it is not live.
    pub async fn inspect_flow_instance(
        &self,
        account: &str,
        agent: &str,
        flow: &str,
        persona: PersonaId,
    ) -> Option<FlowInstanceSnapshot> {
        let id = self.dispatcher.index().flow(account, agent, flow)?.id;
        self.dispatcher
            .instances()
            .inspect(FlowInstanceKey { flow: id, persona })
            .await
    }
}
