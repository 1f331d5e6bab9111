//! The seam every native integration plugs into, in the shape of Vector's sources and sinks:
//! a [`Component`] in `natives/<idn>/`, listed once where the daemon starts, is built once from
//! a [`NativeContext`] (everything a native may use) into what it owns: the command executor
//! (`commands::NativeIntegration`, which also hears its connectors' lives), optionally HTTP
//! routes under paths it owns, a background task that waits for the start gate and ends on the
//! shutdown signal, its own tables (migrations namespaced by its idn, applied by the store seam),
//! how `switchboard rekey` re-seals what those tables keep sealed ([`Reseal`]), its metric
//! names (its `metrics.rs`, described through [`Component::metrics`]), and its own config
//! section (its type, declared on its registration line: `natives::section`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::catalog::Catalog;
use crate::commands::NativeIntegration;
use crate::connectors::Directory;
use crate::dead_letter::{DeadLetterStore, NativeReason};
use crate::domain::PersonaKey;
use crate::fault::{Blame, Fault};
use crate::flow_instance::state::StateStore;
use crate::ingress::InternalEvents;
use crate::intake::StreamInbox;
use crate::outbound::outbox::OutboxSlot;
use crate::outbound::Egress;
use crate::routing::LiveIndex;
use crate::session::SessionTable;
use crate::store::secrets::SecretError;
use crate::store::{SecretBox, Store};

/// A native integration, as the registration list holds it.
pub trait Component: Send + 'static {
    /// The integration idn it carries out (its catalog file's).
    fn idn(&self) -> &'static str;

    /// The migrations of its own tables, in order, applied under its idn when the daemon opens
    /// the store, before anything is built (`Store::migrate_component`). None by default.
    fn migrations(&self) -> &'static [&'static str] {
        &[]
    }

    /// Describes its metrics: the `describe` of its folder's `metrics.rs`, where its metric names
    /// live; the telemetry's `describe` calls it at start. None by default.
    fn metrics(&self) -> Option<fn()> {
        None
    }

    /// The dead-letter reasons it names itself (constants of its own), registered when it is
    /// built so that their stored codes read back. None by default.
    fn dead_letter_reasons(&self) -> &'static [NativeReason] {
        &[]
    }

    /// How `switchboard rekey` re-seals the values its own tables keep sealed with the daemon's
    /// keyring ([`NativeContext::secrets`]). `None` by default: a native that seals nothing.
    /// One that seals and gives none keeps `rekey --drop-old` from dropping the old keys.
    fn reseal(&self) -> Option<Reseal> {
        None
    }

    /// Builds it once the engine's parts exist. Must not block: slow starts go to a task that
    /// waits for [`NativeContext::started`].
    fn build(self: Box<Self>, cx: &NativeContext) -> Built;
}

/// Re-seals, under the keyring's current key, every value of the native's own tables that
/// another key of the ring sealed (`SecretBox::needs_reseal`), inside the store transaction it
/// is given (the caller makes it all or nothing); answers how many values it re-sealed. Run
/// with the daemon stopped, after the native's migrations; running it again finds none left.
pub type Reseal = fn(&rusqlite::Transaction<'_>, &SecretBox) -> Result<usize, ResealError>;

/// Why a native's sealed values were not re-sealed (none of them then was).
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// A stored value does not open with the keyring (a key missing from the key file, or the
    /// value tampered with): the operator's to fix; rekeying again cannot help.
    #[error("{place}: {source}")]
    Open { place: String, source: SecretError },
    /// The store failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Blame for ResealError {
    fn fault(&self) -> Fault {
        match self {
            ResealError::Open { .. } => Fault::Caller,
            ResealError::Sqlite(_) => Fault::Daemon,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, ResealError::Sqlite(_))
    }
}

/// What a component built.
pub struct Built {
    /// Carries out its commands and hears of its connectors.
    pub executor: Arc<dyn NativeIntegration>,
    /// Its HTTP routes, documented (`#[utoipa::path]`), under paths it owns.
    pub routes: Option<Routes>,
}

impl Built {
    /// A native that only carries out commands.
    pub fn executor(executor: Arc<dyn NativeIntegration>) -> Built {
        Built {
            executor,
            routes: None,
        }
    }

    /// With HTTP routes: `routes` registers them (on every HTTP worker, and once for the
    /// OpenAPI document). Handlers reach the native's state through app data it registers
    /// there, and the caller through `api::caller::Caller`.
    pub fn with_routes(
        mut self,
        routes: impl Fn(&mut ServiceConfig) + Send + Sync + 'static,
    ) -> Built {
        self.routes = Some(Routes(Arc::new(routes)));
        self
    }
}

/// A native's HTTP routes.
#[derive(Clone)]
pub struct Routes(Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>);

impl Routes {
    /// Routes `routes` registers (the relay's command stream, beside the natives').
    pub fn new(routes: impl Fn(&mut ServiceConfig) + Send + Sync + 'static) -> Routes {
        Routes(Arc::new(routes))
    }

    /// Registers them on `cfg`.
    pub fn register(&self, cfg: &mut ServiceConfig) {
        (self.0)(cfg)
    }
}

/// Opens once the daemon has restored its state (connectors, flows, the inbox): a native's task
/// does nothing that emits events before.
#[derive(Clone)]
pub struct Started(tokio::sync::watch::Receiver<bool>);

/// Opens the [`Started`] gate.
pub struct StartGate(tokio::sync::watch::Sender<bool>);

impl StartGate {
    /// A closed gate and its watchers.
    pub fn new() -> (StartGate, Started) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (StartGate(tx), Started(rx))
    }

    /// An open gate (an engine without a daemon around it: tests, benchmarks).
    pub fn open() -> Started {
        let (gate, started) = StartGate::new();
        gate.open_now();
        started
    }

    pub fn open_now(&self) {
        self.0.send_replace(true);
    }
}

impl Started {
    /// Resolves once the gate is open; `false` if it was dropped closed (the daemon did not
    /// start).
    pub async fn wait(mut self) -> bool {
        self.0.wait_for(|open| *open).await.is_ok()
    }
}

/// Everything a native integration may use, handed to [`Component::build`].
pub struct NativeContext {
    /// Where it emits events (admitted and routed as any event).
    pub events: InternalEvents,
    /// The connectors, their settings (secrets opened) and status.
    pub directory: Arc<Directory>,
    pub catalog: Arc<Catalog>,
    /// The live sessions.
    pub sessions: Arc<SessionTable>,
    /// The subscription index in force (flows by name).
    pub index: Arc<LiveIndex>,
    /// How persona ids derive from `(account, integration, external_id)`: the persona an
    /// inbound event of a native's route will get.
    pub persona_key: PersonaKey,
    /// Flow state (`set_state`).
    pub state: Arc<StateStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// The outbound toolkit: the policy-checked HTTP client (`outbound::send`), retries
    /// (`outbound::retry`), signing (`outbound::signing`); the outbox is built on the store.
    pub egress: Egress,
    /// The daemon's store (its own tables through `Store::read` / `write`); `None` for an
    /// engine without one (tests, benchmarks): keep state in memory then.
    pub store: Option<Store>,
    /// The daemon's keyring, to seal a native's own secrets as connector settings are sealed;
    /// `None` with no store.
    pub secrets: Option<Arc<SecretBox>>,
    /// Opens once the daemon restored its state.
    pub started: Started,
    /// Cancelled when the daemon stops: background tasks end.
    pub shutdown: CancellationToken,
    /// The daemon's durable outbox: a native that sends registers its destination kind here
    /// while it is built; the engine starts it on the store after the start gate.
    pub outbox: Arc<OutboxSlot>,
    /// With NATS, the events stream: where a native that keeps its own durable record of an
    /// event (timer firings) appends it (`StreamInbox::append_own`) instead of emitting it,
    /// so the persona's partition owner routes it. `None` in the embedded mode.
    pub stream: Option<Arc<dyn StreamInbox>>,
}

/// What natives get from outside the engine.
pub struct NativeSupport {
    pub egress: Egress,
    pub store: Option<Store>,
    pub secrets: Option<Arc<SecretBox>>,
    pub started: Started,
    pub shutdown: CancellationToken,
    /// With NATS, the events stream ([`NativeContext::stream`]).
    pub stream: Option<Arc<dyn StreamInbox>>,
}

impl Default for NativeSupport {
    /// No store, an open gate, the default egress policy (private ranges denied), no stream.
    fn default() -> Self {
        NativeSupport {
            egress: Egress::new(crate::outbound::policy::EgressPolicy::new(Vec::new())),
            store: None,
            secrets: None,
            started: StartGate::open(),
            shutdown: CancellationToken::new(),
            stream: None,
        }
    }
}

/// A component around an executor built beforehand (tests, benchmarks, embedders).
pub struct Prebuilt {
    pub idn: &'static str,
    pub executor: Arc<dyn NativeIntegration>,
}

impl Component for Prebuilt {
    fn idn(&self) -> &'static str {
        self.idn
    }

    fn build(self: Box<Self>, _cx: &NativeContext) -> Built {
        Built::executor(self.executor)
    }
}

/// Whether components bind the listeners they own (the daemon) or not (`switchboard rekey`,
/// which only asks them what they keep sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    Bind,
    Skip,
}
