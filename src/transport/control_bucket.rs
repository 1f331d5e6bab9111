//! The shared control plane's bucket (`transport.nats.control_bucket`, with partitions): the
//! daemon's [`ControlPlane`] on a JetStream key-value bucket (history 1, the streams'
//! replicas). A put or delete carries the revision expected of its key
//! (`Nats-Expected-Last-Subject-Sequence`; 0: no message yet), so a stale write fails;
//! [`follow`] watches every key from its last value on and hands each entry to the daemon,
//! saying once it has read the bucket to its end.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::connection::NatsError;
use crate::daemon::control_plane::{Change, ControlPlane, ControlPlaneError, Pending};
use crate::daemon::control_records::{Record, RecordKey};
use crate::daemon::Daemon;

/// Opens (or creates) the bucket.
pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<kv::Store, NatsError> {
    let config = kv::Config {
        bucket: name.to_owned(),
        description: "switchboard's shared control plane".to_owned(),
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    };
    super::buckets::open(js, config, "control plane bucket").await
}

/// The bucket as the daemon's control plane.
#[derive(Clone)]
pub struct ControlBucket {
    js: jetstream::Context,
    store: kv::Store,
}

impl ControlBucket {
    pub fn new(js: jetstream::Context, store: kv::Store) -> ControlBucket {
        ControlBucket { js, store }
    }

    fn subject(&self, key: &RecordKey) -> String {
        format!(
            "{}{}",
            self.store
                .put_prefix
                .as_deref()
                .unwrap_or(self.store.prefix.as_str()),
            key.as_str()
        )
    }

    /// One put (or delete marker) at `expected`; `Ok(None)` when the key's revision is another.
    async fn send(
        &self,
        key: &RecordKey,
        record: Option<&Record>,
        expected: u64,
    ) -> Result<Option<u64>, ControlPlaneError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let payload = match record {
            Some(r) => Bytes::from(r.encode()),
            None => {
                h.insert("KV-Operation", "DEL");
                Bytes::new()
            }
        };
        let unavailable = |e: String| ControlPlaneError::Unavailable(e);
        let ack = self
            .js
            .publish_with_headers(self.subject(key), h, payload)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .await;
        match ack {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }
}

impl ControlPlane for ControlBucket {
    fn publish(
        &self,
        key: &RecordKey,
        record: Option<&Record>,
        expected: Option<u64>,
    ) -> Pending<'_, u64> {
        let (key, record) = (key.clone(), record.cloned());
        Box::pin(async move {
            let conflict = || ControlPlaneError::Conflict {
                key: key.to_string(),
            };
            if let Some(revision) = self
                .send(&key, record.as_ref(), expected.unwrap_or(0))
                .await?
            {
                return Ok(revision);
            }
            // A create over a delete marker (a record deleted before) is a create still.
            if expected.is_none() && record.is_some() {
                let current = self.current(&key).await?;
                if current.record.is_none() && current.revision > 0 {
                    return self
                        .send(&key, record.as_ref(), current.revision)
                        .await?
                        .ok_or_else(conflict);
                }
            }
            Err(conflict())
        })
    }

    fn current(&self, key: &RecordKey) -> Pending<'_, Change> {
        let key = key.clone();
        Box::pin(async move {
            let entry = self
                .store
                .entry(key.as_str())
                .await
                .map_err(|e| ControlPlaneError::Unavailable(e.to_string()))?;
            match entry {
                None => Ok(Change {
                    key,
                    revision: 0,
                    record: None,
                }),
                Some(e) => change(key, e),
            }
        })
    }
}

/// A bucket entry as a change of the control plane.
fn change(key: RecordKey, entry: kv::Entry) -> Result<Change, ControlPlaneError> {
    let record =
        match entry.operation {
            kv::Operation::Put => Some(Record::decode(&key, &entry.value).map_err(|e| {
                ControlPlaneError::Corrupt {
                    key: key.to_string(),
                    detail: e.to_string(),
                }
            })?),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
    Ok(Change {
        key,
        revision: entry.revision,
        record,
    })
}

/// Watches the bucket from each key's last value on and hands every entry to `daemon`, for
/// as long as the daemon lives (a watch that ends starts again: entries seen are skipped).
/// The answer comes once the bucket was read to its end the first time.
pub fn follow(daemon: Arc<Daemon>, bucket: &ControlBucket) -> oneshot::Receiver<()> {
    let store = bucket.store.clone();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut caught_up = Some(tx);
        let mut pause = Duration::from_millis(100);
        while !daemon.is_draining() {
            // An empty bucket has nothing to read to its end.
            if caught_up.is_some() {
                match store.status().await {
                    Ok(s) if s.values() == 0 => {
                        if let Some(tx) = caught_up.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "control plane: reading the bucket's status failed")
                    }
                }
            }
            let mut watch = match store.watch_with_history(">").await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "control plane: watching the bucket failed; again soon");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            pause = Duration::from_millis(100);
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { break };
                let last = entry.delta == 0;
                match RecordKey::parse(&entry.key) {
                    Some(key) => match change(key, entry) {
                        Ok(c) => daemon.apply_change(c).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "control plane: an entry is no record this daemon reads; skipped")
                        }
                    },
                    None => {
                        tracing::debug!(key = %entry.key, "control plane: a key that names no record; skipped")
                    }
                }
                if last {
                    if let Some(tx) = caught_up.take() {
                        let _ = tx.send(());
                    }
                }
            }
            tracing::debug!("control plane: the bucket's watch ended; watching again");
            tokio::time::sleep(pause).await;
        }
    });
    rx
}
