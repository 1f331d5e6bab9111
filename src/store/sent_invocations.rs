//! Invocation batches sent to queue runners, kept for the streams' duplicate window. A batch is
//! recorded before it is published and marked stored once the stream acknowledged it; its key
//! is derived from the invocations it carries.
//! Recording leaves out, in the same transaction, every invocation already in a recorded batch
//! (its event came again) and says where it went: to a stored batch (not sent again), or to one
//! whose acknowledgement never arrived (sent again, byte for byte, under the same
//! `Nats-Msg-Id`, which the stream drops if the first publish was stored after all).

use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use super::{Store, StoreError, Written};

/// What the store knows of the batch an invocation left in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentState {
    /// The stream acknowledged the batch: the invocation reached it.
    Stored,
    /// Recorded, never acknowledged (the daemon stopped meanwhile): send it again as it was.
    Unsettled(SentBatch),
    /// The same invocation came twice in the batch being recorded: the first copy goes.
    InThisBatch,
}

/// A batch as it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentBatch {
    /// Its `Nats-Msg-Id`.
    pub key: Uuid,
    pub subject: String,
    pub content_type: String,
    pub payload: Vec<u8>,
}

/// An invocation that was already sent in an earlier batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// That batch's `Nats-Msg-Id`.
    pub key: Uuid,
    pub state: SentState,
}

/// What recording a batch found: which invocations are new, and the earlier batch of each
/// one that is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The new batch's key and payload, when any invocation was new.
    pub batch: Option<(Uuid, Vec<u8>)>,
    /// Per invocation, in order: `None` when new (in the batch), else where it went before.
    pub earlier: Vec<Option<Earlier>>,
}

/// Encodes the batch of the invocations whose flag is set.
pub type EncodeBatch = Box<dyn FnOnce(&[bool]) -> Vec<u8> + Send>;

impl Store {
    /// Records a batch of the invocations `ids` that were never sent (its key is the first of
    /// them) and answers, once committed, with what it found. The check and the record are one
    /// transaction on the writer, so an invocation is in at most one batch.
    pub async fn record_sent_batch(
        &self,
        subject: String,
        content_type: String,
        ids: Vec<Uuid>,
        encode: EncodeBatch,
    ) -> Result<Recorded, StoreError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (tx_out, rx_out) = tokio::sync::oneshot::channel();
        self.write(move |tx| {
            let mut earlier = Vec::with_capacity(ids.len());
            {
                let mut find = tx.prepare_cached(
                    "SELECT b.key, b.subject, b.content_type, b.payload, b.stored
                     FROM invocation_batch_members m JOIN invocation_batches b ON b.key = m.batch_key
                     WHERE m.invocation_id = ?1",
                )?;
                for id in &ids {
                    earlier.push(
                        find.query_row(params![id.as_bytes().as_slice()], read_earlier)
                            .optional()?,
                    );
                }
            }
            // An invocation twice in one batch (its event came again while the first copy
            // waited) goes once.
            let mut seen = rustc_hash::FxHashSet::default();
            let fresh: Vec<bool> = ids
                .iter()
                .zip(&earlier)
                .map(|(id, e)| e.is_none() && seen.insert(*id))
                .collect();
            let key = batch_key(ids.iter().zip(&fresh).filter(|(_, f)| **f).map(|(id, _)| id));
            for ((_, e), f) in ids.iter().zip(earlier.iter_mut()).zip(&fresh) {
                if e.is_none() && !f {
                    *e = Some(Earlier {
                        key: key.unwrap_or_default(),
                        state: SentState::InThisBatch,
                    });
                }
            }
            let batch = match key {
                None => None,
                Some(key) => {
                    let payload = encode(&fresh);
                    let k = key.as_bytes().as_slice();
                    tx.prepare_cached(
                        "INSERT INTO invocation_batches (key, subject, content_type, payload, at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![k, subject, content_type, payload, now_ms])?;
                    let mut member = tx.prepare_cached(
                        "INSERT INTO invocation_batch_members (invocation_id, batch_key, at_ms)
                         VALUES (?1, ?2, ?3)",
                    )?;
                    for (id, _) in ids.iter().zip(&fresh).filter(|(_, f)| **f) {
                        member.execute(params![id.as_bytes().as_slice(), k, now_ms])?;
                    }
                    Some((key, payload))
                }
            };
            let _ = tx_out.send(Recorded { batch, earlier });
            Ok(Written::Done)
        })
        .await?;
        rx_out.await.map_err(|_| StoreError::Closed)
    }

    /// The stream acknowledged batch `key` (not awaited: losing this mark only means the batch
    /// is sent again, under its id, if one of its invocations is replayed).
    pub fn mark_batch_stored(&self, key: Uuid) {
        self.write_later(move |tx| {
            tx.prepare_cached("UPDATE invocation_batches SET stored = 1 WHERE key = ?1")?
                .execute(params![key.as_bytes().as_slice()])?;
            Ok(Written::Done)
        });
    }

    /// Forgets batches older than `window_ms` (the stream no longer deduplicates them).
    pub fn prune_sent_batches(&self, window_ms: i64) {
        let before = chrono::Utc::now().timestamp_millis() - window_ms;
        self.write_later(move |tx| {
            tx.execute(
                "DELETE FROM invocation_batch_members WHERE at_ms < ?1",
                params![before],
            )?;
            tx.execute(
                "DELETE FROM invocation_batches WHERE at_ms < ?1",
                params![before],
            )?;
            Ok(Written::Done)
        });
    }
}

/// A batch's key (its `Nats-Msg-Id`), derived from every invocation it carries: another
/// daemon replaying some of them (a partition it took over) with others of its own makes
/// another batch under another id, never one the stream would drop as a copy. `None` for none.
fn batch_key<'a>(fresh: impl Iterator<Item = &'a Uuid>) -> Option<Uuid> {
    let parts: Vec<&[u8]> = fresh.map(|id| id.as_bytes().as_slice()).collect();
    (!parts.is_empty()).then(|| crate::domain::derived_id::derive(b"invocation-batch", &parts))
}

fn read_earlier(r: &rusqlite::Row<'_>) -> rusqlite::Result<Earlier> {
    let key = Uuid::from_slice(&r.get::<_, Vec<u8>>(0)?).unwrap_or_default();
    let state = if r.get::<_, i64>(4)? != 0 {
        SentState::Stored
    } else {
        SentState::Unsettled(SentBatch {
            key,
            subject: r.get(1)?,
            content_type: r.get(2)?,
            payload: r.get(3)?,
        })
    };
    Ok(Earlier { key, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("sb-sent-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("test.db"), 1024, 5000).unwrap()
    }

    async fn record(s: &Store, ids: &[Uuid]) -> Result<Recorded, StoreError> {
        let n = ids.len();
        s.record_sent_batch(
            "sb.invoke.default.Bot".into(),
            "application/msgpack".into(),
            ids.to_vec(),
            Box::new(move |fresh: &[bool]| {
                assert_eq!(fresh.len(), n);
                fresh.iter().map(|f| u8::from(*f)).collect()
            }),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invocation_is_in_one_batch_until_the_window_passes() {
        let s = store();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let key = |ids: &[Uuid]| batch_key(ids.iter()).unwrap();
        let (ab, ka) = (key(&[a, b]), key(&[a]));
        let first = record(&s, &[a, b]).await.unwrap();
        assert_eq!(first.batch, Some((ab, vec![1, 1])));
        assert_eq!(first.earlier, vec![None, None]);
        // b again, with c: only c is new and names the batch; b's earlier batch was never
        // acknowledged, so it comes back as it was sent.
        let second = record(&s, &[b, c]).await.unwrap();
        assert_eq!(second.batch, Some((key(&[c]), vec![0, 1])));
        let unsettled = SentState::Unsettled(SentBatch {
            key: ab,
            subject: "sb.invoke.default.Bot".into(),
            content_type: "application/msgpack".into(),
            payload: vec![1, 1],
        });
        assert_eq!(
            second.earlier,
            vec![
                Some(Earlier {
                    key: ab,
                    state: unsettled
                }),
                None
            ]
        );
        // The same invocation twice in one batch goes once.
        let d = Uuid::now_v7();
        let twice = record(&s, &[d, d]).await.unwrap();
        assert_eq!(twice.batch, Some((key(&[d]), vec![1, 0])));
        assert_eq!(
            twice.earlier,
            vec![
                None,
                Some(Earlier {
                    key: key(&[d]),
                    state: SentState::InThisBatch
                })
            ]
        );
        s.mark_batch_stored(ab);
        let third = record(&s, &[a]).await.unwrap();
        assert_eq!(third.batch, None);
        assert_eq!(
            third.earlier,
            vec![Some(Earlier {
                key: ab,
                state: SentState::Stored
            })]
        );
        // Within the window nothing is forgotten; past it, all of it.
        s.prune_sent_batches(60_000);
        assert_eq!(record(&s, &[a]).await.unwrap().batch, None);
        s.prune_sent_batches(-1);
        assert_eq!(record(&s, &[a]).await.unwrap().batch, Some((ka, vec![1])));
    }

    #[test]
    fn a_batch_s_key_names_all_it_carries() {
        let (a, z) = (Uuid::now_v7(), Uuid::now_v7());
        // Another daemon replaying `a` with `z` of its own: not a copy of the batch of `a`.
        assert_ne!(batch_key([a, z].iter()), batch_key([a].iter()));
        assert_eq!(batch_key([a, z].iter()), batch_key([a, z].iter()));
        assert_eq!(batch_key([].iter()), None);
    }
}
