//! Timers of `program_timer` connectors and their firings, as stored. A timer is keyed by
//! `(account, connector, persona, name)` and holds its next due time in Unix milliseconds; a
//! firing is recorded in the same transaction that moves its timer on, and stays until its
//! event was handed on (`firing_done`), so a crash between the two replays it (marked
//! redelivered) and never loses it.

use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use super::{Store, StoreError, Written};

/// A timer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRow {
    pub account: String,
    pub connector: String,
    pub persona: Uuid,
    pub name: String,
    pub due_ms: i64,
    pub interval_ms: Option<i64>,
    pub repeatable: bool,
    pub event: String,
    pub arguments: Vec<(String, String)>,
    pub session: Option<Uuid>,
}

/// A firing as stored: the event a timer fired, until it was handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringRow {
    pub id: Uuid,
    pub account: String,
    pub connector: String,
    pub persona: Uuid,
    pub name: String,
    pub event: String,
    pub arguments: Vec<(String, String)>,
    pub scheduled_ms: i64,
}

/// What a firing does to its timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// It fires again at this time.
    Rearm(i64),
    /// It is done.
    Remove,
}

fn json(args: &[(String, String)]) -> String {
    serde_json::to_string(args).expect("string pairs serialize")
}

fn unjson(text: &str) -> rusqlite::Result<Vec<(String, String)>> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn uuid(text: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

const TIMER_COLUMNS: &str =
    "account, connector, persona, name, due_ms, interval_ms, repeatable, event, arguments, session";

fn timer(r: &Row<'_>) -> rusqlite::Result<TimerRow> {
    Ok(TimerRow {
        account: r.get(0)?,
        connector: r.get(1)?,
        persona: uuid(&r.get::<_, String>(2)?)?,
        name: r.get(3)?,
        due_ms: r.get(4)?,
        interval_ms: r.get(5)?,
        repeatable: r.get::<_, i64>(6)? != 0,
        event: r.get(7)?,
        arguments: unjson(&r.get::<_, String>(8)?)?,
        session: r
            .get::<_, Option<String>>(9)?
            .map(|s| uuid(&s))
            .transpose()?,
    })
}

impl Store {
    /// Creates or replaces the timer of its key; answers after commit.
    pub async fn save_timer(&self, t: TimerRow) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO timers ({TIMER_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                t.account,
                t.connector,
                t.persona.to_string(),
                t.name,
                t.due_ms,
                t.interval_ms,
                t.repeatable as i64,
                t.event,
                json(&t.arguments),
                t.session.map(|s| s.to_string()),
            ])?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    /// Removes a timer; `Duplicate` when there was none.
    pub async fn delete_timer(
        &self,
        account: String,
        connector: String,
        persona: Uuid,
        name: String,
    ) -> Result<bool, StoreError> {
        let w = self
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM timers
                         WHERE account = ?1 AND connector = ?2 AND persona = ?3 AND name = ?4",
                    )?
                    .execute(params![account, connector, persona.to_string(), name])?;
                Ok(if n == 0 {
                    Written::Duplicate
                } else {
                    Written::Done
                })
            })
            .await?;
        Ok(w == Written::Done)
    }

    /// Removes the timers bound to session `session`; returns them.
    pub async fn delete_session_timers(&self, session: Uuid) -> Result<Vec<TimerRow>, StoreError> {
        let (tx_out, rx) = tokio::sync::oneshot::channel();
        self.write(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {TIMER_COLUMNS} FROM timers WHERE session = ?1"
                ))?
                .query_map(params![session.to_string()], timer)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.prepare_cached("DELETE FROM timers WHERE session = ?1")?
                .execute(params![session.to_string()])?;
            let _ = tx_out.send(rows);
            Ok(Written::Done)
        })
        .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Records firings and moves their timers on, in one transaction, queued at once (before
    /// anything queued after this call: a later `firings_done` finds the rows); the future
    /// answers the commit. [`StoreError::Busy`] when the writer's queue is full.
    pub fn fire_timers(
        &self,
        firings: Vec<(FiringRow, After)>,
    ) -> Result<impl std::future::Future<Output = Result<(), StoreError>>, StoreError> {
        let committed = self.write_queued(move |tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO timer_firings
                 (id, account, connector, persona, name, event, arguments, scheduled_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut rearm = tx.prepare_cached(
                "UPDATE timers SET due_ms = ?5
                 WHERE account = ?1 AND connector = ?2 AND persona = ?3 AND name = ?4
                   AND due_ms = ?6",
            )?;
            let mut remove = tx.prepare_cached(
                "DELETE FROM timers
                 WHERE account = ?1 AND connector = ?2 AND persona = ?3 AND name = ?4
                   AND due_ms = ?5",
            )?;
            for (f, after) in &firings {
                let persona = f.persona.to_string();
                insert.execute(params![
                    f.id.to_string(),
                    f.account,
                    f.connector,
                    persona,
                    f.name,
                    f.event,
                    json(&f.arguments),
                    f.scheduled_ms,
                ])?;
                // Only the timer as it was scheduled: one replaced meanwhile stays as set.
                match after {
                    After::Rearm(next) => rearm.execute(params![
                        f.account,
                        f.connector,
                        persona,
                        f.name,
                        next,
                        f.scheduled_ms
                    ])?,
                    After::Remove => remove.execute(params![
                        f.account,
                        f.connector,
                        persona,
                        f.name,
                        f.scheduled_ms
                    ])?,
                };
            }
            Ok(Written::Done)
        })?;
        Ok(async move { committed.await.map(|_| ()) })
    }

    /// The firings' events were handed on.
    pub fn firings_done(&self, ids: Vec<Uuid>) {
        self.write_later(move |tx| {
            let mut st = tx.prepare_cached("DELETE FROM timer_firings WHERE id = ?1")?;
            for id in &ids {
                st.execute(params![id.to_string()])?;
            }
            Ok(Written::Done)
        });
    }

    /// Timers due before `before_ms`, soonest first, at most `limit`. Blocking.
    pub fn timers_due_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TIMER_COLUMNS} FROM timers WHERE due_ms < ?1 ORDER BY due_ms LIMIT ?2"
            ))?
            .query_map(params![before_ms, limit as i64], timer)?
            .collect()
        })
    }

    /// Timers of `account`, optionally of one connector and one persona, by due time. Blocking.
    pub fn timers_of(
        &self,
        account: &str,
        connector: Option<&str>,
        persona: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TIMER_COLUMNS} FROM timers
                 WHERE account = ?1 AND (?2 IS NULL OR connector = ?2)
                   AND (?3 IS NULL OR persona = ?3)
                 ORDER BY due_ms LIMIT ?4"
            ))?
            .query_map(
                params![
                    account,
                    connector,
                    persona.map(|p| p.to_string()),
                    limit as i64
                ],
                timer,
            )?
            .collect()
        })
    }

    /// How many timers a persona holds on a connector. Blocking.
    pub fn timer_count(
        &self,
        account: &str,
        connector: &str,
        persona: Uuid,
    ) -> Result<usize, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM timers WHERE account = ?1 AND connector = ?2 AND persona = ?3",
            )?
            .query_row(params![account, connector, persona.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as usize)
        })
    }

    /// How many timers there are. Blocking.
    pub fn timer_total(&self) -> Result<usize, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM timers")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
        })
    }

    /// The timer of this key, if any. Blocking.
    pub fn timer(
        &self,
        account: &str,
        connector: &str,
        persona: Uuid,
        name: &str,
    ) -> Result<Option<TimerRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TIMER_COLUMNS} FROM timers
                 WHERE account = ?1 AND connector = ?2 AND persona = ?3 AND name = ?4"
            ))?
            .query_row(
                params![account, connector, persona.to_string(), name],
                timer,
            )
            .optional()
        })
    }

    /// Firings recorded and not yet handed on (replayed at start). Blocking.
    pub fn pending_firings(&self) -> Result<Vec<FiringRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, account, connector, persona, name, event, arguments, scheduled_ms
                 FROM timer_firings ORDER BY scheduled_ms",
            )?
            .query_map([], |r| {
                Ok(FiringRow {
                    id: uuid(&r.get::<_, String>(0)?)?,
                    account: r.get(1)?,
                    connector: r.get(2)?,
                    persona: uuid(&r.get::<_, String>(3)?)?,
                    name: r.get(4)?,
                    event: r.get(5)?,
                    arguments: unjson(&r.get::<_, String>(6)?)?,
                    scheduled_ms: r.get(7)?,
                })
            })?
            .collect()
        })
    }
}
