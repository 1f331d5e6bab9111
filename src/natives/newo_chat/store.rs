//! The web chat's own tables in the daemon's store: `newo_chat_actors` (create-actor's actors,
//! one per `(connector, external_id)`) and `newo_chat_buffer` (commands for actors with no
//! socket, in order, kept across restarts until delivered, crowded out or expired). Client
//! secrets stay sealed in their connectors' settings: the native indexes them in memory.

use rusqlite::{params, OptionalExtension};

use crate::domain::{ConnectorKey, PersonaId};
use crate::store::{Store, StoreError, Written};

/// The component's migrations (applied under `newo_chat`).
pub const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE newo_chat_actors (
    account     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    persona     TEXT NOT NULL,           -- the actor's id (user_actor_id)
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account, connector, external_id)
) WITHOUT ROWID;
CREATE TABLE newo_chat_buffer (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    account   TEXT NOT NULL,
    connector TEXT NOT NULL,
    persona   TEXT NOT NULL,
    event     TEXT NOT NULL,             -- the socket.io event: the command's idn
    payload   TEXT NOT NULL,             -- its JSON payload
    at_ms     INTEGER NOT NULL           -- buffered at, Unix milliseconds
);
CREATE INDEX newo_chat_buffer_actor ON newo_chat_buffer (account, connector, persona, seq);
CREATE INDEX newo_chat_buffer_at ON newo_chat_buffer (at_ms);
"#];

/// An actor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorRow {
    pub external_id: String,
    pub persona: String,
    pub name: String,
    pub created_at: String,
}

/// A buffered command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffered {
    pub seq: i64,
    pub event: String,
    pub payload: String,
}

/// The actor `external_id` of a connector, read on the calling (blocking) thread.
pub fn actor(
    store: &Store,
    key: &ConnectorKey,
    external_id: &str,
) -> Result<Option<ActorRow>, StoreError> {
    store.read(|c| {
        c.prepare_cached(
            "SELECT external_id, persona, name, created_at FROM newo_chat_actors
             WHERE account = ?1 AND connector = ?2 AND external_id = ?3",
        )?
        .query_row(
            params![key.account.as_str(), key.connector.as_str(), external_id],
            |r| {
                Ok(ActorRow {
                    external_id: r.get(0)?,
                    persona: r.get(1)?,
                    name: r.get(2)?,
                    created_at: r.get(3)?,
                })
            },
        )
        .optional()
    })
}

/// Creates the actor unless one of its `external_id` exists: `Duplicate` then.
pub async fn put_actor(
    store: &Store,
    key: &ConnectorKey,
    row: ActorRow,
) -> Result<Written, StoreError> {
    let (account, connector) = (key.account.to_string(), key.connector.to_string());
    store
        .write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO newo_chat_actors
                     (account, connector, external_id, persona, name, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    account,
                    connector,
                    row.external_id,
                    row.persona,
                    row.name,
                    row.created_at
                ])?;
            Ok(if n == 0 {
                Written::Duplicate
            } else {
                Written::Done
            })
        })
        .await
}

/// Queues a command for an actor with no socket, in the writer's order from this call on;
/// the answer, once committed, is how many older commands of the actor it crowded out (past
/// `keep`). `Busy` when the writer's queue is full (nothing queued).
pub fn buffer(
    store: &Store,
    key: &ConnectorKey,
    persona: PersonaId,
    event: String,
    payload: String,
    keep: usize,
) -> Result<impl std::future::Future<Output = Result<usize, StoreError>>, StoreError> {
    let (account, connector) = (key.account.to_string(), key.connector.to_string());
    let persona = persona.0.to_string();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = dropped.clone();
    let written = store.write_queued(move |tx| {
        tx.prepare_cached(
            "INSERT INTO newo_chat_buffer (account, connector, persona, event, payload, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            account,
            connector,
            persona,
            event,
            payload,
            chrono::Utc::now().timestamp_millis()
        ])?;
        let n = tx
            .prepare_cached(
                "DELETE FROM newo_chat_buffer WHERE seq IN (
                   SELECT seq FROM newo_chat_buffer
                   WHERE account = ?1 AND connector = ?2 AND persona = ?3
                   ORDER BY seq DESC LIMIT -1 OFFSET ?4)",
            )?
            .execute(params![account, connector, persona, keep as i64])?;
        counted.store(n, std::sync::atomic::Ordering::Relaxed);
        Ok(Written::Done)
    })?;
    Ok(async move {
        written.await?;
        Ok(dropped.load(std::sync::atomic::Ordering::Relaxed))
    })
}

/// The commands buffered for an actor, oldest first, read on the calling (blocking) thread.
pub fn buffered(
    store: &Store,
    key: &ConnectorKey,
    persona: PersonaId,
) -> Result<Vec<Buffered>, StoreError> {
    store.read(|c| {
        let mut q = c.prepare_cached(
            "SELECT seq, event, payload FROM newo_chat_buffer
             WHERE account = ?1 AND connector = ?2 AND persona = ?3 ORDER BY seq",
        )?;
        let rows = q.query_map(
            params![
                key.account.as_str(),
                key.connector.as_str(),
                persona.0.to_string()
            ],
            |r| {
                Ok(Buffered {
                    seq: r.get(0)?,
                    event: r.get(1)?,
                    payload: r.get(2)?,
                })
            },
        )?;
        rows.collect()
    })
}

/// Forgets an actor's buffered commands up to `seq`, delivered.
pub fn delivered(store: &Store, key: &ConnectorKey, persona: PersonaId, seq: i64) {
    let (account, connector) = (key.account.to_string(), key.connector.to_string());
    let persona = persona.0.to_string();
    store.write_later(move |tx| {
        tx.prepare_cached(
            "DELETE FROM newo_chat_buffer
             WHERE account = ?1 AND connector = ?2 AND persona = ?3 AND seq <= ?4",
        )?
        .execute(params![account, connector, persona, seq])?;
        Ok(Written::Done)
    });
}

/// Removes buffered commands older than `before_ms`; answers how many.
pub async fn expire(store: &Store, before_ms: i64) -> Result<usize, StoreError> {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = n.clone();
    store
        .write(move |tx| {
            let gone = tx.execute(
                "DELETE FROM newo_chat_buffer WHERE at_ms < ?1",
                params![before_ms],
            )?;
            counted.store(gone, std::sync::atomic::Ordering::Relaxed);
            Ok(Written::Done)
        })
        .await?;
    Ok(n.load(std::sync::atomic::Ordering::Relaxed))
}

/// Forgets everything of a deleted connector; answers how many buffered commands went.
pub async fn forget_connector(store: &Store, key: &ConnectorKey) -> Result<usize, StoreError> {
    let (account, connector) = (key.account.to_string(), key.connector.to_string());
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = n.clone();
    store
        .write(move |tx| {
            tx.execute(
                "DELETE FROM newo_chat_actors WHERE account = ?1 AND connector = ?2",
                params![account, connector],
            )?;
            let gone = tx.execute(
                "DELETE FROM newo_chat_buffer WHERE account = ?1 AND connector = ?2",
                params![account, connector],
            )?;
            counted.store(gone, std::sync::atomic::Ordering::Relaxed);
            Ok(Written::Done)
        })
        .await?;
    Ok(n.load(std::sync::atomic::Ordering::Relaxed))
}

/// Every `newo_chat` connector the daemon keeps, as `(account, connector)`, read on the
/// calling (blocking) thread: the client secrets indexed at start.
pub fn connectors(store: &Store) -> Result<Vec<(String, String)>, StoreError> {
    store.read(|c| {
        let mut q =
            c.prepare_cached("SELECT account, connector FROM connectors WHERE integration = ?1")?;
        let rows = q.query_map([super::IDN], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    })
}
