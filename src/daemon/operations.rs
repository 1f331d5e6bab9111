//! What the HTTP surface asks of the daemon beyond the control plane and ingestion: the catalog
//! and connectors to show, commands and runner answers, explain, sessions, dead letters and
//! their replay, the metrics page. `http/` calls only these methods.

use std::sync::Arc;

use uuid::Uuid;

use super::{Daemon, IngestError};
use crate::catalog::{Catalog, Integration};
use crate::commands::CommandRefusal;
use crate::connectors::registry::{ConnectorView, ControlError};
use crate::dead_letter::{self, DeadLetter, DeadLetterPayload, DeadLetterReason, ReadError};
use crate::domain::{Command, Idn, PersonaId};
use crate::fault::{Blame, Fault};
use crate::invocation::Outcome;
use crate::routing::explain::Explanation;
use crate::session::SessionView;
use crate::skill_runner::pending::UnknownInvocation;
use crate::store::{SessionRow, StoreError};
use crate::telemetry::handles;
use crate::wire::envelope::Limits;

/// Why a command from the HTTP data plane was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(#[from] CommandRefusal),
    #[error(transparent)]
    NotWaiting(#[from] UnknownInvocation),
}

/// Why a dead letter was not replayed; the letter stays.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter {0}")]
    NotFound(Uuid),
    #[error("{0}")]
    NotReplayable(&'static str),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Command(#[from] CommandRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Blame for ReplayError {
    fn fault(&self) -> Fault {
        match self {
            ReplayError::NotFound(_) | ReplayError::NotReplayable(_) => Fault::Caller,
            ReplayError::Read(e) => e.fault(),
            ReplayError::Ingest(e) => e.fault(),
            ReplayError::Command(e) => e.fault(),
            ReplayError::Store(e) => e.fault(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ReplayError::NotFound(_) | ReplayError::NotReplayable(_) => false,
            ReplayError::Read(e) => e.retryable(),
            ReplayError::Ingest(e) => e.retryable(),
            ReplayError::Command(e) => e.retryable(),
            ReplayError::Store(e) => e.retryable(),
        }
    }
}

impl Blame for CommandError {
    fn fault(&self) -> Fault {
        match self {
            CommandError::Refused(e) => e.fault(),
            CommandError::NotWaiting(e) => e.fault(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            CommandError::Refused(e) => e.retryable(),
            CommandError::NotWaiting(e) => e.retryable(),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// The event was ingested again, marked redelivered.
    Event(Uuid),
    /// The command was sent again under this act id.
    Command(Uuid),
}

impl Daemon {
    /// The persona id of the actor `external_id` on `integration`, as this daemon derives it.
    pub fn persona_of(&self, account: &Idn, integration: &Idn, external_id: &str) -> PersonaId {
        self.engine
            .ingress()
            .persona_key()
            .derive(account, integration, external_id)
    }

    /// Envelope limits of the wire.
    pub fn limits(&self) -> Limits {
        self.config.envelope.limits()
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        self.engine.catalog()
    }

    /// A listed integration by idn or id.
    pub fn listed_integration(&self, id: &str) -> Option<&Arc<Integration>> {
        self.engine.catalog().find(id).filter(|i| i.spec.listed)
    }

    /// A connector of `account` by id; another account's is as absent as a missing one.
    pub fn connector(&self, account: &Idn, id: Uuid) -> Result<ConnectorView, ControlError> {
        self.engine
            .registry()
            .get(id)
            .ok()
            .filter(|v| v.key.account == *account)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))
    }

    /// The connectors of this account, optionally of one integration.
    pub fn connectors(&self, account: &Idn, integration: Option<&str>) -> Vec<ConnectorView> {
        self.engine.registry().list(account, integration)
    }

    /// Integration-level settings of this account, secrets left out.
    pub fn integration_settings(
        &self,
        account: &Idn,
        integration: &str,
    ) -> Result<Vec<(String, String)>, ControlError> {
        self.engine
            .registry()
            .integration_settings(account, integration)
    }

    /// A connector of this account by its idns.
    pub fn find_connector(
        &self,
        account: &Idn,
        integration: &str,
        connector: &str,
    ) -> Option<ConnectorView> {
        self.engine.registry().find(account, integration, connector)
    }

    /// Keeps bytes that never decoded into an event as a dead letter, with the reason, and
    /// counts them: nothing is lost.
    pub fn record_malformed(
        &self,
        account: &Idn,
        reason: String,
        content_type: String,
        bytes: Vec<u8>,
    ) {
        self.record_refused_body(account, "malformed", reason, content_type, bytes);
    }

    /// Keeps a refused body (malformed, too large, of an unsupported type) as a dead letter
    /// cut to `dead_letters.max_raw_bytes`, and counts it in `events_rejected_total{reason}`.
    pub fn record_refused_body(
        &self,
        account: &Idn,
        counted_as: &'static str,
        reason: String,
        content_type: String,
        bytes: Vec<u8>,
    ) {
        handles::rejected(counted_as);
        // (The store keeps `dead_letters.max_raw_bytes` of them and says so in the detail.)
        dead_letter::record(
            &**self.engine.dead_letters(),
            DeadLetter::raw(account.clone(), reason, content_type, bytes),
        );
    }

    /// Sends a command for `persona` outside any invocation, once it passed the command
    /// stage's checks; returns its act id.
    pub fn send_command(&self, command: Command, persona: PersonaId) -> Result<Uuid, CommandError> {
        // The command's account is the caller's (checked at the HTTP edge): its connector is
        // looked up in that account only.
        self.engine.check_command(&command)?;
        Ok(self.engine.send_command(command, persona))
    }

    /// Adds a command to the invocation `invocation`, which must still wait for its answer.
    pub fn command_for_invocation(
        &self,
        account: &Idn,
        invocation: Uuid,
        command: Command,
    ) -> Result<(), CommandError> {
        if !self.pending.is_waiting_in(invocation, account) {
            return Err(UnknownInvocation(invocation).into());
        }
        self.engine.check_command(&command)?;
        self.pending.answer(invocation, None, vec![command])?;
        Ok(())
    }

    /// A runner's late answer to invocation `id`.
    pub fn answer_invocation(
        &self,
        account: &Idn,
        id: Uuid,
        outcome: Option<Outcome>,
        commands: Vec<Command>,
    ) -> Result<(), UnknownInvocation> {
        if !self.pending.is_waiting_in(id, account) {
            return Err(UnknownInvocation(id));
        }
        self.pending.answer(id, outcome, commands)
    }

    pub fn explain(
        &self,
        account: &Idn,
        integration: &Idn,
        connector: &Idn,
        event: &Idn,
    ) -> Explanation {
        self.engine.explain(account, integration, connector, event)
    }

    /// Live sessions of this account.
    pub fn live_sessions(&self, account: &Idn) -> Vec<SessionView> {
        self.engine.sessions(account)
    }

    /// Ended sessions of this account, newest first, at most `limit`: `(row, ended_at,
    /// reason)`. Reads what was recorded before the call (read your writes), off the async
    /// workers.
    pub async fn ended_sessions(
        &self,
        account: &Idn,
        limit: usize,
    ) -> Result<Vec<(SessionRow, String, String)>, StoreError> {
        self.store.flush().await?;
        let (store, account) = (self.store.clone(), account.clone());
        tokio::task::spawn_blocking(move || store.ended_sessions(account.as_str(), limit))
            .await
            .map_err(|e| StoreError::Corrupt(format!("session read task: {e}")))?
    }

    /// Dead letters of this account, newest first, at most `limit`, optionally of one reason
    /// and recorded at or after `since`; those recorded before the call included.
    pub async fn dead_letters(
        &self,
        account: &Idn,
        limit: usize,
        reason: Option<DeadLetterReason>,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<DeadLetter>, ReplayError> {
        self.store.flush().await?;
        let (letters, account) = (self.engine.dead_letters().clone(), account.clone());
        // Filters apply to the newest ones read (up to the largest page).
        let read = if reason.is_some() || since.is_some() {
            1000
        } else {
            limit
        };
        let list = blocking(move || letters.list(&account, read)).await??;
        Ok(list
            .into_iter()
            .filter(|l| reason.is_none_or(|r| l.reason == r))
            .filter(|l| since.is_none_or(|t| l.at >= t))
            .take(limit)
            .collect())
    }

    /// One dead letter of this account.
    pub async fn dead_letter(&self, account: &Idn, id: Uuid) -> Result<DeadLetter, ReplayError> {
        self.store.flush().await?;
        let letters = self.engine.dead_letters().clone();
        let account = account.clone();
        blocking(move || letters.get(id))
            .await??
            .filter(|l| l.account == account)
            .ok_or(ReplayError::NotFound(id))
    }

    /// Routes a dead letter's event or command again; the letter goes once that succeeded. A
    /// replay is a deliberate redelivery: the event is marked `redelivered`.
    pub async fn replay_dead_letter(
        &self,
        account: &Idn,
        id: Uuid,
    ) -> Result<Replayed, ReplayError> {
        let letter = self.dead_letter(account, id).await?;
        let replayed = match letter.payload {
            DeadLetterPayload::Event { event, .. } => {
                let mut e = *event;
                e.redelivered = true;
                let id = e.id;
                self.ingest_with(e, super::Dedupe::Skip).await?;
                Replayed::Event(id)
            }
            DeadLetterPayload::Command { command, persona } => {
                let persona = persona.ok_or(ReplayError::NotReplayable(
                    "this command's persona is unknown",
                ))?;
                self.engine.check_command(&command)?;
                Replayed::Command(self.engine.send_command(*command, persona))
            }
            DeadLetterPayload::Raw { .. } => {
                return Err(ReplayError::NotReplayable(
                    "these bytes never decoded into an event; fix and send them again",
                ))
            }
        };
        let letters = self.engine.dead_letters().clone();
        blocking(move || letters.remove(id)).await??;
        self.store.flush().await?;
        Ok(replayed)
    }

    /// The Prometheus page, if this daemon records metrics.
    pub fn render_metrics(&self) -> Option<String> {
        let exporter = self.metrics.as_ref()?;
        self.engine.ingress().report_inflight();
        crate::telemetry::queue::report();
        crate::telemetry::process::report();
        if let Some(t) = &self.transport {
            metrics::gauge!(crate::telemetry::metrics::TRANSPORT_CONNECTED, "transport" => t.name())
                .set(if t.connected() { 1.0 } else { 0.0 });
        }
        Some(exporter.render())
    }

    /// Readiness: every check, each `Ok` or why it fails. Ready when all pass: started and not
    /// draining, the store's writer commits a no-op write within [`STORE_PROBE_TIMEOUT`], and
    /// the transport, if configured, is connected (and, with partitions, a member).
    pub async fn readiness(&self) -> Readiness {
        let mut checks = Vec::with_capacity(4);
        let started = self.ready.load(std::sync::atomic::Ordering::Acquire);
        checks.push((
            "started",
            started.then_some(()).ok_or_else(|| "starting".to_owned()),
        ));
        let draining = self.is_draining();
        checks.push((
            "draining",
            (!draining)
                .then_some(())
                .ok_or_else(|| "shutting down".to_owned()),
        ));
        let store = match tokio::time::timeout(
            STORE_PROBE_TIMEOUT,
            self.store.write(|_tx| Ok(crate::store::Written::Done)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("not writable: {e}")),
            Err(_) => Err(format!(
                "no write committed within {} ms",
                STORE_PROBE_TIMEOUT.as_millis()
            )),
        };
        checks.push(("store", store));
        if let Some(t) = &self.transport {
            let state = t
                .connected()
                .then_some(())
                .ok_or_else(|| format!("{} disconnected", t.name()));
            checks.push(("transport", state));
            if let Some(member) = t.member() {
                let state = member.then_some(()).ok_or_else(|| {
                    "no membership key: owns no partition of the events stream".to_owned()
                });
                checks.push(("partitions", state));
            }
        }
        Readiness { checks }
    }
}

/// How long readiness waits for the store's writer to commit a no-op write.
pub const STORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The outcome of the readiness checks, in a fixed order.
#[derive(Debug)]
pub struct Readiness {
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    /// The names of the failing checks.
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Runs a blocking read off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReadError::Unavailable(format!("read task: {e}")))
}
