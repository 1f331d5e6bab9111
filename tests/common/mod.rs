//! The in-process test harness: a real engine with recording runners, a channel egress and an
//! in-memory dead-letter store, built by [`Harness::builder`]. Waits are on conditions
//! (delivery settlement, channels, [`eventually`]), never on fixed sleeps.
#![allow(dead_code)]

pub mod bot_api;
pub mod daemon;
pub mod nats;
pub mod oauth_provider;
pub mod routes;
pub mod runner_server;
pub mod socketio;
pub mod wait;

// Not every test crate uses every one of these.
#[allow(unused_imports)]
pub use wait::{eventually, eventually_explained, within, PATIENCE};

use std::sync::{Arc, Mutex};
use switchboard::natives::component::{Component, NativeSupport, Prebuilt, StartGate, Started};
use switchboard::natives::system::SystemComponent;

use switchboard::admission::delivery::Settlement;
use switchboard::admission::Refusal;
use switchboard::catalog::{SettingSpec, ValueType};
use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::{Event, Idn, PersonaId};
use switchboard::flow_instance::messages::FlowInstanceSnapshot;
use switchboard::relay::{AdapterCommand, ChannelSink};
use switchboard::skill_runner::in_process::{ChannelRunner, ChannelRunnerRx, FnRunner};
use switchboard::skill_runner::webhook::WebhookRunners;
use switchboard::skill_runner::{Invocation, Outcome, Reply, RunnerRegistry, SkillRunner};
use switchboard::wire::FlowDoc;
use switchboard::{Engine, EngineConfig, EngineParts};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub struct Harness {
    pub engine: Engine,
    pub account: Idn,
    /// Every invocation of the default runner, which completes at once with no commands.
    pub recorded: Arc<Mutex<Vec<Invocation>>>,
    /// Invocations of flows whose runner is `{kind: in_process, name: manual}`.
    pub manual: ChannelRunnerRx,
    pub relay: mpsc::Receiver<AdapterCommand>,
    pub dead: Arc<MemoryDeadLetters>,
}

/// How to build a [`Harness`]: the engine's configuration and which runners its registry
/// resolves. Unset options keep the defaults of [`Harness::start`].
#[derive(Default)]
pub struct HarnessBuilder {
    config: EngineConfig,
    default_runner: Option<Arc<dyn SkillRunner>>,
    webhooks: Option<WebhookRunners>,
    natives: Vec<Box<dyn Component>>,
    started: Option<Started>,
}

impl HarnessBuilder {
    /// Registers a native integration for `integration` (none by default: their commands are
    /// refused as having no handler).
    #[allow(dead_code)] // used by some test binaries only
    pub fn native(
        mut self,
        integration: &'static str,
        native: Arc<dyn switchboard::commands::NativeIntegration>,
    ) -> Self {
        self.natives.push(Box::new(Prebuilt {
            idn: integration,
            executor: native,
        }));
        self
    }

    /// Registers a native component, built when the engine starts.
    #[allow(dead_code)] // used by some test binaries only
    pub fn component(mut self, component: Box<dyn Component>) -> Self {
        self.natives.push(component);
        self
    }

    /// The start gate natives wait for (default: open).
    #[allow(dead_code)] // used by some test binaries only
    pub fn started(mut self, started: Started) -> Self {
        self.started = Some(started);
        self
    }

    /// The engine's configuration (default: `EngineConfig::default()`).
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The runner of flows that name none, instead of the one that records every invocation
    /// into `Harness::recorded` and completes at once (which then records nothing).
    pub fn default_runner(mut self, runner: Arc<dyn SkillRunner>) -> Self {
        self.default_runner = Some(runner);
        self
    }

    /// Also resolve `{kind: webhook}` runners with `webhooks`, attached to the engine's session
    /// table as the daemon attaches them.
    pub fn webhooks(mut self, webhooks: &WebhookRunners) -> Self {
        self.webhooks = Some(webhooks.clone());
        self
    }

    /// Starts the engine in the current actix system.
    pub fn start(self) -> Harness {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let default = self.default_runner.unwrap_or_else(|| {
            let r = recorded.clone();
            Arc::new(FnRunner::new(move |inv: &Invocation| {
                r.lock().unwrap().push(inv.clone());
                (Outcome::Completed, Vec::new())
            }))
        });
        let (manual_runner, manual) = ChannelRunner::new(1024);
        let mut runners =
            RunnerRegistry::new(default).with_named("manual", Arc::new(manual_runner));
        if let Some(webhooks) = &self.webhooks {
            runners = runners.with_webhooks(webhooks.clone());
        }
        let (sink, relay) = ChannelSink::new(1024);
        let dead = Arc::new(MemoryDeadLetters::new(10_000));
        let engine = Engine::start(
            self.config,
            EngineParts {
                runners: Arc::new(runners),
                relay: Arc::new(sink).into(),
                natives: std::iter::once(Box::new(SystemComponent) as Box<dyn Component>)
                    .chain(self.natives)
                    .collect(),
                support: NativeSupport {
                    started: self.started.unwrap_or_else(StartGate::open),
                    ..NativeSupport::default()
                },
                dead_letters: dead.clone(),
                sessions: None,
                acts: None,
                state: None,
            },
        );
        Harness {
            engine,
            account: Idn::known("default"),
            recorded,
            manual,
            relay,
            dead,
        }
    }
}

impl Harness {
    /// A builder for an engine other than the default one.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The default engine: `EngineConfig::default()`, the recording default runner.
    pub fn start() -> Harness {
        Harness::builder().start()
    }

    /// The default engine with `config`.
    pub fn with_config(config: EngineConfig) -> Harness {
        Harness::builder().config(config).start()
    }

    /// Creates and runs a connector, giving every required setting a valid value.
    pub fn connector(&self, integration: &str, connector: &str) -> Uuid {
        let catalog = self.engine.catalog().clone();
        let i = catalog
            .get(integration)
            .unwrap_or_else(|| panic!("no integration {integration}"));
        let integ_settings = required_values(&i.spec.integration_settings);
        if !integ_settings.is_empty() {
            self.engine
                .registry()
                .set_integration_settings(&self.account, integration, &integ_settings)
                .unwrap();
        }
        let view = self
            .engine
            .create_connector(
                &self.account,
                integration,
                connector,
                &format!("{integration} {connector}"),
                &required_values(&i.spec.connector_settings),
            )
            .unwrap();
        self.engine.run_connector(view.id).unwrap();
        view.id
    }

    /// Loads a flow document as `agent`/`flow`.
    pub async fn flow(&self, agent: &str, flow: &str, yaml: &str) {
        let doc = FlowDoc::from_yaml(yaml).unwrap();
        let f = doc.to_domain(&self.account, agent, flow).unwrap();
        self.engine.put_flow(f).await.unwrap();
    }

    /// Submits `event` and waits until it is settled (dispatched to every flow it reaches,
    /// dropped as an outcome, or recorded). Returns the settlement or the refusal.
    pub async fn send(&self, event: Event) -> Result<Settlement, Refusal> {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        self.engine
            .ingress()
            .submit(
                event,
                Some(Box::new(move |s: Settlement| {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(s);
                    }
                })),
            )
            .await?;
        Ok(rx.await.expect("every delivery settles"))
    }

    /// Submits `event` without waiting for settlement; the receiver yields it later.
    pub async fn submit(&self, event: Event) -> oneshot::Receiver<Settlement> {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        self.engine
            .ingress()
            .submit(
                event,
                Some(Box::new(move |s: Settlement| {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(s);
                    }
                })),
            )
            .await
            .expect("admitted");
        rx
    }

    /// The persona of actor `who` on `integration`.
    pub fn persona(&self, integration: &str, who: &str) -> PersonaId {
        PersonaId::derive(&self.account, &Idn::known(integration), who)
    }

    /// Waits until the flow instance `(agent, flow, persona)` exists and satisfies `cond`.
    pub async fn wait_instance(
        &self,
        agent: &str,
        flow: &str,
        persona: PersonaId,
        cond: impl Fn(&FlowInstanceSnapshot) -> bool,
    ) -> FlowInstanceSnapshot {
        let what = format!("the flow instance {agent}/{flow} of {persona} to match");
        eventually(&what, PATIENCE, || async {
            self.engine
                .inspect_flow_instance("default", agent, flow, persona)
                .await
                .filter(|s| cond(s))
        })
        .await
    }

    /// The next invocation handed to the `manual` runner.
    pub async fn next_manual(&mut self) -> (Invocation, Reply) {
        self.manual
            .invocations
            .recv()
            .await
            .expect("manual runner open")
    }

    /// An event from actor `who` on `integration/connector`.
    /// An event from `who`; a `user_message` carries the `text` the catalog requires (replace
    /// it with `with_argument`).
    pub fn event(&self, integration: &str, connector: &str, event: &str, who: &str) -> Event {
        let e = Event::from_actor(
            self.account.clone(),
            Idn::known(integration),
            Idn::known(connector),
            Idn::known(event),
            who,
        );
        if event == "user_message" {
            e.with_argument("text", "hello")
        } else {
            e
        }
    }

    /// `(agent, flow, skill)` of the recorded invocations of event `id`.
    pub fn invoked_by(&self, id: Uuid) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .recorded
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.event.event.id == id)
            .map(|i| (i.agent.to_string(), i.flow.to_string(), i.skill.to_string()))
            .collect();
        v.sort();
        v
    }

    /// Waits until the recorded invocations satisfy `cond`; returns a copy of them.
    pub async fn wait_recorded(
        &self,
        what: &str,
        cond: impl Fn(&[Invocation]) -> bool,
    ) -> Vec<Invocation> {
        eventually(what, PATIENCE, || {
            let r = self.recorded.lock().unwrap();
            std::future::ready(cond(&r).then(|| r.clone()))
        })
        .await
    }

    /// Event ids of every recorded invocation.
    pub fn invoked_ids(&self) -> Vec<Uuid> {
        self.recorded
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.event.event.id)
            .collect()
    }

    pub fn dead_letter_codes(&self) -> Vec<&'static str> {
        self.dead.all().iter().map(|d| d.reason.code()).collect()
    }
}

impl daemon::DaemonProcess {
    /// SIGTERM, then waits (up to 30 s) for the exit status. Here rather than in `daemon.rs`,
    /// which the benches include without the `wait` module.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        daemon::signal(&self.child, "TERM");
        let child = &mut self.child;
        eventually(
            "the daemon to stop on SIGTERM",
            std::time::Duration::from_secs(30),
            || std::future::ready(child.try_wait().unwrap()),
        )
        .await
    }
}

/// Sends a JSON request; answers the status and the body's text.
pub async fn call_text(
    c: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, String) {
    let mut r = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// [`call_text`], the body read as JSON (`Null` when it is not).
pub async fn call(
    c: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let (status, text) = call_text(c, method, url, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// A valid value for every required setting without a default.
pub fn required_values(presets: &[SettingSpec]) -> Vec<(String, String)> {
    presets
        .iter()
        .filter(|p| p.is_required && p.default_value.is_none())
        .map(|p| {
            let v = match p.value_type {
                _ if !p.possible_values.is_empty() => p.possible_values[0].clone(),
                ValueType::Number => "1".into(),
                ValueType::Bool => "true".into(),
                ValueType::Json => "{}".into(),
                ValueType::String | ValueType::Enum => "https://example.test/value".into(),
            };
            (p.idn.clone(), v)
        })
        .collect()
}
