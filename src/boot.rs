//! Starting the daemon: the key, the store, the engine and its runners, then everything the
//! store remembers (integration settings, connectors, flows, live sessions), the flow files,
//! the demo, and last the inbox of acknowledged events not yet handed on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::TokenKeeper;
use crate::catalog::settings::Settings;
use crate::config::Config;
use crate::config::TransportKind;
use crate::daemon::access::write_first_admin_token;
use crate::daemon::{journals, private_files, secrets_key, Daemon};
use crate::dead_letter::DeadLetterStore;
use crate::domain::{Flow, Idn, RunnerSpec};
use crate::engine::{Engine, EngineParts};
use crate::natives::component::{Component, NativeSupport, StartGate};
use crate::natives::http::HttpNative;
use crate::natives::system::SystemComponent;
use crate::natives::timers::service::{LatePolicy, Settings as TimerSettings};
use crate::natives::timers::ProgramTimer;
use crate::outbound::Egress;
use crate::relay::{CommandSink, NoTransport};
use crate::session::table::SessionView;
use crate::skill_runner::demo::DemoRunner;
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::webhook::{WebhookRunners, WebhookSettings};
use crate::skill_runner::{NoRunner, RunnerRegistry, RunnerResolver, SkillRunner};
use crate::store::dead_letters::SqliteDeadLetters;
use crate::store::{SecretBox, Store};
use crate::transport::commands::NatsCommandSink;
use crate::transport::dlq::PublishingDeadLetters;
use crate::transport::Nats;
use crate::wire::envelope::{Encoding, EventEnvelope, Limits};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("secret key: {0}")]
    Key(#[from] secrets_key::KeyError),
    #[error("store {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error("restoring state: {0}")]
    Restore(#[from] crate::store::StoreError),
    #[error("restoring state: {0}")]
    Stored(#[from] crate::domain::IdnError),
    #[error("restoring state: {0}")]
    Control(#[from] crate::connectors::ControlError),
    #[error("the demo: {0}")]
    Demo(#[from] crate::daemon::ChangeError),
    #[error("the demo flow: {0}")]
    DemoFlow(#[from] crate::routing::flow_table::FlowRejected),
    #[error("flows: {0}")]
    Flows(#[from] crate::daemon::ReloadError),
    #[error("transport: {0}")]
    Nats(#[from] crate::transport::NatsError),
    #[error("the first admin token: {0}")]
    FirstToken(#[from] crate::daemon::access::FirstTokenError),
    #[error("private files: {0}")]
    FileMode(#[from] private_files::ModeError),
}

/// The timer service's settings from `[timers]`.
fn timer_settings(config: &Config) -> TimerSettings {
    TimerSettings {
        window: std::time::Duration::from_millis(config.timers.window_ms),
        grace: std::time::Duration::from_millis(config.timers.grace_ms),
        late: match config.timers.late_policy {
            crate::config::LatePolicy::FireOnce => LatePolicy::FireOnce,
            crate::config::LatePolicy::Skip => LatePolicy::Skip,
        },
        load_limit: crate::natives::timers::service::LOAD_LIMIT,
        max_per_account: config.limits.timers_per_account as usize,
    }
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

/// Starts the daemon inside the current actix system.
pub async fn start(
    config: Config,
    metrics: Option<crate::telemetry::exporter::Exporter>,
) -> Result<Arc<Daemon>, BootError> {
    crate::telemetry::metrics::describe();
    crate::telemetry::metrics::record_start();
    crate::telemetry::flow_labels::FlowLabels::daemon().set_cap(config.limits.flow_series as usize);
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
            .with_quota(retention(&config)),
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
    let external: Arc<dyn CommandSink> = match &nats {
        Some(n) => Arc::new(NatsCommandSink {
            publisher: n.publisher.clone(),
            subjects: n.subjects.clone(),
            encoding: n.encoding,
            dead_letters: dead_letters.clone(),
        }),
        None => Arc::new(NoTransport),
    };
    // The registration list: every native integration, one line each.
    let natives: Vec<Box<dyn Component>> = vec![
        Box::new(SystemComponent),
        crate::natives::sandbox::component(&config.sandbox),
        HttpNative::component(),
        ProgramTimer::component(None, timer_settings(&config)),
    ];
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
    let daemon = Arc::new(Daemon {
        engine,
        store,
        pending,
        metrics,
        secrets,
        tokens,
        runner_keys: webhooks.keys().clone(),
        egress,
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        natives_stop: shutdown,
        transport: nats
            .as_ref()
            .map(|n| Arc::new(n.link()) as Arc<dyn crate::daemon::TransportLink>),
        file_flows: Default::default(),
        config,
    });
    restore(&daemon).await?;
    first_admin_token(&daemon).await?;
    let flows = daemon.reload_flow_files().await?;
    tracing::info!(files_flows = flows, "flow files loaded");
    if daemon.config.sandbox.demo_runner {
        demo_setup(&daemon).await?;
    }
    replay_inbox(&daemon).await?;
    if let Some(n) = nats {
        n.start(daemon.clone(), daemon.config.envelope.limits());
    }
    spawn_housekeeping(&daemon);
    started.open_now();
    daemon.ready.store(true, Ordering::Release);
    Ok(daemon)
}

async fn restore(d: &Arc<Daemon>) -> Result<(), BootError> {
    for a in d.store.accounts()? {
        d.engine
            .registry()
            .ensure_account(&Idn::parse("account", &a.idn)?);
    }
    d.restore_runner_secrets()?;
    for (account, integration, sealed) in d.store.integration_settings()? {
        let settings = d.open(sealed, (&account, &integration, ""))?;
        let account = Idn::parse("account", &account)?;
        d.engine
            .registry()
            .restore_integration_settings(&account, &integration, settings)?;
    }
    for row in d.store.connectors()? {
        let settings: Settings = d.open(
            row.settings.clone(),
            (&row.account, &row.integration, &row.connector),
        )?;
        let account = Idn::parse("account", &row.account)?;
        let created = chrono::DateTime::parse_from_rfc3339(&row.created_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        if let Err(e) = d.engine.registry().restore(
            &account,
            &row.integration,
            &row.connector,
            row.id,
            &row.title,
            settings,
            row.running,
            created,
        ) {
            tracing::warn!(connector = %row.connector, error = %e, "stored connector restored stopped");
        }
    }
    let engine = d.config.engine.to_engine_config();
    journals::restore(
        &d.engine,
        &d.store,
        (engine.command_act_ttl, engine.command_act_capacity),
        (engine.flow_state_ttl, engine.flow_state_capacity),
    )?;
    let now = tokio::time::Instant::now();
    for s in d.store.live_sessions()? {
        let view = (|| {
            Some(SessionView {
                id: s.id,
                account: Idn::parse("account", &s.account).ok()?,
                persona: crate::domain::PersonaId(s.persona),
                integration: Idn::parse("integration", &s.integration).ok()?,
                connector: Idn::parse("connector", &s.connector).ok()?,
                channel: match s.channel.as_str() {
                    "chat" => "chat",
                    "phone" => "phone",
                    "sms" => "sms",
                    _ => "none",
                },
                started_at: chrono::DateTime::parse_from_rfc3339(&s.started_at)
                    .ok()?
                    .with_timezone(&chrono::Utc),
            })
        })();
        if let Some(v) = view {
            d.engine.session_table().restore(v, now);
        }
    }
    Ok(())
}

/// The home account exists; on a store without tokens, the admin token file is written.
async fn first_admin_token(d: &Arc<Daemon>) -> Result<(), BootError> {
    let home = d.home_account();
    d.create_account(&home, "The daemon's home account").await?;
    let path = d.config.auth.admin_token_path(&d.config.store.path);
    if write_first_admin_token(&d.tokens, &home, &path).await? {
        tracing::info!(
            path = %path.display(),
            "no API token yet: wrote an admin token to this file (mode 0600); read it for `Authorization: Bearer`"
        );
    }
    Ok(())
}

/// The demo: a running sandbox connector `demo` and a flow answering on it.
async fn demo_setup(d: &Arc<Daemon>) -> Result<(), BootError> {
    let account = d.home_account();
    if d.engine
        .registry()
        .find(&account, "sandbox", "demo")
        .is_none()
    {
        let view = d
            .create_connector(&account, "sandbox", "demo", "Demo sandbox", &[])
            .await?;
        d.run_connector(&account, view.id).await?;
    }
    let doc = crate::wire::FlowDoc::from_yaml(
        r#"
runner: {kind: demo}
events:
  - {idn: session_started, skill_idn: DemoGreeting, integration_idn: system, connector_idn: system}
  - {idn: user_message, skill_idn: DemoEcho, integration_idn: sandbox, connector_idn: demo}
"#,
    )
    .expect("the demo flow parses");
    let flow: Flow = doc
        .to_domain(&account, "DemoAgent", "SandboxEchoFlow")
        .expect("the demo flow is valid");
    d.engine.put_flow(flow).await?;
    tracing::info!("demo runner enabled: open /sandbox and chat with the `demo` connector");
    Ok(())
}

/// Hands the acknowledged events of the last run that were not handed on to the engine again,
/// marked as redelivered.
async fn replay_inbox(d: &Arc<Daemon>) -> Result<(), BootError> {
    let rows = d.store.inbox()?;
    let n = rows.len();
    let unlimited = Limits {
        max_arguments: usize::MAX,
        max_argument_bytes: usize::MAX,
    };
    for (id, bytes) in rows {
        let event = Encoding::MessagePack
            .decode::<EventEnvelope>(&bytes)
            .and_then(|e| e.into_domain(unlimited));
        match event {
            Ok(mut e) => {
                e.redelivered = true;
                if let Err(r) = d.hand_to_engine(e).await {
                    tracing::warn!(event = %id, reason = %r, "replayed event refused: dead-lettered");
                }
            }
            Err(err) => {
                tracing::error!(event = %id, error = %err, "inbox row does not decode: dead-lettered");
                crate::dead_letter::record(
                    &**d.engine.dead_letters(),
                    crate::dead_letter::DeadLetter::raw(
                        d.home_account(),
                        err.to_string(),
                        "application/msgpack".into(),
                        bytes,
                    ),
                );
                d.store.inbox_done(id);
            }
        }
    }
    if n > 0 {
        tracing::info!(events = n, "replayed acknowledged events from the inbox");
    }
    Ok(())
}

/// The dead-letter retention policy of `[dead_letters]`, per account.
fn retention(config: &Config) -> crate::store::dead_letters::Retention {
    let c = &config.dead_letters;
    crate::store::dead_letters::Retention {
        max_age_ms: c.max_age().as_millis() as i64,
        max_count: c.max_count,
        max_bytes: c.max_bytes,
    }
}

/// One pass of the dead-letter retention policy, counted by the limit that pruned.
async fn prune_dead_letters(d: &Daemon) {
    match d.store.prune_dead_letters(retention(&d.config)).await {
        Ok(p) => p.count(),
        Err(e) => tracing::warn!(error = %e, "pruning dead letters failed"),
    }
}

fn spawn_housekeeping(d: &Arc<Daemon>) {
    let weak = Arc::downgrade(d);
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(d) = weak.upgrade() else { break };
            d.store
                .prune_dedupe(d.config.engine.dedupe_window_ms as i64);
            prune_dead_letters(&d).await;
        }
    });
}
