//! The durable outbox's rows ([`crate::outbound::outbox`]): one row per message waiting to be
//! delivered, in enqueue order (`seq`), read per lane (destination and ordering key) in pages.
//! A row is written before its enqueue is answered and removed once the message settles
//! (delivered, given up, withdrawn); attempts are written behind, as bookkeeping.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::{Store, StoreError, Written};

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub id: Uuid,
    pub account: String,
    pub kind: String,
    pub destination: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub meta: Vec<u8>,
    pub created_ms: i64,
    /// Attempts made (as last written behind).
    pub attempts: u32,
    pub first_attempt_ms: Option<i64>,
}

/// A lane with rows in the store: its destination, ordering key and the destination's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneRow {
    pub destination: String,
    pub key: String,
    pub kind: String,
}

const COLUMNS: &str = "seq, id, account, kind, destination, key, payload, meta, created_ms, \
                       attempts, first_attempt_ms";

fn row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let id: String = r.get(1)?;
    Ok(OutboxRow {
        seq: r.get(0)?,
        id: Uuid::parse_str(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        account: r.get(2)?,
        kind: r.get(3)?,
        destination: r.get(4)?,
        key: r.get(5)?,
        payload: r.get(6)?,
        meta: r.get(7)?,
        created_ms: r.get(8)?,
        attempts: r.get::<_, i64>(9)?.clamp(0, u32::MAX as i64) as u32,
        first_attempt_ms: r.get(10)?,
    })
}

/// Selects the rows of `ids`, in `seq` order, and deletes them, in `tx`.
fn take_ids(tx: &rusqlite::Transaction<'_>, ids: &[Uuid]) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut select = tx.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?;
    let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.to_string();
        if let Some(r) = select.query_map(params![id], row)?.next() {
            rows.push(r?);
            delete.execute(params![id])?;
        }
    }
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

impl Store {
    /// Queues the insert of a message, in the writer's order from this call on; the future
    /// answers its commit (`Duplicate` when a row with its id is there already).
    /// [`StoreError::Busy`] (nothing queued) when the writer's queue is full.
    pub fn outbox_put(
        &self,
        r: OutboxRow,
    ) -> Result<impl std::future::Future<Output = Result<Written, StoreError>>, StoreError> {
        self.write_queued(move |tx| {
            let n = tx
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO outbox ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))?
                .execute(params![
                    r.seq,
                    r.id.to_string(),
                    r.account,
                    r.kind,
                    r.destination,
                    r.key,
                    r.payload,
                    r.meta,
                    r.created_ms,
                    r.attempts as i64,
                    r.first_attempt_ms,
                ])?;
            Ok(if n == 0 {
                Written::Duplicate
            } else {
                Written::Done
            })
        })
    }

    /// Removes the rows of settled messages; answers after commit.
    pub async fn outbox_delete(&self, ids: Vec<Uuid>) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut st = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in &ids {
                st.execute(params![id.to_string()])?;
            }
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    /// Removes the rows of `ids` that are there and answers them (in `seq` order), after commit.
    pub async fn outbox_take(&self, ids: Vec<Uuid>) -> Result<Vec<OutboxRow>, StoreError> {
        let (out, rx) = tokio::sync::oneshot::channel();
        self.write(move |tx| {
            let _ = out.send(take_ids(tx, &ids)?);
            Ok(Written::Done)
        })
        .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Records, behind, how many attempts a message had and when the first one was.
    pub fn outbox_attempted(&self, id: Uuid, attempts: u32, first_attempt_ms: i64) {
        self.write_later(move |tx| {
            tx.prepare_cached(
                "UPDATE outbox SET attempts = ?2, first_attempt_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id.to_string(), attempts as i64, first_attempt_ms])?;
            Ok(Written::Done)
        });
    }

    /// Rows of `destination` (of one ordering key, or of every key) after `after_seq`, in `seq`
    /// order, at most `limit`. Blocking.
    pub fn outbox_rows(
        &self,
        destination: &str,
        key: Option<&str>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|c| match key {
            Some(key) => c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM outbox
                     WHERE destination = ?1 AND key = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4"
                ))?
                .query_map(params![destination, key, after_seq, limit as i64], row)?
                .collect(),
            None => c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM outbox
                     WHERE destination = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ))?
                .query_map(params![destination, after_seq, limit as i64], row)?
                .collect(),
        })
    }

    /// Lanes with rows, in (destination, key) order after `after`, at most `limit`. Blocking.
    pub fn outbox_lanes(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<LaneRow>, StoreError> {
        let (destination, key) = after.unwrap_or(("", ""));
        self.read(|c| {
            c.prepare_cached(
                "SELECT destination, key, MIN(kind) FROM outbox
                 WHERE (destination, key) > (?1, ?2)
                 GROUP BY destination, key ORDER BY destination, key LIMIT ?3",
            )?
            .query_map(params![destination, key, limit as i64], |r| {
                Ok(LaneRow {
                    destination: r.get(0)?,
                    key: r.get(1)?,
                    kind: r.get(2)?,
                })
            })?
            .collect()
        })
    }

    /// Rows per destination kind, and the largest `seq` (0 when empty). Blocking.
    pub fn outbox_census(&self) -> Result<(Vec<(String, u64)>, i64), StoreError> {
        self.read(|c| {
            let counts = c
                .prepare_cached("SELECT kind, COUNT(*) FROM outbox GROUP BY kind")?
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let max = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))?;
            Ok((counts, max))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("sb-outbox-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("test.db"), 1024, 5000).unwrap()
    }

    fn msg(seq: i64, destination: &str, key: &str) -> OutboxRow {
        OutboxRow {
            seq,
            id: Uuid::from_u128(seq as u128),
            account: "default".into(),
            kind: destination.split(':').next().unwrap().into(),
            destination: destination.into(),
            key: key.into(),
            payload: vec![seq as u8],
            meta: b"meta".to_vec(),
            created_ms: 1_000 + seq,
            attempts: 0,
            first_attempt_ms: None,
        }
    }

    fn seqs(rows: &[OutboxRow]) -> Vec<i64> {
        rows.iter().map(|r| r.seq).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_page_per_lane_and_lanes_page_in_order() {
        let s = store();
        for (seq, d, k) in [
            (1, "api:a/x", "p1"),
            (2, "api:a/x", "p2"),
            (3, "api:a/x", "p1"),
            (4, "adapter:a/y", "p1"),
            (5, "api:a/x", "p1"),
        ] {
            assert_eq!(
                s.outbox_put(msg(seq, d, k)).unwrap().await.unwrap(),
                Written::Done
            );
        }
        // The same id again is a duplicate, whatever its seq.
        let mut again = msg(9, "api:a/x", "p1");
        again.id = Uuid::from_u128(1);
        assert_eq!(
            s.outbox_put(again).unwrap().await.unwrap(),
            Written::Duplicate
        );
        assert_eq!(
            s.outbox_rows("api:a/x", Some("p1"), 0, 2).unwrap()[0],
            msg(1, "api:a/x", "p1")
        );
        assert_eq!(
            seqs(&s.outbox_rows("api:a/x", Some("p1"), 0, 2).unwrap()),
            [1, 3]
        );
        assert_eq!(
            seqs(&s.outbox_rows("api:a/x", Some("p1"), 3, 2).unwrap()),
            [5]
        );
        assert_eq!(
            seqs(&s.outbox_rows("api:a/x", None, 1, 10).unwrap()),
            [2, 3, 5]
        );
        let lanes = s.outbox_lanes(None, 2).unwrap();
        let names = |l: &[LaneRow]| {
            l.iter()
                .map(|l| format!("{} {} {}", l.kind, l.destination, l.key))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&lanes), ["adapter adapter:a/y p1", "api api:a/x p1"]);
        let rest = s.outbox_lanes(Some(("api:a/x", "p1")), 2).unwrap();
        assert_eq!(names(&rest), ["api api:a/x p2"]);
        assert_eq!(
            s.outbox_census().unwrap(),
            (vec![("adapter".into(), 1), ("api".into(), 4)], 5)
        );
        s.outbox_attempted(Uuid::from_u128(3), 2, 777);
        let taken = s
            .outbox_take(vec![Uuid::from_u128(3), Uuid::from_u128(42)])
            .await
            .unwrap();
        assert_eq!(seqs(&taken), [3]);
        assert_eq!(
            (taken[0].attempts, taken[0].first_attempt_ms),
            (2, Some(777))
        );
        s.outbox_delete(vec![
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(5),
        ])
        .await
        .unwrap();
        assert_eq!(s.outbox_census().unwrap(), (vec![("adapter".into(), 1)], 4));
    }
}
