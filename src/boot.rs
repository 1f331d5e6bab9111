//! Starting the daemon: the key, the store, the engine and its runners, then everything the
//! store remembers (integration settings, connectors, flows, live sessions), the flow files,
//! with a shared control plane its bucket read to its end (and seeded), the demo, and last the
//! inbox of acknowledged events not yet handed on.

use std::sync::Arc;

use crate::auth::TokenKeeper;
use crate::config::Config;
use crate::config::TransportKind;
use crate::daemon::{journals, private_files, secrets_key, start, Daemon, DaemonParts};
use crate::dead_letter::DeadLetterStore;
use crate::domain::RunnerSpec;
use crate::engine::{Engine, EngineParts};
use crate::natives::component::{Component, Listeners, NativeSupport, StartGate};
use crate::natives::section::Section;
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
    /// The store's rows could not be read to seed the shared control plane.
    #[error("control plane: {0}")]
    ControlPlane(crate::store::StoreError),
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

/// One line of the registration list: a native's config section, when it has one, and its
/// component made from the loaded configuration (`listeners` bound by the daemon; not by
/// `switchboard rekey`, which only asks what they keep sealed).
pub struct Native {
    pub section: Option<Section>,
    pub component: MakeComponent,
}

/// How a registration line makes its component from the loaded configuration.
pub type MakeComponent = fn(&Config, Listeners) -> Result<Box<dyn Component>, BootError>;

/// The registration list: every native integration, one line each. [`Config::load`] reads the
/// sections it declares ([`sections`]), the daemon builds the components ([`natives`]).
#[rustfmt::skip]
pub const NATIVES: &[Native] = &[
    Native { section: None, component: |_, _| Ok(crate::natives::system::component()) },
    Native { section: Some(crate::natives::sandbox::SECTION), component: |c, _| Ok(crate::natives::sandbox::component(&c.natives)) },
    Native { section: None, component: |_, _| Ok(crate::natives::http::component()) },
    Native { section: Some(crate::natives::program_timer::SECTION), component: |c, _| Ok(crate::natives::program_timer::component(&c.natives, c.limits.timers_per_account)) },
    Native { section: None, component: |_, _| Ok(crate::natives::api::component()) },
    Native { section: Some(crate::natives::newo_chat::SECTION), component: |c, l| crate::natives::newo_chat::component(&c.natives, l).map_err(listen("newo_chat.listen")) },
];

/// The natives' config sections, as [`Config::load`] is given them (by `serve` and `check`
/// alike: `check` refuses what `serve` refuses).
pub fn sections() -> Vec<Section> {
    NATIVES.iter().filter_map(|native| native.section).collect()
}

/// The registered natives' components, made from `config`.
pub fn natives(
    config: &Config,
    listeners: Listeners,
) -> Result<Vec<Box<dyn Component>>, BootError> {
    NATIVES
        .iter()
        .map(|native| (native.component)(config, listeners))
        .collect()
}

/// Whether the daemon answers with its built-in demo runner (`[sandbox] demo_runner`).
pub fn demo_runner(config: &Config) -> bool {
    crate::natives::sandbox::demo_runner(&config.natives)
}

/// A native's own listener that did not bind, its config key named.
fn listen(key: &'static str) -> impl Fn(std::io::Error) -> BootError {
    move |source| BootError::Listen { key, source }
}

/// Starts the daemon inside the current actix system.
pub async fn start(
    config: Config,
    metrics: Option<crate::telemetry::exporter::Exporter>,
) -> Result<Arc<Daemon>, BootError> {
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
        TransportKind::Nats => Some(
            Nats::connect(
                &config.transport.nats,
                4096,
                crate::transport::daemon_mac::DaemonMac::new(&secrets),
            )
            .await?,
        ),
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
    if demo_runner(&config) {
        registry = registry.with_demo(demo);
    }
    let runners = DaemonRunners {
        registry,
        has_default: demo_runner(&config),
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
    let described: Vec<fn()> = natives.iter().filter_map(|n| n.metrics()).collect();
    crate::telemetry::metrics::describe(&described);
    crate::telemetry::metrics::record_start();
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
    // With partitions, flow state is shared through a bucket, besides this store's journal.
    let local_state: Arc<dyn crate::flow_instance::state::StateJournal> =
        Arc::new(journals::State {
            store: store.clone(),
            ttl: state_ttl,
        });
    let shared_state = match &nats {
        Some(n) => n.shared_state(local_state.clone(), state_ttl).await?,
        None => None,
    };
    let stream_inbox = nats
        .as_ref()
        .map(|n| Arc::new(n.stream_inbox(store.clone())) as Arc<dyn crate::intake::StreamInbox>);
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
                stream: stream_inbox.clone(),
            },
            dead_letters,
            sessions: Some(Arc::new(journals::Sessions(store.clone()))),
            acts: Some(Arc::new(journals::Acts {
                store: store.clone(),
                ttl: act_ttl,
            })),
            state: Some(shared_state.as_ref().map_or(local_state, |s| s.journal())),
        },
    );

    let tokens = TokenKeeper::new(store.clone(), config.auth.cache_ttl());
    let control = nats.as_ref().and_then(|n| n.control_plane());
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
        stream_inbox,
        control: control
            .clone()
            .map(|c| Arc::new(c) as Arc<dyn crate::daemon::control_plane::ControlPlane>),
        config,
    }));
    start::restore(&daemon).await?;
    start::first_admin_token(&daemon).await?;
    let flows = daemon.reload_flow_files().await?;
    tracing::info!(files_flows = flows, "flow files loaded");
    if let Some(bucket) = &control {
        follow_control_plane(&daemon, bucket).await?;
    }
    if demo_runner(daemon.config()) {
        start::demo_setup(&daemon).await?;
    }
    start::replay_inbox(&daemon).await?;
    // What the other daemons set, before this one takes partitions (and after the store's
    // values: the latest set wins).
    if let Some(shared) = &shared_state {
        shared.follow(daemon.engine().state().clone()).await;
    }
    if let Some(n) = nats {
        n.start(daemon.clone(), daemon.config().envelope.limits());
    }
    start::spawn_housekeeping(&daemon);
    started.open_now();
    daemon.set_ready();
    Ok(daemon)
}

/// How often start-up says it still waits to read the shared control plane to its end.
const CONTROL_CATCH_UP_NOTICE: std::time::Duration = std::time::Duration::from_secs(30);

/// Materializes the shared control plane before the daemon listens: every record of the
/// bucket applied, then the local rows it never had created there. The seeding waits for the
/// whole bucket (however long): a deletion not read yet would be undone by it.
async fn follow_control_plane(
    daemon: &Arc<Daemon>,
    bucket: &crate::transport::control_bucket::ControlBucket,
) -> Result<(), BootError> {
    let mut caught_up = crate::transport::control_bucket::follow(daemon.clone(), bucket);
    while tokio::time::timeout(CONTROL_CATCH_UP_NOTICE, &mut caught_up)
        .await
        .is_err()
    {
        tracing::warn!("control plane: still reading the bucket to its end before listening");
    }
    daemon.reload_caught_up_flows().await?;
    let seeded = daemon
        .seed_control_plane()
        .await
        .map_err(BootError::ControlPlane)?;
    crate::daemon::control_plane::spawn_share_retries(daemon);
    tracing::info!(seeded, "control plane: materialized from the bucket");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(Config::DEFAULT_PATH)
    }

    /// `config/switchboard.toml` is the defaults, the natives' sections included, spelled out.
    #[test]
    fn example_file_is_the_defaults() {
        let absent = std::env::temp_dir().join("switchboard-boot-absent.toml");
        let example = Config::load_from(Some(&example_path()), &absent, None, &sections());
        let defaults = Config::load_from(None, &absent, None, &sections()).unwrap();
        assert_eq!(example.unwrap(), defaults);
    }

    /// `config/switchboard.toml` spells out every key (and no other): the daemon's sections
    /// and those the registration list declares.
    #[test]
    fn example_file_lists_every_key() {
        fn keys(figment: &figment::Figment) -> Vec<String> {
            let dict: figment::value::Dict = figment.extract().unwrap();
            let mut keys = Vec::new();
            for (section, value) in dict {
                let table = value.into_dict().unwrap_or_default();
                assert!(!table.is_empty(), "section [{section}] has no keys");
                keys.extend(table.into_keys().map(|k| format!("{section}.{k}")));
            }
            keys.sort();
            keys
        }
        use figment::providers::Format;
        let defaults = keys(&Config::defaults(&sections()));
        let example = keys(&figment::Figment::from(
            figment::providers::Toml::file_exact(example_path()),
        ));
        assert_eq!(example, defaults);
        for key in [
            "newo_chat.listen",
            "timers.window_ms",
            "sandbox.demo_runner",
        ] {
            assert!(defaults.iter().any(|k| k == key), "{key}");
        }
    }
}
