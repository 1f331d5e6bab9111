//! The durable store: one SQLite file (WAL) holding connectors and integration settings, flows,
//! actors, sessions, dead letters, the inbox of acknowledged events, the dedupe keys and the
//! invocation batches recently sent to queue runners, and the outbox of messages to deliver.
//!
//! Writes go to one writer thread through a bounded queue and are committed in groups: every
//! write queued while the previous commit ran lands in the next transaction, and whoever
//! awaits a write is answered only after its transaction committed. Reads use their own
//! connection. No SQLite call ever runs on an async worker.

pub mod accounts;
pub mod command_acts;
pub mod components;
pub mod daemon_keys;
pub mod dead_letters;
pub mod flow_state;
pub mod outbox;
pub mod records;
pub mod runner_secrets;
pub mod schema;
pub mod secrets;
pub mod sent_invocations;
pub mod stream_marks;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::{params, Connection, OpenFlags, Transaction};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::fault::{Blame, Fault};
use crate::telemetry;
use crate::telemetry::throttle::Throttle;

pub use records::{ConnectorRow, FlowRow, SessionRow};
pub use runner_secrets::RunnerSecretRow;
pub use secrets::SecretBox;

/// The store's failures: all the daemon's, none the caller's.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("the store is closed")]
    Closed,
    #[error("stored data does not decode: {0}")]
    Corrupt(String),
    /// The writer's queue is full (only from [`Store::write_queued`]).
    #[error("the store's write queue is full")]
    Busy,
}

impl Blame for StoreError {
    fn fault(&self) -> Fault {
        Fault::Daemon
    }

    /// Whether the same write may succeed if tried again (a busy or locked database).
    fn retryable(&self) -> bool {
        matches!(self, StoreError::Sqlite(m) if m.contains("locked") || m.contains("busy"))
            || matches!(self, StoreError::Busy)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

/// What a write returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// An insert that found its key already there.
    Duplicate,
}

type Work = Box<dyn FnOnce(&Transaction<'_>) -> rusqlite::Result<Written> + Send>;

struct Job {
    work: Work,
    done: Option<oneshot::Sender<Result<Written, StoreError>>>,
}

/// Largest number of writes one transaction takes.
const GROUP: usize = 1024;

/// A handle on the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    read: Arc<Mutex<Connection>>,
    seq: Arc<AtomicI64>,
    dropped: Arc<AtomicI64>,
}

fn configure(conn: &Connection, busy_timeout_ms: u64) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a committed write survives a power cut, not only a killed process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) and migrates the file, and starts the writer thread.
    /// A new file is created readable by its owner only (its WAL and shared-memory files take
    /// the same mode from SQLite).
    pub fn open(path: &Path, queue: usize, busy_timeout_ms: u64) -> Result<Store, StoreError> {
        create_private(path).map_err(|e| StoreError::Sqlite(format!("creating the file: {e}")))?;
        let mut conn = Connection::open(path)?;
        configure(&conn, busy_timeout_ms)?;
        schema::migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Sqlite(format!("migration: {e}")))?;
        let seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM inbox", [], |r| r.get(0))?;
        let read = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        read.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))?;
        let (tx, rx) =
            telemetry::queue::bounded(telemetry::queue::names::STORE_WRITER, queue.max(16));
        thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Sqlite(format!("writer thread: {e}")))?;
        Ok(Store {
            tx,
            read: Arc::new(Mutex::new(read)),
            seq: Arc::new(AtomicI64::new(seq)),
            dropped: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Queues a write and waits until its transaction committed.
    pub async fn write(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<Written> + Send + 'static,
    ) -> Result<Written, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job {
                work: Box::new(work),
                done: Some(done),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a write at once, in the writer's order from this call on, and answers its commit
    /// later; [`StoreError::Busy`] (nothing queued) when the queue is full.
    pub fn write_queued(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<Written> + Send + 'static,
    ) -> Result<impl std::future::Future<Output = Result<Written, StoreError>>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Job {
                work: Box::new(work),
                done: Some(done),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    /// Queues a write nobody waits for. If the queue is full the write is skipped and counted
    /// (`skipped_writes`): callers use this only for writes whose loss is safe (an inbox row
    /// that stays is replayed; a session row is bookkeeping).
    pub fn write_later(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<Written> + Send + 'static,
    ) {
        if self
            .tx
            .try_send(Job {
                work: Box::new(work),
                done: None,
            })
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            telemetry::queue::full(telemetry::queue::names::STORE_WRITER);
            static SKIPPED: Throttle = Throttle::new();
            if let Some(suppressed) = SKIPPED.allow(Throttle::EVERY) {
                tracing::warn!(
                    suppressed,
                    "store queue full: a deferrable write was skipped"
                );
            }
        }
    }

    /// Deferrable writes skipped because the queue was full.
    pub fn skipped_writes(&self) -> i64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Runs a read on the read connection. Blocking: call from a blocking thread.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.read.lock().expect("store read lock");
        Ok(f(&conn)?)
    }

    /// Records an acknowledged event in the inbox; `Duplicate` when its dedupe key was seen
    /// within `window_ms`. Answers after commit: the event is durable.
    pub async fn inbox_put(
        &self,
        id: Uuid,
        dedupe_key: Option<String>,
        envelope: Vec<u8>,
        window_ms: i64,
    ) -> Result<Written, StoreError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.write(move |tx| {
            if let Some(key) = dedupe_key {
                let fresh = tx
                    .prepare_cached(
                        "INSERT INTO dedupe (key, at_ms) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET at_ms = excluded.at_ms
                         WHERE dedupe.at_ms < ?3",
                    )?
                    .execute(params![key, now_ms, now_ms - window_ms])?;
                if fresh == 0 {
                    return Ok(Written::Duplicate);
                }
            }
            tx.prepare_cached(
                "INSERT OR IGNORE INTO inbox (id, seq, envelope, received_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id.to_string(), seq, envelope, chrono::Utc::now().to_rfc3339()])?;
            Ok(Written::Done)
        })
        .await
    }

    /// The event left the inbox: dispatched, dropped as an outcome, or recorded.
    pub fn inbox_done(&self, id: Uuid) {
        self.write_later(move |tx| {
            tx.prepare_cached("DELETE FROM inbox WHERE id = ?1")?
                .execute(params![id.to_string()])?;
            Ok(Written::Done)
        });
    }

    /// Acknowledged events not yet handed on, oldest first (replayed at start).
    pub fn inbox(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare("SELECT id, envelope FROM inbox ORDER BY seq")?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.map(|r| r.map(|(id, env)| (Uuid::parse_str(&id).unwrap_or_default(), env)))
                .collect()
        })
    }

    /// Removes dedupe keys older than the window.
    pub fn prune_dedupe(&self, window_ms: i64) {
        let before = chrono::Utc::now().timestamp_millis() - window_ms;
        self.write_later(move |tx| {
            tx.execute("DELETE FROM dedupe WHERE at_ms < ?1", params![before])?;
            Ok(Written::Done)
        });
    }

    /// Waits until every write queued before this call has committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(Written::Done)).await.map(|_| ())
    }
}

/// Creates an empty file with mode 0600 unless one is there.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(|_| ()),
    }
}

fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(GROUP);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < GROUP {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut results: Vec<Result<Written, StoreError>> = Vec::with_capacity(batch.len());
        let mut jobs = std::mem::take(&mut batch);
        let committed = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for job in jobs.iter_mut() {
                let work = std::mem::replace(&mut job.work, Box::new(|_| Ok(Written::Done)));
                results.push(work(&tx).map_err(StoreError::from));
            }
            tx.commit()
        })();
        for (job, result) in jobs.into_iter().zip(
            results
                .into_iter()
                .chain(std::iter::repeat_with(|| Err(StoreError::Closed))),
        ) {
            let answer = match &committed {
                Ok(()) => result,
                Err(e) => Err(StoreError::Sqlite(format!("commit: {e}"))),
            };
            if let Some(done) = job.done {
                let _ = done.send(answer);
            } else if let Err(e) = answer {
                static FAILED: Throttle = Throttle::new();
                if let Some(suppressed) = FAILED.allow(Throttle::EVERY) {
                    tracing::warn!(error = %e, suppressed, "a deferred store write failed");
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-store-{}-{}", name, Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("test.db")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inbox_is_durable_and_deduplicates() {
        let path = temp_path("inbox");
        let store = Store::open(&path, 1024, 5000).unwrap();
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert_eq!(
            store
                .inbox_put(a, Some("k1".into()), vec![1], 60_000)
                .await
                .unwrap(),
            Written::Done
        );
        assert_eq!(
            store
                .inbox_put(b, Some("k1".into()), vec![2], 60_000)
                .await
                .unwrap(),
            Written::Duplicate
        );
        assert_eq!(
            store.inbox_put(b, None, vec![2], 60_000).await.unwrap(),
            Written::Done
        );
        drop(store);
        // A second handle on the same file sees what was acknowledged.
        let again = Store::open(&path, 1024, 5000).unwrap();
        let inbox = again.inbox().unwrap();
        assert_eq!(
            inbox.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![a, b]
        );
        again.inbox_done(a);
        again.flush().await.unwrap();
        assert_eq!(again.inbox().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_and_its_wal_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path("mode");
        let store = Store::open(&path, 64, 5000).unwrap();
        store
            .inbox_put(Uuid::now_v7(), None, vec![1], 1000)
            .await
            .unwrap();
        let wal = path.with_extension("db-wal");
        for p in [&path, &wal] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_fails_alone() {
        let store = Store::open(&temp_path("fail"), 1024, 5000).unwrap();
        let bad = store.write(|tx| {
            tx.execute("INSERT INTO nowhere VALUES (1)", [])?;
            Ok(Written::Done)
        });
        let good = store.inbox_put(Uuid::now_v7(), None, vec![], 1000);
        let (bad, good) = tokio::join!(bad, good);
        assert!(bad.is_err());
        assert_eq!(good.unwrap(), Written::Done);
    }
}
