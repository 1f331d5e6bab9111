//! Membership of the daemons sharing a partitioned events stream: each holds a key (its member
//! id) in a key-value bucket with a per-key TTL, refreshed every third of it by compare-and-set
//! on its own revision; every daemon watches the bucket for the live set. A daemon that could
//! not refresh its key within the TTL (a server lost, the key expired) is no member: it owns
//! nothing until it has joined again. Draining, it deletes its key at once.
//!
//! The watch is prompt but can miss changes (a delete, or an expiry marker that itself expired,
//! while the watcher reconnected to another server): the live set is also reconciled with the
//! bucket's keys every third of the TTL, so every daemon's view converges on the same set and no
//! partition is left to a member that only one daemon still sees.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connection::NatsError;
use crate::daemon::Daemon;

/// How long this daemon's membership is sure to last: until a TTL after the last refresh that
/// was *sent* (the server started its TTL later). Read where a partition's event is taken and
/// before it is invoked: a daemon that was stopped (SIGSTOP, a long pause) past it hands
/// nothing on, whatever its tasks have not noticed yet, since the monotonic clock ran on.
#[derive(Debug)]
pub struct Tenure {
    origin: Instant,
    /// Milliseconds after `origin` until which the key is held; 0: not held.
    until_ms: std::sync::atomic::AtomicU64,
}

impl Tenure {
    pub fn new() -> Tenure {
        Tenure {
            origin: Instant::now(),
            until_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether the membership holds now.
    pub fn held(&self) -> bool {
        let now = self.origin.elapsed().as_millis() as u64;
        now < self.until_ms.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Held until `ttl` after `sent`.
    fn renewed(&self, sent: Instant, ttl: Duration) {
        let until = (sent + ttl)
            .saturating_duration_since(self.origin)
            .as_millis() as u64;
        self.until_ms
            .store(until, std::sync::atomic::Ordering::Release);
    }

    fn lapsed(&self) {
        self.until_ms.store(0, std::sync::atomic::Ordering::Release);
    }
}

impl Default for Tenure {
    fn default() -> Self {
        Tenure::new()
    }
}

/// What a daemon knows of the members: the live set (sorted) and whether it is in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub members: Vec<String>,
    /// This daemon holds its key (joined, refreshed within the TTL).
    pub joined: bool,
}

/// Opens (or creates) the members bucket: history 1, per-key TTLs, and delete markers so that
/// watchers see an expired key go.
pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    replicas: usize,
) -> Result<kv::Store, NatsError> {
    let config = kv::Config {
        bucket: name.to_owned(),
        history: 1,
        num_replicas: replicas,
        limit_markers: Some(ttl),
        ..Default::default()
    };
    super::buckets::open(js, config, "members bucket").await
}

/// Keeps `me`'s key alive and `tx`'s view current until the daemon drains; then deletes the
/// key. Answers the membership's [`Tenure`].
pub fn spawn(
    daemon: Arc<Daemon>,
    js: jetstream::Context,
    store: kv::Store,
    me: String,
    ttl: Duration,
    tx: watch::Sender<View>,
) -> Arc<Tenure> {
    let tenure = Arc::new(Tenure::new());
    let live = Arc::new(std::sync::Mutex::new(Live::default()));
    tokio::spawn(watch_members(store.clone(), live.clone(), tx.clone()));
    tokio::spawn(reconcile(store.clone(), live.clone(), tx.clone(), ttl / 3));
    // The key is deleted before the daemon exits.
    let farewell = daemon.farewell();
    let t = tenure.clone();
    tokio::spawn(async move {
        hold_key(daemon, js, store, me, ttl, live, tx, &t).await;
        t.lapsed();
        drop(farewell);
    });
    tenure
}

/// The members a daemon sees, and how many watch changes made it (a listing of the keys
/// replaces it only when no change came in while it was read).
#[derive(Default)]
struct Live {
    set: BTreeSet<String>,
    changes: u64,
}

type Shared = Arc<std::sync::Mutex<Live>>;

/// Publishes the view from the live set and the key's state.
fn publish(tx: &watch::Sender<View>, live: &std::sync::Mutex<Live>, joined: bool) {
    let members: Vec<String> = live
        .lock()
        .map(|l| l.set.iter().cloned().collect())
        .unwrap_or_default();
    tx.send_if_modified(|v| {
        let next = View { members, joined };
        let changed = *v != next;
        *v = next;
        changed
    });
}

/// Follows the bucket: puts add members, deletes (and expiry markers) remove them.
async fn watch_members(store: kv::Store, live: Shared, tx: watch::Sender<View>) {
    let mut pause = Duration::from_millis(100);
    while !tx.is_closed() {
        let mut watch = match store.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "members: watching the bucket failed; again soon");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { break };
            if let Ok(mut l) = live.lock() {
                match entry.operation {
                    kv::Operation::Put => l.set.insert(entry.key),
                    kv::Operation::Delete | kv::Operation::Purge => l.set.remove(&entry.key),
                };
                l.changes += 1;
            }
            let joined = tx.borrow().joined;
            publish(&tx, &live, joined);
        }
    }
}

/// Replaces the live set with the bucket's keys every `every`, unless the watch changed it
/// while they were read (the watch is newer then; the next listing checks again).
async fn reconcile(store: kv::Store, live: Shared, tx: watch::Sender<View>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(TICK));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !tx.is_closed() {
        tick.tick().await;
        let before = live.lock().map(|l| l.changes).unwrap_or_default();
        let listed = async {
            let keys = store.keys().await.map_err(|e| e.to_string())?;
            keys.collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<BTreeSet<String>, _>>()
                .map_err(|e| e.to_string())
        };
        let keys = match tokio::time::timeout(every.max(TICK), listed).await {
            Ok(Ok(keys)) => keys,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "members: listing the keys failed");
                continue;
            }
            Err(_) => {
                tracing::debug!("members: listing the keys timed out");
                continue;
            }
        };
        let replaced = match live.lock() {
            Ok(mut l) if l.changes == before && l.set != keys => {
                tracing::debug!(watched = ?l.set, listed = ?keys, "members: the watch missed a change; the listing replaces it");
                l.set = keys;
                true
            }
            _ => false,
        };
        if replaced {
            let joined = tx.borrow().joined;
            publish(&tx, &live, joined);
        }
    }
}

/// The step between refreshes of the key, and between checks for draining.
const TICK: Duration = Duration::from_millis(100);

/// Joins, refreshes every third of `ttl` by compare-and-set on the key's revision, rejoins
/// when the key was lost; deletes it when the daemon drains.
#[allow(clippy::too_many_arguments)]
async fn hold_key(
    daemon: Arc<Daemon>,
    js: jetstream::Context,
    store: kv::Store,
    me: String,
    ttl: Duration,
    live: Shared,
    tx: watch::Sender<View>,
    tenure: &Tenure,
) {
    let subject = format!(
        "{}{me}",
        store.put_prefix.as_deref().unwrap_or(store.prefix.as_str())
    );
    let value = Bytes::from(me.clone());
    let mut revision: Option<u64> = None;
    let mut refreshed = Instant::now();
    let mut next = Instant::now();
    while !daemon.is_draining() {
        if Instant::now() >= next {
            next = Instant::now() + ttl / 3;
            let sent = Instant::now();
            let attempt = async {
                match revision {
                    None => match store.create_with_ttl(&me, value.clone(), ttl).await {
                        Ok(rev) => Ok(rev),
                        // Still there from before a server was lost (its TTL stood still
                        // meanwhile).
                        Err(e) => adopt(&js, &store, &subject, &me, ttl, e.to_string()).await,
                    },
                    Some(rev) => match refresh(&js, &subject, value.clone(), rev, ttl).await {
                        Ok(rev) => Ok(rev),
                        // A refresh whose answer was lost (a server lost meanwhile) may have
                        // stored, at a newer revision.
                        Err(e) => adopt(&js, &store, &subject, &me, ttl, e).await,
                    },
                }
            };
            // Bounded, so the TTL is judged while a server does not answer.
            let attempt = tokio::time::timeout(ttl / 3, attempt)
                .await
                .unwrap_or_else(|_| Err("no answer within a third of the TTL".to_owned()));
            match attempt {
                Ok(rev) => {
                    if revision.is_none() {
                        tracing::info!(member = %me, "members: joined");
                    }
                    revision = Some(rev);
                    refreshed = sent;
                    tenure.renewed(sent, ttl);
                }
                Err(e) => {
                    // Within the TTL the key may still be this daemon's (a server lost, an
                    // answer late): it tries again soon. Past it the key is gone: join anew.
                    if revision.is_some() && refreshed.elapsed() < ttl {
                        tracing::debug!(member = %me, error = %e, "members: refreshing the key failed; again soon");
                    } else if revision.take().is_some() {
                        tenure.lapsed();
                        tracing::warn!(member = %me, error = %e, "members: the key was lost; the partitions go");
                    } else {
                        tracing::debug!(member = %me, error = %e, "members: joining failed");
                    }
                    next = Instant::now() + TICK;
                }
            }
        }
        let joined = revision.is_some() && refreshed.elapsed() < ttl;
        publish(&tx, &live, joined);
        tokio::time::sleep(TICK).await;
    }
    publish(&tx, &live, false);
    if revision.is_some() {
        if let Err(e) = store.delete(&me).await {
            tracing::warn!(member = %me, error = %e, "members: deleting the key failed; it expires");
        } else {
            tracing::info!(member = %me, "members: left");
        }
    }
}

/// Refreshes the key `me` at whatever revision it has when it holds `me` (the daemon's id,
/// unique per process: the key is this daemon's own); answers `failed` otherwise.
async fn adopt(
    js: &jetstream::Context,
    store: &kv::Store,
    subject: &str,
    me: &str,
    ttl: Duration,
    failed: String,
) -> Result<u64, String> {
    match store.entry(me).await {
        Ok(Some(entry))
            if entry.operation == kv::Operation::Put && entry.value == me.as_bytes() =>
        {
            refresh(js, subject, entry.value, entry.revision, ttl).await
        }
        _ => Err(failed),
    }
}

/// Refreshes the key at `revision` with a new TTL; the new revision.
async fn refresh(
    js: &jetstream::Context,
    subject: &str,
    value: Bytes,
    revision: u64,
    ttl: Duration,
) -> Result<u64, String> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        revision.to_string().as_str(),
    );
    h.insert(
        async_nats::header::NATS_MESSAGE_TTL,
        ttl.as_secs().to_string().as_str(),
    );
    let ack = js
        .publish_with_headers(subject.to_owned(), h, value)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(ack.sequence)
}
