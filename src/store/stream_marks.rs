//! How far each events consumer has handed messages to the engine (`stream_marks`): read once
//! when the consumer starts, raised (never lowered) as it goes, committed before the messages it covers are handed on.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError, Written};

impl Store {
    /// The highest stream sequence `consumer` handed on in an earlier run (0: none). Blocking.
    pub fn handed_mark(&self, consumer: &str) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT handed_seq FROM stream_marks WHERE consumer = ?1",
                [consumer],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .map(|v| v.unwrap_or(0).max(0) as u64)
    }

    /// Raises `consumer`'s mark to `seq` (a lower one is kept); answers once committed (in the
    /// writer's next group commit). Awaited before the messages it covers are handed on: an
    /// invocation never goes out for a message the mark does not cover yet.
    pub async fn raise_handed_mark(&self, consumer: String, seq: u64) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO stream_marks (consumer, handed_seq) VALUES (?1, ?2)
                 ON CONFLICT (consumer) DO UPDATE SET handed_seq = MAX(handed_seq, excluded.handed_seq)",
                params![consumer, seq as i64],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mark_only_rises_and_consumers_keep_their_own() {
        let dir = std::env::temp_dir().join(format!("sb-marks-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("t.db"), 64, 5000).unwrap();
        assert_eq!(store.handed_mark("s/c").unwrap(), 0);
        store.raise_handed_mark("s/c".into(), 40).await.unwrap();
        // Committed once answered: read back without a flush.
        assert_eq!(store.handed_mark("s/c").unwrap(), 40);
        store.raise_handed_mark("s/c".into(), 12).await.unwrap();
        store.raise_handed_mark("s/other".into(), 7).await.unwrap();
        assert_eq!(store.handed_mark("s/c").unwrap(), 40);
        assert_eq!(store.handed_mark("s/other").unwrap(), 7);
    }
}
