//! Starting the daemon: the key, the store, the engine and its runners, then everything the
//! store remembers (integration settings, connectors, flows, live sessions), the flow files,
//! the demo, and last the inbox of acknowledged events not yet handed on.

use std::sync::Arc;

use crate::auth::TokenKeeper;
use crate::config::Config;
use crate::config::TransportKind;
use crate::daemon::{journals, private_files, secrets_key, start, Daemon, DaemonParts};
use crate::dead_letter::DeadLetterStore;
use crate::domain::RunnerSpec;
use crate::engine::{Engine, EngineParts};
use crate::natives::component::{Component, Listeners, NativeSupport, StartGate};
use crate::outbound::Egress;
use crate::relay::Relay;
use crate::skill_runner::demo::DemoRunner;
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::webhook::{WebhookRunners, WebhookSettings};
use crate::skill_runner::{NoRunner, RunnerRegistry, RunnerResolver, SkillRunner};
use crate::store::dead_letters::SqliteDeadLetters;
use crate::store::{SecretBox, Store};
use crate::transport::commands::NatsCommandSink;
use crate::transport::dlq::PublishingDeadLetters;
use crate::transport::Nats;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("secret key: {0}")]
    Key(#[from] secrets_key::KeyError),
    #[error("store {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error("{0}")]
    Start(#[from] start::StartError),
    #[error("flows: {0}")]
    Flows(#[from] crate::daemon::ReloadError),
    #[error("transport: {0}")]
    Nats(#[from] crate::transport::NatsError),
    #[error("private files: {0}")]
    FileMode(#[from] private_files::ModeError),
    /// A native's own listener could not bind (its config key named).
    #[error("{key}: {source}")]
    Listen {
        key: &'static str,
        source: std::io::Error,
    },
}

/// Refuses the `default` runner kind when no default is configured, with a reason.
struct DaemonRunners {
    registry: RunnerRegistry,
    has_default: bool,
    queue: Option<Arc<dyn SkillRunner>>,
}

impl RunnerResolver for DaemonRunners {
    fn resolve(&self, spec: &RunnerSpec) -> Result<Arc<dyn SkillRunner>, NoRunner> {
        if *spec == RunnerSpec::Queue {
            return self.queue.clone().ok_or_else(|| {
                NoRunner(
                    "queue runners need the NATS transport ([transport] kind = \"nats\")".into(),
                )
            });
        }
        if *spec == RunnerSpec::Default && !self.has_default {
            return Err(NoRunner(
                "no default runner is configured: name one in the flow (runner: {kind: webhook, url: …})"
                    .into(),
            ));
        }
        self.registry.resolve(spec)
    }
}

/// The registration list: every native integration, one line each (the daemon builds them,
/// `listeners` bound; `switchboard rekey` asks them what they keep sealed, nothing bound).
pub fn natives(
    config: &Config,
    listeners: Listeners,
) -> Result<Vec<Box<dyn Component>>, BootError> {
    let listen = |key| move |source| BootError::Listen { key, source };
    #[rustfmt::skip]
    let natives: Vec<Box<dyn Component>> = vec![
        crate::natives::system::component(),
        crate::natives::sandbox::component(&config.sandbox),
        crate::natives::http::component(),
        crate::natives::program_timer::component(&config.timers, config.limits.timers_per_account),
        crate::natives::api::component(),
        crate::natives::newo_chat::component(&config.newo_chat, listeners).map_err(listen("newo_chat.listen"))?,
    ];
    Ok(natives)
}

/// Starts the daemon inside the current actix system.
pub async fn start(
    config: Config,
    metrics: Option<crate::telemetry::exporter::Exporter>,
) -> Result<Arc<Daemon>, BootError> {
    crate::telemetry::metrics::describe();
    crate::telemetry::metrics::record_start();
    crate::telemetry::flow_labels::FlowLabels::daemon().set_cap(config.limits.flow_series as usize);
    crate::telemetry::flow_labels::FlowLabels::connectors()
        .set_cap(config.limits.flow_series as usize);
    let store_files = private_files::store_files(&config.store.path);
    let admin_token = config.auth.admin_token_path(&config.store.path);
    private_files::tighten(
        store_files
            .iter()
            .chain([&config.store.secret_key_file, &admin_token])
            .map(|p| p.as_path()),
    )?;
    let (secrets, key_text) =
        secrets_key::load(&config.store.secret_key_env, &config.store.secret_key_file)?;
    let store_err = |source| BootError::Store {
        path: config.store.path.display().to_string(),
        source,
    };
    let store = Store::open(
        &config.store.path,
        config.engine.inflight_limit + 16_384,
        config.store.busy_timeout_ms,
    )
    .map_err(store_err)?;

    let nats = match config.transport.kind {
        TransportKind::Nats => Some(Nats::connect(&config.transport.nats, 4096).await?),
        TransportKind::Embedded => None,
    };
    let pending = Arc::new(PendingInvocations::default());
    let egress = config.egress.policy();
    let webhooks = WebhookRunners::new(
        WebhookSettings::new().with_backoff(
            config.runners.backoff_initial(),
            config.runners.backoff_max(),
        ),
        Egress::new(egress.clone()),
        pending.clone(),
    );
    let demo: Arc<dyn SkillRunner> = Arc::new(DemoRunner);
    let mut registry = RunnerRegistry::new(demo.clone()).with_webhooks(webhooks.clone());
    if config.sandbox.demo_runner {
        registry = registry.with_demo(demo);
    }
    let runners = DaemonRunners {
        registry,
        has_default: config.sandbox.demo_runner,
        queue: nats.as_ref().map(|n| {
            Arc::new(n.queue_runner(pending.clone(), store.clone())) as Arc<dyn SkillRunner>
        }),
    };
    let stored_letters: Arc<dyn DeadLetterStore> = Arc::new(
        SqliteDeadLetters::new(store.clone())
            .with_raw_limit(config.dead_letters.max_raw_bytes)
            .with_quota(start::retention(&config)),
    );
    let dead_letters: Arc<dyn DeadLetterStore> = match &nats {
        Some(n) => Arc::new(PublishingDeadLetters {
            inner: stored_letters,
            publisher: n.publisher.clone(),
            subjects: n.subjects.clone(),
            encoding: n.encoding,
        }),
        None => stored_letters,
    };
    let external = match &nats {
        Some(n) => Relay::To(Arc::new(NatsCommandSink {
            publisher: n.publisher.clone(),
            subjects: n.subjects.clone(),
            encoding: n.encoding,
            dead_letters: dead_letters.clone(),
        })),
        None => Relay::Embedded,
    };
    let natives = natives(&config, Listeners::Bind)?;
    for native in &natives {
        store
            .migrate_component(native.idn(), native.migrations())
            .await
            .map_err(store_err)?;
    }
    // Natives act (timers fire) once connectors, flows and the inbox are back (opened below).
    let (started, natives_started) = StartGate::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut engine_config = config.engine.to_engine_config();
    engine_config.persona_key = secrets_key::persona_key(&store, &secrets)
        .await
        .map_err(store_err)?;
    let (act_ttl, state_ttl) = (engine_config.command_act_ttl, engine_config.flow_state_ttl);
    let engine = Engine::start(
        engine_config,
        EngineParts {
            runners: Arc::new(runners),
            relay: external,
            natives,
            support: NativeSupport {
                egress: Egress::new(egress.clone()),
                store: Some(store.clone()),
                secrets: SecretBox::from_base64(&key_text).ok().map(Arc::new),
                started: natives_started,
                shutdown: shutdown.clone(),
            },
            dead_letters,
            sessions: Some(Arc::new(journals::Sessions(store.clone()))),
            acts: Some(Arc::new(journals::Acts {
                store: store.clone(),
                ttl: act_ttl,
            })),
            state: Some(Arc::new(journals::State {
                store: store.clone(),
                ttl: state_ttl,
            })),
        },
    );

    let tokens = TokenKeeper::new(store.clone(), config.auth.cache_ttl());
    let transport = nats
        .as_ref()
        .map(|n| Arc::new(n.link()) as Arc<dyn crate::daemon::TransportLink>);
    let daemon = Arc::new(Daemon::new(DaemonParts {
        engine,
        store,
        pending,
        metrics,
        secrets,
        tokens,
        runner_keys: webhooks.keys().clone(),
        egress,
        natives_stop: shutdown,
        transport,
        stream_inbox: nats
            .as_ref()
            .map(|n| Arc::new(n.stream_inbox()) as Arc<dyn crate::intake::StreamInbox>),
        config,
    }));
    start::restore(&daemon).await?;
    start::first_admin_token(&daemon).await?;
    let flows = daemon.reload_flow_files().await?;
    tracing::info!(files_flows = flows, "flow files loaded");
    if daemon.config().sandbox.demo_runner {
        start::demo_setup(&daemon).await?;
    }
    start::replay_inbox(&daemon).await?;
    if let Some(n) = nats {
        n.start(daemon.clone(), daemon.config().envelope.limits());
    }
    start::spawn_housekeeping(&daemon);
    started.open_now();
    daemon.set_ready();
    Ok(daemon)
}
