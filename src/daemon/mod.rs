//! The daemon around the engine: the durable store under every change, the inbox under every
//! acknowledged event, flows from files, and the runners a deployment uses.
//! The HTTP surface calls only this.

pub mod access;
pub mod flow_files;
pub mod journals;
pub mod limits;
pub mod operations;
pub mod private_files;
pub mod runner_secrets;
pub mod secrets_key;
pub mod start;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use uuid::Uuid;

use crate::admission::delivery::Settlement;
use crate::admission::Refusal;
use crate::catalog::settings::Settings;
use crate::config::Config;
use crate::connectors::registry::{ConnectorView, ControlError};
use crate::domain::{Event, Flow, Idn, Name};
use crate::engine::Engine;
use crate::fault::{Blame, Fault};
pub use crate::intake::{IngestError, Ingested};
use crate::outbound::EgressPolicy;
use crate::routing::flow_table::FlowRejected;
use crate::skill_runner::pending::PendingInvocations;
use crate::skill_runner::webhook::{RunnerKeys, RunnerSecret};
use crate::store::{ConnectorRow, FlowRow, SecretBox, Store, StoreError, Written};
use crate::wire::envelope::{Encoding, EventEnvelope};
use crate::wire::FlowDoc;

/// Why a control-plane change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Flow(#[from] FlowRejected),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    LimitReached(#[from] limits::LimitReached),
    /// The flow comes from a flow file: deleting it over the API would not last.
    #[error("flow {flow} is defined by the file {}; change or remove the file", path.display())]
    DefinedByFile {
        flow: String,
        path: std::path::PathBuf,
    },
}

/// Why the flow files were not (re)loaded; the flows in force stay.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    File(#[from] flow_files::FlowFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {error}", dir.display())]
    Rejected {
        dir: std::path::PathBuf,
        error: FlowRejected,
    },
    /// An account's stored flows no longer pass (a catalog changed under them).
    #[error("stored flows of account {account}: {error}")]
    Stored { account: Idn, error: FlowRejected },
}

impl Blame for ReloadError {
    fn fault(&self) -> Fault {
        match self {
            ReloadError::Store(e) => e.fault(),
            // The operator's files.
            ReloadError::File(_) | ReloadError::Rejected { .. } => Fault::Caller,
            ReloadError::Stored { .. } => Fault::Daemon,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, ReloadError::Store(e) if e.retryable())
    }
}

impl Blame for ChangeError {
    fn fault(&self) -> Fault {
        match self {
            ChangeError::Control(e) => e.fault(),
            ChangeError::Flow(e) => e.fault(),
            ChangeError::Store(e) => e.fault(),
            ChangeError::LimitReached(e) => e.fault(),
            ChangeError::DefinedByFile { .. } => Fault::Caller,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ChangeError::Control(e) => e.retryable(),
            ChangeError::Flow(e) => e.retryable(),
            ChangeError::Store(e) => e.retryable(),
            ChangeError::LimitReached(e) => e.retryable(),
            ChangeError::DefinedByFile { .. } => false,
        }
    }
}

/// Whether ingestion drops a repeat of an `external_event_id` seen within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    Check,
    /// A deliberate redelivery (a dead letter replayed).
    Skip,
}

/// A transport's connection, as readiness and `/metrics` see it. The daemon owns this interface;
/// the transport implements it and boot hands it over.
pub trait TransportLink: Send + Sync {
    /// The transport's name: the `transport` label, and readiness' check is `transport`.
    fn name(&self) -> &'static str;
    fn connected(&self) -> bool;
}

/// What a stored flow comes to: its document, the signing secret of a webhook runner given its
/// first one now (shown once), and warnings about what it names that does not exist yet.
pub struct PutFlowAnswer {
    pub doc: FlowDoc,
    pub runner_secret: Option<RunnerSecret>,
    pub warnings: Vec<FlowWarning>,
}

/// Something in an accepted flow that matches nothing yet (a connector not created).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowWarning {
    pub field: String,
    pub message: String,
}

/// The daemon: the engine, the store under it, the runners' pending answers.
/// Its parts are reached through its methods only.
pub struct Daemon {
    config: Config,
    engine: Engine,
    store: Store,
    pending: Arc<PendingInvocations>,
    metrics: Option<crate::telemetry::exporter::Exporter>,
    secrets: SecretBox,
    tokens: crate::auth::TokenKeeper,
    /// The webhook runners' signing keys, by flow.
    runner_keys: Arc<RunnerKeys>,
    /// The egress policy of `[egress]`, which flows' runner URLs are checked against.
    egress: EgressPolicy,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Cancelled as the daemon drains: natives' background tasks end.
    natives_stop: tokio_util::sync::CancellationToken,
    /// The external transport's connection, when one is configured.
    transport: Option<Arc<dyn TransportLink>>,
    /// Flows defined by files: reloads replace exactly these.
    file_flows: std::sync::Mutex<BTreeMap<(Name, Name), std::path::PathBuf>>,
}

pub(crate) fn aad(account: &str, integration: &str, connector: &str, setting: &str) -> String {
    format!("{account}/{integration}/{connector}/{setting}")
}

/// What the daemon is made of, built by `boot`.
pub struct DaemonParts {
    pub config: Config,
    pub engine: Engine,
    pub store: Store,
    pub pending: Arc<PendingInvocations>,
    pub metrics: Option<crate::telemetry::exporter::Exporter>,
    pub secrets: SecretBox,
    pub tokens: crate::auth::TokenKeeper,
    pub runner_keys: Arc<RunnerKeys>,
    pub egress: EgressPolicy,
    /// Cancelled as the daemon drains.
    pub natives_stop: tokio_util::sync::CancellationToken,
    pub transport: Option<Arc<dyn TransportLink>>,
}

impl Daemon {
    /// A daemon not ready yet (see [`start`] for what follows, and [`Daemon::set_ready`]).
    pub fn new(p: DaemonParts) -> Daemon {
        Daemon {
            config: p.config,
            engine: p.engine,
            store: p.store,
            pending: p.pending,
            metrics: p.metrics,
            secrets: p.secrets,
            tokens: p.tokens,
            runner_keys: p.runner_keys,
            egress: p.egress,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            natives_stop: p.natives_stop,
            transport: p.transport,
            file_flows: Default::default(),
        }
    }

    /// Ready: `/readyz` answers 200 from now on (unless draining).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The engine, for the transports and for start-up.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The runners' pending answers (the queue transport applies results to them).
    pub fn pending(&self) -> &Arc<PendingInvocations> {
        &self.pending
    }

    /// Makes every write queued so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// The account of the daemon's own things: flow files, the demo, the embedded sandbox
    /// without a token, and events of transports that name no account.
    pub fn home_account(&self) -> Idn {
        Idn::known(crate::domain::DEFAULT_ACCOUNT)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Stops taking events in (shutdown has begun).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.natives_stop.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    // ---- secrets ----

    fn seal(
        &self,
        presets: &[crate::catalog::SettingSpec],
        settings: &Settings,
        scope: (&str, &str, &str),
    ) -> BTreeMap<String, String> {
        settings
            .0
            .iter()
            .map(|(k, v)| {
                let secret = presets.iter().any(|p| &p.idn == k && p.is_secret);
                let value = if secret {
                    self.secrets.seal(v, &aad(scope.0, scope.1, scope.2, k))
                } else {
                    v.clone()
                };
                (k.clone(), value)
            })
            .collect()
    }

    pub(crate) fn open(
        &self,
        stored: BTreeMap<String, String>,
        scope: (&str, &str, &str),
    ) -> Result<Settings, StoreError> {
        let mut out = BTreeMap::new();
        for (k, v) in stored {
            let v = if SecretBox::is_sealed(&v) {
                self.secrets
                    .open(&v, &aad(scope.0, scope.1, scope.2, &k))
                    .map_err(|e| StoreError::Corrupt(format!("setting {k}: {e}")))?
            } else {
                v
            };
            out.insert(k, v);
        }
        Ok(Settings(out))
    }

    // ---- connectors ----

    async fn persist_connector(&self, id: Uuid) -> Result<(), StoreError> {
        let Some((view, settings, integration)) = self.engine.registry().stored(id) else {
            return self.store.delete_connector(id).await;
        };
        let k = &view.key;
        let sealed = self.seal(
            &integration.spec.connector_settings,
            &settings,
            (
                k.account.as_str(),
                k.integration.as_str(),
                k.connector.as_str(),
            ),
        );
        self.store
            .put_connector(ConnectorRow {
                id: view.id,
                account: k.account.to_string(),
                integration: k.integration.to_string(),
                connector: k.connector.to_string(),
                title: view.title.clone(),
                running: view.status == crate::connectors::Status::Running,
                settings: sealed,
                created_at: view.created_at.to_rfc3339(),
            })
            .await
    }

    pub async fn create_connector(
        &self,
        account: &Idn,
        integration: &str,
        connector: &str,
        title: &str,
        settings: &[(String, String)],
    ) -> Result<ConnectorView, ChangeError> {
        self.room_for_connector(account)?;
        let view =
            self.engine
                .create_connector(account, integration, connector, title, settings)?;
        self.persist_connector(view.id).await?;
        Ok(view)
    }

    pub async fn update_connector(
        &self,
        account: &Idn,
        id: Uuid,
        title: Option<&str>,
        settings: &[(String, String)],
    ) -> Result<ConnectorView, ChangeError> {
        self.connector(account, id)?;
        let view = self.engine.registry().update(id, title, settings)?;
        self.persist_connector(id).await?;
        Ok(view)
    }

    pub async fn run_connector(
        &self,
        account: &Idn,
        id: Uuid,
    ) -> Result<ConnectorView, ChangeError> {
        self.connector(account, id)?;
        let view = self.engine.run_connector(id)?;
        self.persist_connector(id).await?;
        Ok(view)
    }

    pub async fn stop_connector(
        &self,
        account: &Idn,
        id: Uuid,
    ) -> Result<ConnectorView, ChangeError> {
        self.connector(account, id)?;
        let view = self.engine.stop_connector(id)?;
        self.persist_connector(id).await?;
        Ok(view)
    }

    pub async fn delete_connector(&self, account: &Idn, id: Uuid) -> Result<(), ChangeError> {
        self.connector(account, id)?;
        self.engine.delete_connector(id)?;
        self.store.delete_connector(id).await?;
        Ok(())
    }

    pub async fn set_integration_settings(
        &self,
        account: &Idn,
        integration: &str,
        changes: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ChangeError> {
        let account = account.clone();
        let shown =
            self.engine
                .registry()
                .set_integration_settings(&account, integration, changes)?;
        let i = self
            .engine
            .catalog()
            .find(integration)
            .cloned()
            .ok_or_else(|| ControlError::UnknownIntegration(integration.to_owned()))?;
        let settings = self
            .engine
            .registry()
            .stored_integration_settings(&account, &i.idn);
        let sealed = self.seal(
            &i.spec.integration_settings,
            &settings,
            (account.as_str(), i.idn.as_str(), ""),
        );
        self.store
            .put_integration_settings(account.to_string(), i.idn.to_string(), sealed)
            .await?;
        Ok(shown)
    }

    // ---- flows ----

    /// Adds or replaces a flow through the API; stored, live when this returns. A flow whose
    /// webhook runner URL is a denied IP literal is refused (`runner.url`). A flow with a
    /// webhook runner and no signing secret yet gets one, answered this once.
    pub async fn put_flow(&self, flow: Flow) -> Result<PutFlowAnswer, ChangeError> {
        self.admit_runner_url(&flow)?;
        self.room_for_flow(&flow)?;
        let doc = FlowDoc::from_domain(&flow);
        // Accepted all the same: connectors may be created later.
        let warnings = flow
            .subscriptions
            .iter()
            .enumerate()
            .filter_map(|(k, sub)| {
                crate::routing::explain::absent_connector(
                    self.engine.registry(),
                    &flow.account,
                    sub,
                )
                .map(|message| FlowWarning {
                    field: format!("events[{k}].connector_idn"),
                    message,
                })
            })
            .collect();
        let row = FlowRow {
            account: flow.account.to_string(),
            agent: flow.agent.to_string(),
            flow: flow.flow.to_string(),
            document: serde_json::to_string(&doc).expect("flow documents serialize"),
        };
        let (account, agent, name) = (flow.account.clone(), flow.agent.clone(), flow.flow.clone());
        // Live before the flow is: its first invocation is signed.
        let keys = self.new_runner_keys(&flow);
        if let Err(e) = self.engine.put_flow(flow).await {
            if keys.is_some() {
                self.forget_runner_keys(&account, &agent, &name);
            }
            return Err(e.into());
        }
        if let Some(keys) = &keys {
            self.store_runner_keys(&account, &agent, &name, keys)
                .await?;
        }
        self.store.put_flow(row).await?;
        Ok(PutFlowAnswer {
            doc,
            runner_secret: keys.map(|k| k.current),
            warnings,
        })
    }

    pub async fn delete_flow(
        &self,
        account: &Idn,
        agent: &Name,
        flow: &Name,
    ) -> Result<bool, ChangeError> {
        // A file's flow would come back at the next reload: the file is what to change.
        let file = (*account == self.home_account())
            .then(|| {
                self.file_flows
                    .lock()
                    .expect("file flows lock")
                    .get(&(agent.clone(), flow.clone()))
                    .cloned()
            })
            .flatten();
        if let Some(path) = file {
            return Err(ChangeError::DefinedByFile {
                flow: format!("{agent}/{flow}"),
                path,
            });
        }
        let removed = self.engine.delete_flow(account, agent, flow).await;
        self.store
            .delete_flow(account.to_string(), agent.to_string(), flow.to_string())
            .await?;
        self.forget_runner_keys(account, agent, flow);
        Ok(removed)
    }

    /// The document of a live flow.
    pub fn flow(&self, account: &Idn, agent: &str, flow: &str) -> Option<FlowDoc> {
        self.engine
            .dispatcher()
            .index()
            .flow(account.as_str(), agent, flow)
            .map(|f| FlowDoc::from_domain(&f.flow))
    }

    /// Every live flow's document, sorted.
    pub fn flows(&self, account: &Idn) -> Vec<FlowDoc> {
        let index = self.engine.dispatcher().index();
        let mut v: Vec<_> = index
            .flows()
            .filter(|f| f.flow.account == *account)
            .map(|f| FlowDoc::from_domain(&f.flow))
            .collect();
        v.sort_by(|a, b| (&a.agent_idn, &a.flow_idn).cmp(&(&b.agent_idn, &b.flow_idn)));
        v
    }

    /// Loads `flows.dir` again (every file or none) into the home account, and every other
    /// account's stored flows. Stored (API) flows stay; file flows with the same name win over
    /// them. The files and the store are read on a blocking thread, off the async workers.
    /// Answers how many file flows there are.
    pub async fn reload_flow_files(&self) -> Result<usize, ReloadError> {
        let home = self.home_account();
        let (dir, store) = (self.config.flows.dir.clone(), self.store.clone());
        let read_account = home.clone();
        let (files, mut stored) = tokio::task::spawn_blocking(move || {
            let files = flow_files::load_dir(&read_account, &dir)?;
            let stored = stored_flows(&store)?;
            Ok::<_, ReloadError>((files, stored))
        })
        .await
        .map_err(|e| ReloadError::Store(StoreError::Corrupt(format!("flow reload task: {e}"))))??;
        let mut by_key: BTreeMap<(Name, Name), Flow> = stored
            .remove(&home)
            .unwrap_or_default()
            .into_iter()
            .map(|f| ((f.agent.clone(), f.flow.clone()), f))
            .collect();
        let mut file_keys = BTreeMap::new();
        for (f, _, path) in &files {
            by_key.insert((f.agent.clone(), f.flow.clone()), f.clone());
            file_keys.insert((f.agent.clone(), f.flow.clone()), path.clone());
        }
        let n = files.len();
        let rejected = |error| ReloadError::Rejected {
            dir: self.config.flows.dir.clone(),
            error,
        };
        for (f, _, _) in &files {
            self.admit_runner_url(f).map_err(|mut e| {
                e.field = format!("{}/{}: {}", f.agent, f.flow, e.field);
                rejected(e)
            })?;
        }
        self.replace_account_flows(&home, by_key.into_values().collect())
            .await
            .map_err(|e| match e {
                ReloadError::Stored { error, .. } => rejected(error),
                other => other,
            })?;
        *self.file_flows.lock().expect("file flows lock") = file_keys;
        // The other accounts' flows are only stored ones: as they were accepted.
        for (account, flows) in stored {
            self.replace_account_flows(&account, flows).await?;
        }
        Ok(n)
    }

    /// Puts `flows` in force as every flow of `account`. Flows with a webhook runner and no
    /// secret yet (from a file, or stored before secrets existed) get one; a file's flow shows
    /// it nowhere: rotate to learn it.
    async fn replace_account_flows(
        &self,
        account: &Idn,
        flows: Vec<Flow>,
    ) -> Result<(), ReloadError> {
        let new_keys: Vec<_> = flows
            .iter()
            .filter_map(|f| {
                self.new_runner_keys(f)
                    .map(|k| (f.agent.clone(), f.flow.clone(), k))
            })
            .collect();
        if let Err(error) = self.engine.replace_flows(account, flows).await {
            for (agent, flow, _) in &new_keys {
                self.forget_runner_keys(account, agent, flow);
            }
            return Err(ReloadError::Stored {
                account: account.clone(),
                error,
            });
        }
        for (agent, flow, keys) in &new_keys {
            self.store_runner_keys(account, agent, flow, keys).await?;
        }
        Ok(())
    }

    // ---- data plane ----

    /// Takes an event in: admission, then durable in the inbox, then to the engine. When this
    /// answers `Accepted`, a crash loses nothing: the inbox replays it at the next start.
    pub async fn ingest(&self, event: Event) -> Result<Ingested, IngestError> {
        self.ingest_with(event, Dedupe::Check).await
    }

    /// Takes an event in as [`Daemon::ingest`] does; a replay (`Dedupe::Skip`) is a deliberate
    /// redelivery, routed again even while its `external_event_id` is in the dedupe window.
    pub(crate) async fn ingest_with(
        &self,
        event: Event,
        dedupe: Dedupe,
    ) -> Result<Ingested, IngestError> {
        if self.is_draining() {
            return Err(Refusal::Busy.into());
        }
        let admitted = self.engine.ingress().admit(event)?;
        // Taken before anything is acknowledged: at the in-flight limit the caller hears 503
        // at once instead of waiting.
        let permit = self.engine.ingress().try_permit()?;
        let event = admitted.event();
        let id = event.id;
        let checked = event
            .external_event_id
            .as_ref()
            .filter(|_| dedupe == Dedupe::Check);
        let dedupe_key = checked.map(|x| {
            format!(
                "{}/{}/{}/{x}",
                event.account, event.integration, event.connector
            )
        });
        let envelope = Encoding::MessagePack.encode(&EventEnvelope::from_domain(event));
        let window = self.config.engine.dedupe_window_ms as i64;
        match self
            .store
            .inbox_put(id, dedupe_key, envelope, window)
            .await?
        {
            Written::Duplicate => {
                metrics::counter!(crate::telemetry::metrics::EVENTS_DEDUPLICATED_TOTAL)
                    .increment(1);
                return Ok(Ingested::Duplicate(id));
            }
            Written::Done => {}
        }
        let store = self.store.clone();
        self.engine
            .ingress()
            .submit_with_permit(admitted, permit, Some(leaves_inbox(store, id)))
            .await?;
        Ok(Ingested::Accepted(id))
    }

    /// Submits an event that is already in the inbox; it leaves the inbox once settled.
    pub(crate) async fn hand_to_engine(&self, event: Event) -> Result<(), Refusal> {
        let id = event.id;
        self.engine
            .submit(event, Some(leaves_inbox(self.store.clone(), id)))
            .await
    }
}

/// The settlement of an event in the inbox: it leaves the inbox once done.
fn leaves_inbox(store: Store, id: Uuid) -> Box<dyn crate::admission::delivery::Settle> {
    Box::new(move |s: Settlement| {
        if s == Settlement::Done {
            store.inbox_done(id);
        }
    })
}

/// The flows stored through the API for `account` (a blocking read).
/// Every stored (API) flow, by account. Blocking.
fn stored_flows(store: &Store) -> Result<BTreeMap<Idn, Vec<Flow>>, StoreError> {
    let mut by_account: BTreeMap<Idn, Vec<Flow>> = BTreeMap::new();
    for r in store.flows()? {
        let corrupt = |e: String| StoreError::Corrupt(format!("flow {}/{}: {e}", r.agent, r.flow));
        let account = Idn::parse("account", &r.account).map_err(|e| corrupt(e.to_string()))?;
        let doc: FlowDoc = serde_json::from_str(&r.document).map_err(|e| corrupt(e.to_string()))?;
        let flow = doc
            .to_domain(&account, &r.agent, &r.flow)
            .map_err(|e| corrupt(e.to_string()))?;
        by_account.entry(account).or_default().push(flow);
    }
    Ok(by_account)
}

impl crate::intake::Intake for Daemon {
    fn ingest(
        &self,
        event: Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ingested, IngestError>> + '_>>
    {
        Box::pin(Daemon::ingest(self, event))
    }
}
