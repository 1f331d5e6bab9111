//! How far each events consumer has handed messages to the engine (`stream_marks`): read once
//! when the consumer starts, raised (never lowered) as it goes, off the hot path.

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

    /// Raises `consumer`'s mark to `seq` (a lower one is kept), queued, not awaited: a mark
    /// lost in a crash leaves the older one, and the time between the hand-over and a skill's
    /// invocation is what it has to commit in.
    pub fn raise_handed_mark(&self, consumer: String, seq: u64) {
        self.write_later(move |tx| {
            tx.execute(
                "INSERT INTO stream_marks (consumer, handed_seq) VALUES (?1, ?2)
                 ON CONFLICT (consumer) DO UPDATE SET handed_seq = MAX(handed_seq, excluded.handed_seq)",
                params![consumer, seq as i64],
            )?;
            Ok(Written::Done)
        });
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
        store.raise_handed_mark("s/c".into(), 40);
        store.raise_handed_mark("s/c".into(), 12);
        store.raise_handed_mark("s/other".into(), 7);
        store.flush().await.unwrap();
        assert_eq!(store.handed_mark("s/c").unwrap(), 40);
        assert_eq!(store.handed_mark("s/other").unwrap(), 7);
    }
}
