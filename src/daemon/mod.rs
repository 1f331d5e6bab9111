//! The daemon around the engine: the durable store under every change, the inbox under every
//! acknowledged event, flows from files, and the runners a deployment uses.
//! The HTTP surface calls only this.

pub mod access;
pub mod connectors;
pub mod control_apply;
pub mod control_plane;
pub mod control_records;
pub mod errors;
pub mod flow_files;
pub mod flows;
pub mod intake;
pub mod journals;
pub mod limits;
pub mod operations;
pub mod private_files;
pub mod runner_secrets;
pub mod secrets;
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
pub use control_plane::ControlPlaneError;
pub use errors::{ChangeError, ReloadError};
pub use flows::{FlowWarning, PutFlowAnswer};
pub use intake::Dedupe;
pub(crate) use secrets::aad;

/// A transport's connection, as readiness and `/metrics` see it. The daemon owns this interface;
/// the transport implements it and boot hands it over.
pub trait TransportLink: Send + Sync {
    /// The transport's name: the `transport` label, and readiness' check is `transport`.
    fn name(&self) -> &'static str;
    fn connected(&self) -> bool;
    /// With a partitioned events stream: whether this daemon holds its membership key (owns
    /// its share); readiness' check is `partitions`. `None` without partitions.
    fn member(&self) -> Option<bool> {
        None
    }
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
    /// With NATS, the events stream: the intake's durable step (see `intake.rs`).
    stream_inbox: Option<Arc<dyn crate::intake::StreamInbox>>,
    /// Flows defined by files: reloads replace exactly these.
    file_flows: std::sync::Mutex<BTreeMap<(Name, Name), std::path::PathBuf>>,
    /// What finishes after draining and before exit (the transport leaving its members and
    /// releasing its partitions): each answers, or is dropped, once done.
    farewells: std::sync::Mutex<Vec<tokio::sync::oneshot::Receiver<()>>>,
    /// With NATS and partitions, the shared control plane (`control_plane.rs`).
    control: Option<control_plane::ControlLink>,
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
    /// With NATS, the events stream the intake appends to (the embedded mode: `None`, the
    /// store's inbox).
    pub stream_inbox: Option<Arc<dyn crate::intake::StreamInbox>>,
    /// With NATS and partitions, the bucket of the shared control plane (the embedded mode:
    /// `None`, the store alone).
    pub control: Option<Arc<dyn control_plane::ControlPlane>>,
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
            stream_inbox: p.stream_inbox,
            file_flows: Default::default(),
            farewells: Default::default(),
            control: p.control.map(control_plane::ControlLink::new),
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

    /// Registers work to finish after draining, before exit: done when the sender answers or
    /// is dropped.
    pub fn farewell(&self) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut f) = self.farewells.lock() {
            f.push(rx);
        }
        tx
    }

    /// Waits (until `deadline`) for the work registered with [`Daemon::farewell`].
    pub async fn farewells_done(&self, deadline: tokio::time::Instant) {
        let pending = self
            .farewells
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        let all = futures_util::future::join_all(pending);
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::warn!("shutdown bound reached before the transport left its members");
        }
    }
}
