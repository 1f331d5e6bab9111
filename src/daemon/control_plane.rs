//! The shared control plane (NATS with partitions): accounts, tokens, connectors with their
//! sealed settings, integration settings, flows and runner secrets live in a key-value bucket
//! every daemon watches. The daemon owns the seam ([`ControlPlane`]); the transport implements
//! it and hands every bucket change to [`Daemon::apply_change`]; boot wires both.
//!
//! Write path: a change goes to the engine and the store as in the embedded mode, then into the
//! bucket at the revision this daemon last saw for its key (none: create). A compare-and-set
//! that fails applies the bucket's value here (converges) and answers 409, retryable. One lock
//! spans a change and its revision, so an applied entry never lands between the two.
//! Watch path: an entry newer than the key's revision seen here is applied (`control_apply.rs`)
//! the way start-up restores rows; a daemon's own write comes back at the revision it already
//! holds: skipped. A change the bucket did not take (NATS away) is shared again every second.
//! Seeding: after the first catch-up, every local row whose key the bucket never had is
//! created (create-only: two daemons seeding at once conflict harmlessly).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::control_records::{Kind, Record, RecordKey};
use super::*;

/// A boxed future of the seam.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ControlPlaneError>> + Send + 'a>>;

/// The bucket of the shared control plane, as the daemon sees it. The transport implements it.
pub trait ControlPlane: Send + Sync + 'static {
    /// Puts `record` under `key` (`None`: deletes it) if the key's revision is `expected`
    /// (`None`: the key has no value, or a delete marker); answers the new revision.
    fn publish(
        &self,
        key: &RecordKey,
        record: Option<&Record>,
        expected: Option<u64>,
    ) -> Pending<'_, u64>;

    /// The key's entry now (after a failed compare-and-set).
    fn current(&self, key: &RecordKey) -> Pending<'_, Change>;
}

/// A key's entry in the bucket: its revision and record (`None`: deleted or absent, revision
/// 0 when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: RecordKey,
    pub revision: u64,
    pub record: Option<Record>,
}

/// Why the shared control plane refused or failed a change.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// Another daemon changed the record since this one saw it: this daemon now has the newer
    /// one; the caller may read it and try again.
    #[error("record {key} was changed by another daemon meanwhile; read it and try again")]
    Conflict { key: String },
    /// The bucket did not answer (NATS away): the change is made on this daemon and shared
    /// once the bucket answers (or replaced by the bucket's value, if another came first).
    #[error("control plane bucket: {0}; the change is made on this daemon and shared once the bucket answers")]
    Unavailable(String),
    /// An entry that is no record this daemon reads.
    #[error("control plane record {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

impl Blame for ControlPlaneError {
    fn fault(&self) -> Fault {
        match self {
            ControlPlaneError::Conflict { .. } => Fault::Caller,
            ControlPlaneError::Unavailable(_) | ControlPlaneError::Corrupt { .. } => Fault::Daemon,
        }
    }

    fn retryable(&self) -> bool {
        !matches!(self, ControlPlaneError::Corrupt { .. })
    }
}

/// The daemon's end of the shared control plane: the bucket and the revision of each key this
/// daemon last wrote or applied.
pub struct ControlLink {
    plane: Arc<dyn ControlPlane>,
    seen: tokio::sync::Mutex<HashMap<RecordKey, u64>>,
    /// Keys whose change the bucket did not take (it did not answer): shared again from the
    /// store's row every [`RETRY_EVERY`] until it answers.
    pending: std::sync::Mutex<BTreeSet<RecordKey>>,
    /// Set until start-up has read the bucket to its end: shared flows go to the store only,
    /// and [`Daemon::reload_caught_up_flows`] puts them in force at once.
    catching_up: AtomicBool,
    /// Set once the bucket was read to its end and seeded: changes are shared from then on
    /// (before, start-up's own rows wait for the seeding).
    synced: AtomicBool,
}

impl ControlLink {
    pub fn new(plane: Arc<dyn ControlPlane>) -> ControlLink {
        ControlLink {
            plane,
            seen: Default::default(),
            pending: Default::default(),
            catching_up: AtomicBool::new(true),
            synced: AtomicBool::new(false),
        }
    }
}

/// Held across one change: the revisions seen (with a shared control plane).
pub(crate) type Seen<'a> = Option<tokio::sync::MutexGuard<'a, HashMap<RecordKey, u64>>>;

fn count(kind: Kind, outcome: &'static str) {
    metrics::counter!(
        crate::telemetry::metrics::CONTROL_PLANE_CHANGES_TOTAL,
        "kind" => kind.as_str(),
        "outcome" => outcome
    )
    .increment(1);
}

impl Daemon {
    /// Taken at the start of a change: the revisions seen, held until it is shared. `None`
    /// without a shared control plane.
    pub(crate) async fn control_lock(&self) -> Seen<'_> {
        match &self.control {
            Some(c) => Some(c.seen.lock().await),
            None => None,
        }
    }

    /// Whether shared flows go to the store only for now (start-up reading the bucket).
    pub(super) fn flows_deferred(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| c.catching_up.load(Ordering::Acquire))
    }

    /// Once start-up has read the bucket to its end: the flows it brought (stored, not yet in
    /// force) all in force at once, by one reload of the stored flows and the flow files.
    pub async fn reload_caught_up_flows(&self) -> Result<(), ReloadError> {
        let Some(link) = &self.control else {
            return Ok(());
        };
        // Under the lock: a flow applied from now on goes to the engine too, and one applied
        // before is in the store the reload reads.
        let seen = self.control_lock().await;
        link.catching_up.store(false, Ordering::Release);
        drop(seen);
        self.reload_flow_files().await.map(|_| ())
    }

    /// Shares `record` (already in the engine and the store) at the revision seen.
    pub(crate) async fn share(
        &self,
        seen: &mut Seen<'_>,
        record: Record,
    ) -> Result<(), ControlPlaneError> {
        let key = record.key();
        self.publish_change(seen, key, Some(record)).await
    }

    /// Shares the deletion of `key`.
    pub(crate) async fn share_delete(
        &self,
        seen: &mut Seen<'_>,
        key: RecordKey,
    ) -> Result<(), ControlPlaneError> {
        self.publish_change(seen, key, None).await
    }

    async fn publish_change(
        &self,
        seen: &mut Seen<'_>,
        key: RecordKey,
        record: Option<Record>,
    ) -> Result<(), ControlPlaneError> {
        let (Some(link), Some(map)) = (&self.control, seen.as_deref_mut()) else {
            return Ok(());
        };
        if !link.synced.load(Ordering::Acquire) {
            return Ok(());
        }
        let expected = map.get(&key).copied();
        if record.is_none() && expected.is_none() {
            // Never in the bucket as far as this daemon saw: nothing to delete there.
            return Ok(());
        }
        match link.plane.publish(&key, record.as_ref(), expected).await {
            Ok(revision) => {
                map.insert(key, revision);
                Ok(())
            }
            Err(ControlPlaneError::Conflict { .. }) => {
                count(key.kind(), "conflict");
                // The bucket's value wins here too: this daemon converges before answering.
                let current = match link.plane.current(&key).await {
                    Ok(c) => c,
                    Err(e) => {
                        // Tried again (and then converged) once the bucket answers.
                        if let Ok(mut p) = link.pending.lock() {
                            p.insert(key);
                        }
                        return Err(e);
                    }
                };
                self.apply_locked(map, current).await;
                Err(ControlPlaneError::Conflict {
                    key: key.to_string(),
                })
            }
            Err(e) => {
                if let Ok(mut p) = link.pending.lock() {
                    p.insert(key);
                }
                Err(e)
            }
        }
    }

    /// Shares again what the bucket did not take, as the store has it now (absent: deleted);
    /// a key changed elsewhere meanwhile takes the bucket's value instead.
    async fn retry_shares(&self) -> Result<(), StoreError> {
        let Some(link) = &self.control else {
            return Ok(());
        };
        if link.pending.lock().map(|p| p.is_empty()).unwrap_or(true) {
            return Ok(());
        }
        let mut seen = self.control_lock().await;
        let keys = link
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        let store = self.store.clone();
        let mut local: HashMap<RecordKey, Record> = start::blocking(move || local_records(&store))
            .await?
            .into_iter()
            .map(|r| (r.key(), r))
            .collect();
        let mut keys = keys.into_iter();
        while let Some(key) = keys.next() {
            let outcome = match local.remove(&key) {
                Some(record) => self.share(&mut seen, record).await,
                None => self.share_delete(&mut seen, key.clone()).await,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(key = %key, "control plane: a change the bucket missed is shared")
                }
                Err(ControlPlaneError::Conflict { .. }) => {
                    tracing::warn!(key = %key, "control plane: a change the bucket missed lost to another daemon's; theirs is applied here")
                }
                // Pending again, and the rest with it: the bucket is still away.
                Err(_) => {
                    if let Ok(mut p) = link.pending.lock() {
                        p.extend(keys);
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Applies a bucket entry another daemon wrote (the transport's watch calls this); one
    /// this daemon has seen already (its own write, or an older one) is skipped. Idempotent.
    pub async fn apply_change(&self, change: Change) {
        let Some(link) = &self.control else { return };
        let mut map = link.seen.lock().await;
        if map.get(&change.key).is_some_and(|r| *r >= change.revision) {
            count(change.key.kind(), "seen");
            return;
        }
        self.apply_locked(&mut map, change).await;
    }

    /// Applies `change` whatever was seen, and remembers its revision.
    async fn apply_locked(&self, map: &mut HashMap<RecordKey, u64>, change: Change) {
        let kind = change.key.kind();
        let result = match change.record {
            Some(record) => self.apply_record(record).await,
            None => self.apply_delete(&change.key).await,
        };
        match result {
            Ok(()) => count(kind, "applied"),
            Err(e) => {
                count(kind, "failed");
                tracing::warn!(key = %change.key, error = %e, "control plane: a shared record was not applied here");
            }
        }
        if change.revision > 0 {
            map.insert(change.key, change.revision);
        }
    }

    /// Once the bucket was read to its end at start: creates every local row whose key the
    /// bucket never had (its value or a delete marker), then shares changes from now on.
    pub async fn seed_control_plane(&self) -> Result<usize, StoreError> {
        let Some(link) = &self.control else {
            return Ok(0);
        };
        let store = self.store.clone();
        let local = start::blocking(move || local_records(&store)).await?;
        let mut seen = self.control_lock().await;
        link.synced.store(true, Ordering::Release);
        let mut created = 0;
        for record in local {
            if seen.as_ref().is_some_and(|m| m.contains_key(&record.key())) {
                continue;
            }
            let key = record.key();
            match self.share(&mut seen, record).await {
                Ok(()) => created += 1,
                // Another daemon seeded it first: its value is applied here.
                Err(ControlPlaneError::Conflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "control plane: seeding a record failed; it stays on this daemon")
                }
            }
        }
        Ok(created)
    }
}

/// How often changes the bucket did not take are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Tries the changes the bucket did not take again, every [`RETRY_EVERY`], while the daemon
/// lives.
pub(crate) fn spawn_share_retries(d: &Arc<Daemon>) {
    if d.control.is_none() {
        return;
    }
    let weak = Arc::downgrade(d);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETRY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(d) = weak.upgrade() else { break };
            if let Err(e) = d.retry_shares().await {
                tracing::warn!(error = %e, "control plane: reading the store to share again failed");
            }
        }
    });
}

/// Every record the store holds, in an order a daemon can apply (accounts first, a flow's
/// runner secret before the flow). Blocking.
fn local_records(store: &Store) -> Result<Vec<Record>, StoreError> {
    let mut out: Vec<Record> = Vec::new();
    out.extend(store.accounts()?.into_iter().map(Record::from));
    out.extend(store.tokens(None)?.into_iter().map(Record::from));
    out.extend(store.integration_settings()?.into_iter().map(
        |(account, integration, settings)| {
            Record::Settings(super::control_records::SettingsRecord {
                account,
                integration,
                settings,
            })
        },
    ));
    out.extend(store.connectors()?.into_iter().map(Record::from));
    out.extend(store.runner_secrets()?.into_iter().map(Record::from));
    out.extend(store.flows()?.into_iter().map(Record::from));
    Ok(out)
}
