//! Starting the daemon once its parts exist: what the store remembers (read on a blocking
//! thread) back into the engine, the home account and its first admin token, the demo, the
//! inbox of acknowledged events not yet handed on, and the housekeeping that runs from then on.

use std::sync::Arc;
use std::time::Duration;

use super::access::write_first_admin_token;
use super::{journals, Daemon};
use crate::catalog::settings::Settings;
use crate::config::Config;
use crate::domain::{Flow, Idn};
use crate::fault::{Blame, Fault};
use crate::session::table::SessionView;
use crate::store::{Store, StoreError};
use crate::wire::envelope::{Encoding, EventEnvelope, Limits};

/// Why the daemon could not start from what it found.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("restoring state: {0}")]
    Store(#[from] StoreError),
    #[error("restoring state: {0}")]
    Stored(#[from] crate::domain::IdnError),
    #[error("restoring state: {0}")]
    Control(#[from] crate::connectors::ControlError),
    #[error("the demo: {0}")]
    Demo(#[from] super::ChangeError),
    #[error("the demo flow: {0}")]
    DemoFlow(#[from] crate::routing::flow_table::FlowRejected),
    #[error("the home account: {0}")]
    HomeAccount(super::ChangeError),
    #[error("the first admin token: {0}")]
    FirstToken(#[from] super::access::FirstTokenError),
}

impl Blame for StartError {
    /// What the store holds or the daemon does: never a caller's.
    fn fault(&self) -> Fault {
        Fault::Daemon
    }

    fn retryable(&self) -> bool {
        matches!(self, StartError::Store(e) if e.retryable())
    }
}

/// What the store remembers of the engine's state, read at once on a blocking thread.
struct Stored {
    accounts: Vec<crate::store::accounts::AccountRow>,
    runner_secrets: Vec<crate::store::RunnerSecretRow>,
    integration_settings: Vec<crate::store::records::IntegrationSettingsRow>,
    connectors: Vec<crate::store::ConnectorRow>,
    journals: journals::Recorded,
    sessions: Vec<crate::store::SessionRow>,
}

impl Stored {
    /// Blocking.
    fn read(store: &Store, config: &crate::engine::EngineConfig) -> Result<Stored, StoreError> {
        Ok(Stored {
            accounts: store.accounts()?,
            runner_secrets: store.runner_secrets()?,
            integration_settings: store.integration_settings()?,
            connectors: store.connectors()?,
            journals: journals::Recorded::read(
                store,
                (config.command_act_ttl, config.command_act_capacity),
                (config.flow_state_ttl, config.flow_state_capacity),
            )?,
            sessions: store.live_sessions()?,
        })
    }
}

/// Runs `read` on a blocking thread: no SQLite call runs on an async worker.
pub(super) async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| StoreError::Sqlite(format!("a blocking read failed: {e}")))?
}

/// Puts back what the store remembers: accounts, webhook runners' secrets, integration
/// settings, connectors (running ones started), command acts, flow state, live sessions.
pub(crate) async fn restore(d: &Arc<Daemon>) -> Result<(), StartError> {
    let (store, engine) = (d.store.clone(), d.config.engine.to_engine_config());
    let stored = blocking(move || Stored::read(&store, &engine)).await?;
    for a in stored.accounts {
        d.engine
            .registry()
            .ensure_account(&Idn::parse("account", &a.idn)?);
    }
    d.restore_runner_secrets(stored.runner_secrets)?;
    for (account, integration, sealed) in stored.integration_settings {
        let settings = d.open(sealed, (&account, &integration, ""))?;
        let account = Idn::parse("account", &account)?;
        d.engine
            .registry()
            .restore_integration_settings(&account, &integration, settings)?;
    }
    for row in stored.connectors {
        let settings: Settings = d.open(
            row.settings.clone(),
            (&row.account, &row.integration, &row.connector),
        )?;
        let account = Idn::parse("account", &row.account)?;
        let created = row.created();
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
    stored.journals.restore(&d.engine);
    let now = tokio::time::Instant::now();
    for s in stored.sessions {
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
pub(crate) async fn first_admin_token(d: &Arc<Daemon>) -> Result<(), StartError> {
    let home = d.home_account();
    d.create_account(&home, "The daemon's home account")
        .await
        .map_err(StartError::HomeAccount)?;
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
pub(crate) async fn demo_setup(d: &Arc<Daemon>) -> Result<(), StartError> {
    let account = d.home_account();
    if d.engine
        .registry()
        .find(&account, "sandbox", "demo")
        .is_none()
    {
        match d
            .create_connector(&account, "sandbox", "demo", "Demo sandbox", &[])
            .await
        {
            Ok(view) => {
                d.run_connector(&account, view.id).await?;
            }
            // Another daemon of a shared control plane made it meanwhile: theirs is here now.
            Err(super::ChangeError::ControlPlane(super::ControlPlaneError::Conflict {
                ..
            })) => {}
            Err(e) => return Err(e.into()),
        }
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
pub(crate) async fn replay_inbox(d: &Arc<Daemon>) -> Result<(), StartError> {
    let store = d.store.clone();
    let rows = blocking(move || store.inbox()).await?;
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
pub(crate) fn retention(config: &Config) -> crate::store::dead_letters::Retention {
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

pub(crate) fn spawn_housekeeping(d: &Arc<Daemon>) {
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
