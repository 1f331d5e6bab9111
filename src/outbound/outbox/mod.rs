//! The durable outbox: messages the daemon must deliver to somebody else (outgoing API webhooks,
//! commands to external adapters in the embedded mode), kept in the store until they settle.
//!
//! - [`Outbox::enqueue`] writes the message's row and answers a [`Durable`] future once it
//!   committed: a caller acknowledges only then, and refuses when enqueueing fails (the queue
//!   is full, the destination is disabled) before acknowledging anything.
//! - A message goes to a *destination*, `<kind>:<id>` (`api:<account>/<connector>`), and has
//!   an ordering key (a persona): per (destination, key), a *lane*, messages leave strictly in
//!   enqueue order, the head retried while the rest wait; other lanes go on meanwhile, at most
//!   [`OutboxSettings::max_in_flight`] attempts at once.
//! - A [`Destination`], registered per kind before the start, delivers (resolving secrets at
//!   send time: rows hold none), sets the retry budget ([`RetryPolicy`]) and is told how each
//!   message settled ([`Settled`]), to answer its owner. Retries back off exponentially with
//!   full jitter, honouring `Retry-After`; a message refused for good, out of budget or behind a
//!   gone destination is dead-lettered (`delivery_failed`, the last reason; never a secret).
//! - HTTP 410 ([`Attempt::Gone`]) disables the destination: what is queued for it settles as
//!   gone, later enqueues are refused until [`Outbox::enable`].
//! - [`Outbox::withdraw`] removes messages without an attempt in flight (one waiting for its
//!   retry too): never sent after, not dead-lettered.
//! - At start every stored row is replayed (a message whose attempt a crash interrupted is
//!   sent again with the same id: receivers dedupe on it).
//!
//! Memory is bounded: at most [`OutboxSettings::max_lanes`] lanes are held, each with at most
//! [`OutboxSettings::lane_window`] messages; the rest stays in the store and is read in pages
//! (`worker.rs`). Metrics: `switchboard_outbox_pending{destination_kind}`,
//! `_deliveries_total{destination_kind, outcome}`, `_delivery_seconds{destination_kind}`.
//!
//! How a sender uses it (the `api` native's outgoing webhooks, the embedded adapters' command
//! delivery): one [`Destination`] per kind, registered in [`Destinations`] before
//! [`Outbox::start`]; per command an [`OutboxItem`] to `api:<account>/<connector>`, keyed by
//! the persona (order per conversation), its id the command act id (`webhook-id`: the same on
//! every attempt and after a restart), its payload the body, its `meta` what the destination
//! needs to answer (act, persona); the destination signs and sends at each attempt
//! ([`Attempt::of_sent`] reads the answer), and on [`Destination::settled`] emits the command's
//! result event. [`Outbox::enable`] after the connector's URL changed; [`Outbox::withdraw`]
//! recalls what a barge-in made stale.

mod attempt;
mod attempts;
mod intake;
mod kind;
mod lanes;
mod slot;
mod sweep;
mod worker;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use attempt::{Attempt, Receipt, Settled};
pub use slot::OutboxSlot;

use crate::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::Idn;
use crate::fault::{Blame, Fault};
use crate::outbound::retry::Backoff;
use crate::store::outbox::OutboxRow;
use crate::store::{Store, StoreError};
use crate::telemetry::queue;

/// A message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The message id, the same on every attempt (Standard Webhooks' `webhook-id`).
    pub id: Uuid,
    pub account: Idn,
    /// `<kind>:<id>`: the kind picks the [`Destination`]; the whole is the destination.
    pub destination: String,
    /// Messages of one (destination, key) leave in enqueue order.
    pub key: String,
    pub payload: Bytes,
    /// The owner's, opaque: what it needs to answer once the message settles (an act id, a
    /// persona). Kept with the row, so it survives restarts. Never secrets.
    pub meta: Bytes,
    /// Unix milliseconds.
    pub created_ms: i64,
}

impl OutboxItem {
    /// A message with a new id, created now, without meta.
    pub fn new(
        account: Idn,
        destination: impl Into<String>,
        key: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        OutboxItem {
            id: Uuid::now_v7(),
            account,
            destination: destination.into(),
            key: key.into(),
            payload: payload.into(),
            meta: Bytes::new(),
            created_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    pub fn with_id(self, id: Uuid) -> Self {
        OutboxItem { id, ..self }
    }

    pub fn with_meta(self, meta: impl Into<Bytes>) -> Self {
        OutboxItem {
            meta: meta.into(),
            ..self
        }
    }

    /// The destination's kind: what comes before its first `:`.
    pub fn kind(&self) -> &str {
        kind_of(&self.destination).unwrap_or("")
    }

    fn row(&self, seq: i64) -> OutboxRow {
        OutboxRow {
            seq,
            id: self.id,
            account: self.account.to_string(),
            kind: self.kind().to_owned(),
            destination: self.destination.clone(),
            key: self.key.clone(),
            payload: self.payload.to_vec(),
            meta: self.meta.to_vec(),
            created_ms: self.created_ms,
            attempts: 0,
            first_attempt_ms: None,
        }
    }
}

/// The kind of `destination` (`api` of `api:acme/hooks`), if it has one and an id after it.
fn kind_of(destination: &str) -> Option<&str> {
    match destination.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Some(kind),
        _ => None,
    }
}

/// How long a destination's messages are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Attempts at most, if limited.
    pub max_attempts: Option<u32>,
    /// From the first attempt: an attempt that would start later is not made.
    pub retry_for: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_INITIAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX: Duration = Duration::from_secs(300);
    pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(3600);
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::new(Self::DEFAULT_INITIAL, Self::DEFAULT_MAX),
            max_attempts: None,
            retry_for: Self::DEFAULT_RETRY_FOR,
        }
    }
}

/// Delivers the messages of one destination kind and answers their owner. Implemented by the
/// natives that send (API webhooks, adapters' command endpoints).
pub trait Destination: Send + Sync + 'static {
    /// One attempt (`attempt` counts from 1). Resolves the destination's URL and secrets now:
    /// the outbox stores none. An attempt running past [`OutboxSettings::attempt_timeout`] is
    /// dropped and retried.
    fn deliver(&self, item: &OutboxItem, attempt: u32) -> BoxFuture<'static, Attempt>;

    /// The retry budget of `item`, asked before its first attempt (and after a restart).
    fn retry_policy(&self, _item: &OutboxItem) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// `item` left the outbox. Called on the outbox's task: must not block.
    fn settled(&self, item: &OutboxItem, outcome: &Settled);

    /// The dead letter of `item`, undelivered for `reason` (`detail` names the destination and
    /// the last reason). By default the payload as it is; a command's owner rebuilds the
    /// command (from `meta` or the payload), so it can be replayed.
    fn dead_letter(
        &self,
        item: &OutboxItem,
        reason: DeadLetterReason,
        detail: String,
    ) -> DeadLetter {
        DeadLetter::raw_for(
            reason,
            item.account.clone(),
            detail,
            "application/octet-stream".into(),
            item.payload.to_vec(),
        )
    }
}

/// The destinations by kind, given to [`Outbox::start`].
#[derive(Default, Clone)]
pub struct Destinations {
    by_kind: HashMap<String, Arc<dyn Destination>>,
}

impl Destinations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `destination` for `kind` (lowercase letters, digits, `_`; a bug otherwise).
    ///
    /// # Panics
    /// When `kind` is not such a word, or is registered already.
    pub fn register(mut self, kind: &str, destination: Arc<dyn Destination>) -> Self {
        assert!(
            !kind.is_empty()
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "outbox destination kind {kind:?}"
        );
        let before = self.by_kind.insert(kind.to_owned(), destination);
        assert!(
            before.is_none(),
            "outbox destination kind {kind} registered twice"
        );
        self
    }
}

/// The outbox's bounds.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Attempts in flight at most, over every destination.
    pub max_in_flight: usize,
    /// Lanes (destination, key) held in memory at most; the others wait in the store.
    pub max_lanes: usize,
    /// Messages of one lane held in memory at most; the rest is read when these are done.
    pub lane_window: usize,
    /// Enqueues and requests waiting for the worker at most; past it, enqueue is refused.
    pub queue: usize,
    /// One attempt at most, whatever the destination does.
    pub attempt_timeout: Duration,
    /// Rows per read (replay, withdrawals, purges).
    pub page: usize,
}

impl OutboxSettings {
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
    pub const DEFAULT_MAX_LANES: usize = 1024;
    pub const DEFAULT_LANE_WINDOW: usize = 16;
    pub const DEFAULT_QUEUE: usize = 1024;
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_PAGE: usize = 256;
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            max_lanes: Self::DEFAULT_MAX_LANES,
            lane_window: Self::DEFAULT_LANE_WINDOW,
            queue: Self::DEFAULT_QUEUE,
            attempt_timeout: Self::DEFAULT_ATTEMPT_TIMEOUT,
            page: Self::DEFAULT_PAGE,
        }
    }
}

/// Why a message was not taken, or a request not done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    /// The destination is not `<kind>:<id>`, or no destination serves its kind.
    #[error("no outbox destination for {0:?}")]
    UnknownDestination(String),
    /// The destination answered 410 Gone; it takes nothing until enabled again.
    #[error("outbox destination {0} is disabled: it answered Gone")]
    Disabled(String),
    #[error("the outbox is full")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the outbox is stopped")]
    Closed,
}

impl Blame for OutboxError {
    fn fault(&self) -> Fault {
        match self {
            OutboxError::UnknownDestination(_) => Fault::Caller,
            OutboxError::Disabled(_) => Fault::Peer,
            _ => Fault::Daemon,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            OutboxError::Full => true,
            OutboxError::Store(e) => e.retryable(),
            _ => false,
        }
    }
}

/// What an enqueue came to once its row committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// A message with this id is queued already (this one was not added).
    AlreadyQueued,
}

/// Resolves once the enqueued message's row committed (or failed to).
#[must_use = "the message is durable only once this resolves"]
pub struct Durable(oneshot::Receiver<Result<Enqueued, OutboxError>>);

impl Future for Durable {
    type Output = Result<Enqueued, OutboxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(OutboxError::Closed)))
    }
}

/// Picks messages to withdraw.
pub type Pick = Arc<dyn Fn(&OutboxItem) -> bool + Send + Sync>;

/// Which messages [`Outbox::withdraw`] removes.
#[derive(Clone)]
pub enum Withdraw {
    Ids(Vec<Uuid>),
    /// The messages of `destination` (of one key, or all) that `pick` picks.
    Matching {
        destination: String,
        key: Option<String>,
        pick: Pick,
    },
}

/// A message handed to the worker, with the commit of its row.
struct Enqueue {
    item: Arc<OutboxItem>,
    seq: i64,
    commit: BoxFuture<'static, Result<crate::store::Written, StoreError>>,
    answer: oneshot::Sender<Result<Enqueued, OutboxError>>,
}

enum Request {
    Enqueued(Enqueue),
    Withdraw(Withdraw, oneshot::Sender<Result<usize, OutboxError>>),
}

/// The disabled destinations, shared by the handles and the worker.
type Disabled = Arc<RwLock<HashSet<String>>>;

/// A handle on the outbox. Cheap to clone; the worker stops when the last handle is dropped
/// (what it holds stays in the store).
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    tx: mpsc::Sender<Request>,
    store: Store,
    /// The last `seq` given; taken with the writer's queue in one step, so `seq` order is the
    /// writer's order.
    seq: Mutex<i64>,
    kinds: HashSet<String>,
    disabled: Disabled,
}

impl Outbox {
    /// Starts the worker on the current runtime: it replays what the store holds, then delivers
    /// what comes.
    pub async fn start(
        store: Store,
        dead_letters: Arc<dyn DeadLetterStore>,
        destinations: Destinations,
        settings: OutboxSettings,
    ) -> Result<Outbox, StoreError> {
        let census = store.clone();
        let (counts, max_seq) = tokio::task::spawn_blocking(move || census.outbox_census())
            .await
            .map_err(|e| StoreError::Corrupt(format!("outbox census task: {e}")))??;
        let (tx, rx) = queue::bounded(queue::names::OUTBOX, settings.queue);
        let disabled = Disabled::default();
        let kinds = destinations.by_kind.keys().cloned().collect();
        worker::Worker::spawn(
            worker::Parts {
                store: store.clone(),
                dead_letters,
                destinations,
                settings,
                disabled: disabled.clone(),
                counts,
            },
            rx,
        );
        Ok(Outbox {
            shared: Arc::new(Shared {
                tx,
                store,
                seq: Mutex::new(max_seq),
                kinds,
                disabled,
            }),
        })
    }

    /// Queues `item`; the answer resolves once its row committed. Refused at once (nothing
    /// stored) for an unknown or disabled destination, or when the worker's queue or the
    /// store's is full.
    pub fn enqueue(&self, item: OutboxItem) -> Result<Durable, OutboxError> {
        let s = &self.shared;
        if !kind_of(&item.destination).is_some_and(|k| s.kinds.contains(k)) {
            return Err(OutboxError::UnknownDestination(item.destination));
        }
        if self.is_disabled(&item.destination) {
            return Err(OutboxError::Disabled(item.destination));
        }
        let mut seq = s.seq.lock().unwrap_or_else(|p| p.into_inner());
        let permit = s.tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => {
                queue::full(queue::names::OUTBOX);
                OutboxError::Full
            }
            mpsc::error::TrySendError::Closed(()) => OutboxError::Closed,
        })?;
        let next = *seq + 1;
        let commit = s.store.outbox_put(item.row(next)).map_err(|e| match e {
            StoreError::Busy => OutboxError::Full,
            e => OutboxError::Store(e),
        })?;
        *seq = next;
        let (answer, rx) = oneshot::channel();
        permit.send(Request::Enqueued(Enqueue {
            item: Arc::new(item),
            seq: next,
            commit: commit.boxed(),
            answer,
        }));
        Ok(Durable(rx))
    }

    /// Removes the messages `which` picks that are not being sent right now; how many. Their
    /// owners are told [`Settled::Withdrawn`] before this answers; none of them is sent after.
    pub async fn withdraw(&self, which: Withdraw) -> Result<usize, OutboxError> {
        let (answer, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Request::Withdraw(which, answer))
            .await
            .map_err(|_| OutboxError::Closed)?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }

    /// Takes messages for `destination` again (after its address changed); whether it was
    /// disabled.
    pub fn enable(&self, destination: &str) -> bool {
        self.shared
            .disabled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(destination)
    }

    pub fn is_disabled(&self, destination: &str) -> bool {
        self.shared
            .disabled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(destination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_is_a_kind_and_an_id() {
        for (d, want) in [
            ("api:acme/hooks", Some("api")),
            ("adapter:a:b", Some("adapter")),
            ("api:", None),
            (":x", None),
            ("api", None),
        ] {
            assert_eq!(kind_of(d), want, "{d}");
        }
    }

    #[test]
    fn enqueue_refusals_say_whose_fault() {
        assert_eq!(
            OutboxError::UnknownDestination("x".into()).fault(),
            Fault::Caller
        );
        assert_eq!(OutboxError::Disabled("api:a/b".into()).fault(), Fault::Peer);
        assert!(OutboxError::Full.retryable());
        assert!(!OutboxError::Disabled("api:a/b".into()).retryable());
    }
}
