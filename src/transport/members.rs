//! Membership of the daemons sharing a partitioned events stream: each holds a key (its member
//! id) in a key-value bucket with a per-key TTL, refreshed every third of it by compare-and-set
//! on its own revision; every daemon watches the bucket for the live set. A daemon whose key is
//! gone (expired, or a refresh refused) or that could not refresh it within the TTL is no
//! member: it owns nothing until it has joined again. Draining, it deletes its key at once.

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
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.to_owned(),
        history: 1,
        num_replicas: replicas,
        limit_markers: Some(ttl),
        ..Default::default()
    })
    .await
    .map_err(|e| NatsError::JetStream {
        what: format!("members bucket {name}"),
        detail: e.to_string(),
    })
}

/// Keeps `me`'s key alive and `tx`'s view current until the daemon drains; then deletes the
/// key.
pub fn spawn(
    daemon: Arc<Daemon>,
    js: jetstream::Context,
    store: kv::Store,
    me: String,
    ttl: Duration,
    tx: watch::Sender<View>,
) {
    let live = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    tokio::spawn(watch_members(store.clone(), live.clone(), tx.clone()));
    // The key is deleted before the daemon exits.
    let farewell = daemon.farewell();
    tokio::spawn(async move {
        hold_key(daemon, js, store, me, ttl, live, tx).await;
        drop(farewell);
    });
}

/// Publishes the view from the live set and the key's state.
fn publish(tx: &watch::Sender<View>, live: &std::sync::Mutex<BTreeSet<String>>, joined: bool) {
    let members: Vec<String> = live
        .lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    tx.send_if_modified(|v| {
        let next = View { members, joined };
        let changed = *v != next;
        *v = next;
        changed
    });
}

/// Follows the bucket: puts add members, deletes (and expiry markers) remove them.
async fn watch_members(
    store: kv::Store,
    live: Arc<std::sync::Mutex<BTreeSet<String>>>,
    tx: watch::Sender<View>,
) {
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
                    kv::Operation::Put => l.insert(entry.key),
                    kv::Operation::Delete | kv::Operation::Purge => l.remove(&entry.key),
                };
            }
            let joined = tx.borrow().joined;
            publish(&tx, &live, joined);
        }
    }
}

/// The step between refreshes of the key, and between checks for draining.
const TICK: Duration = Duration::from_millis(100);

/// Joins, refreshes every third of `ttl` by compare-and-set on the key's revision, rejoins
/// when the key was lost; deletes it when the daemon drains.
async fn hold_key(
    daemon: Arc<Daemon>,
    js: jetstream::Context,
    store: kv::Store,
    me: String,
    ttl: Duration,
    live: Arc<std::sync::Mutex<BTreeSet<String>>>,
    tx: watch::Sender<View>,
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
            let attempt = match revision {
                None => store
                    .create_with_ttl(&me, value.clone(), ttl)
                    .await
                    .map_err(|e| e.to_string()),
                Some(rev) => refresh(&js, &subject, value.clone(), rev, ttl).await,
            };
            match attempt {
                Ok(rev) => {
                    if revision.is_none() {
                        tracing::info!(member = %me, "members: joined");
                    }
                    revision = Some(rev);
                    refreshed = Instant::now();
                }
                Err(e) => {
                    // A refused compare-and-set: the key expired or was taken; join anew.
                    if revision.take().is_some() {
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
