//! Timers of `program_timer` connectors, as stored: the native's own tables (`timers`,
//! `timer_firings`) in the daemon's store, read and written through the store seam
//! ([`Store::read`], [`Store::write`], [`Store::write_queued`], [`Store::write_later`]).
//! A timer is keyed by `(account, connector, persona, name)` and holds its next due time in
//! Unix milliseconds. The row is its own firing record: a fired timer moves on
//! (`move_fired_timers`) only once its event was handed on, so a crash between the two finds it
//! still due at the next start, where it fires again marked redelivered; it is never lost.
//! `timer_firings` holds firings recorded by builds before that design; they are replayed at
//! start and forgotten (`firings_done`).

use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use crate::store::{Store, StoreError, Written};

/// The component's migrations (`Component::migrations`, applied under `program_timer`).
///
/// The tables were first made by a core migration of `store/schema.rs`, which every existing
/// database has applied and which stays there as history (a released migration is never
/// edited). Step 1 makes the same tables and indexes with `IF NOT EXISTS`: a no-op on such a
/// database, and what makes them on a store whose core migrations some day no longer do.
/// A later change of these tables is a new step here.
pub const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE IF NOT EXISTS timers (
    account     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    persona     TEXT NOT NULL,
    name        TEXT NOT NULL,
    due_ms      INTEGER NOT NULL,        -- next fire, Unix milliseconds (UTC)
    interval_ms INTEGER,                 -- between fires of a repeating timer
    repeatable  INTEGER NOT NULL,
    event       TEXT NOT NULL,           -- event idn it fires
    arguments   TEXT NOT NULL,           -- JSON [[name, value], ...] carried into the event
    session     TEXT,                    -- the session a session-scoped timer is bound to
    PRIMARY KEY (account, connector, persona, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timers_due ON timers (due_ms);
CREATE INDEX IF NOT EXISTS timers_session ON timers (session) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS timer_firings (
    id           TEXT PRIMARY KEY,       -- the fired event's id
    account      TEXT NOT NULL,
    connector    TEXT NOT NULL,
    persona      TEXT NOT NULL,
    name         TEXT NOT NULL,
    event        TEXT NOT NULL,
    arguments    TEXT NOT NULL,          -- JSON [[name, value], ...], the event's arguments
    scheduled_ms INTEGER NOT NULL
);
"#];

/// The timer tables of the daemon's store. Cheap to clone.
#[derive(Clone)]
pub struct TimerStore {
    store: Store,
}

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

/// A firing recorded by an earlier build: the event a timer fired, until it was handed on.
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

/// A fired timer to move on, as stored: its key and the due time it fired at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredRow {
    pub account: String,
    pub connector: String,
    pub persona: Uuid,
    pub name: String,
    pub scheduled_ms: i64,
    pub after: After,
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

impl TimerStore {
    pub fn new(store: Store) -> Self {
        TimerStore { store }
    }

    /// Waits until every write queued before this call has committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Creates or replaces the timer of its key; answers after commit.
    pub async fn save_timer(&self, t: TimerRow) -> Result<(), StoreError> {
        self.store
            .write(move |tx| {
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
            .store
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

    /// Removes every timer of `connector` of `account` (the connector was deleted); how many.
    pub async fn delete_connector_timers(
        &self,
        account: String,
        connector: String,
    ) -> Result<usize, StoreError> {
        let (tx_out, rx) = tokio::sync::oneshot::channel();
        self.store
            .write(move |tx| {
                let n = tx
                    .prepare_cached("DELETE FROM timers WHERE account = ?1 AND connector = ?2")?
                    .execute(params![account, connector])?;
                let _ = tx_out.send(n);
                Ok(Written::Done)
            })
            .await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Removes the timers bound to session `session`; returns them.
    pub async fn delete_session_timers(&self, session: Uuid) -> Result<Vec<TimerRow>, StoreError> {
        let (tx_out, rx) = tokio::sync::oneshot::channel();
        self.store
            .write(move |tx| {
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

    /// Moves fired timers on, in one transaction, queued at once; the future answers the
    /// commit. Only a timer still due as it fired moves: one replaced or cancelled meanwhile
    /// stays as it is now. [`StoreError::Busy`] (nothing queued) when the writer's queue is full.
    pub fn move_fired_timers(
        &self,
        moves: Vec<FiredRow>,
    ) -> Result<impl std::future::Future<Output = Result<(), StoreError>>, StoreError> {
        let committed = self.store.write_queued(move |tx| {
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
            let mut buf = Uuid::encode_buffer();
            for m in &moves {
                let persona: &str = m.persona.hyphenated().encode_lower(&mut buf);
                match m.after {
                    After::Rearm(next) => rearm.execute(params![
                        m.account,
                        m.connector,
                        persona,
                        m.name,
                        next,
                        m.scheduled_ms
                    ])?,
                    After::Remove => remove.execute(params![
                        m.account,
                        m.connector,
                        persona,
                        m.name,
                        m.scheduled_ms
                    ])?,
                };
            }
            Ok(Written::Done)
        })?;
        Ok(async move { committed.await.map(|_| ()) })
    }

    /// Replayed firings of an earlier build were handed on.
    pub fn firings_done(&self, ids: Vec<Uuid>) {
        self.store.write_later(move |tx| {
            let mut st = tx.prepare_cached("DELETE FROM timer_firings WHERE id = ?1")?;
            for id in &ids {
                st.execute(params![id.to_string()])?;
            }
            Ok(Written::Done)
        });
    }

    /// Timers due before `before_ms` that come after `from` in the order of due time, then key
    /// (from due time `from.0` on, or past the key `from.1` at that due time), in that order,
    /// at most `limit`. Blocking.
    pub fn timers_due_after(
        &self,
        from: (i64, Option<(&str, &str, Uuid, &str)>),
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        const ORDER: &str = "ORDER BY due_ms, account, connector, persona, name";
        self.store.read(|c| match from {
            (due, None) => c
                .prepare_cached(&format!(
                    "SELECT {TIMER_COLUMNS} FROM timers WHERE due_ms >= ?1 AND due_ms < ?2
                     {ORDER} LIMIT ?3"
                ))?
                .query_map(params![due, before_ms, limit as i64], timer)?
                .collect(),
            (due, Some((account, connector, persona, name))) => c
                .prepare_cached(&format!(
                    "SELECT {TIMER_COLUMNS} FROM timers
                     WHERE (due_ms, account, connector, persona, name) > (?1, ?2, ?3, ?4, ?5)
                       AND due_ms < ?6
                     {ORDER} LIMIT ?7"
                ))?
                .query_map(
                    params![
                        due,
                        account,
                        connector,
                        persona.to_string(),
                        name,
                        before_ms,
                        limit as i64
                    ],
                    timer,
                )?
                .collect(),
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
        self.store.read(|c| {
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
        self.store.read(|c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM timers WHERE account = ?1 AND connector = ?2 AND persona = ?3",
            )?
            .query_row(params![account, connector, persona.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as usize)
        })
    }

    /// How many timers `account` holds. Blocking.
    pub fn timer_count_of_account(&self, account: &str) -> Result<usize, StoreError> {
        self.store.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM timers WHERE account = ?1")?
                .query_row(params![account], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
        })
    }

    /// How many timers there are. Blocking.
    pub fn timer_total(&self) -> Result<usize, StoreError> {
        self.store.read(|c| {
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
        self.store.read(|c| {
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

    /// Firings an earlier build recorded and did not hand on (replayed at start). Blocking.
    pub fn pending_firings(&self) -> Result<Vec<FiringRow>, StoreError> {
        self.store.read(|c| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TimerStore {
        let dir = std::env::temp_dir().join(format!("sb-timers-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TimerStore::new(Store::open(&dir.join("test.db"), 1024, 5000).unwrap())
    }

    fn row(persona: u128, name: &str, due_ms: i64) -> TimerRow {
        TimerRow {
            account: "default".into(),
            connector: "timers".into(),
            persona: Uuid::from_u128(persona),
            name: name.into(),
            due_ms,
            interval_ms: Some(1_000),
            repeatable: true,
            event: "timer".into(),
            arguments: vec![("k".into(), "v".into())],
            session: None,
        }
    }

    fn names(rows: &[TimerRow]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}/{}@{}", r.persona.as_u128(), r.name, r.due_ms))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_read_on_past_the_last_key_however_many_share_a_due_time() {
        let s = store();
        let mut all = Vec::new();
        for (p, name, due) in [
            (2, "b", 100),
            (1, "z", 100),
            (1, "a", 100),
            (3, "a", 50),
            (2, "a", 100),
            (1, "c", 200),
            (1, "d", 900),
        ] {
            s.save_timer(row(p, name, due)).await.unwrap();
            all.push(row(p, name, due));
        }
        // In the order of due time, then key; the one due at 900 is past `before`.
        let first = s.timers_due_after((0, None), 500, 3).unwrap();
        assert_eq!(names(&first), ["3/a@50", "1/a@100", "1/z@100"]);
        assert_eq!(first[0], row(3, "a", 50), "a row reads back as written");
        let last = first.last().unwrap();
        let after = (
            last.account.as_str(),
            last.connector.as_str(),
            last.persona,
            last.name.as_str(),
        );
        let second = s.timers_due_after((100, Some(after)), 500, 3).unwrap();
        assert_eq!(names(&second), ["2/a@100", "2/b@100", "1/c@200"]);
        let last = second.last().unwrap();
        let after = (
            last.account.as_str(),
            last.connector.as_str(),
            last.persona,
            last.name.as_str(),
        );
        assert!(s
            .timers_due_after((200, Some(after)), 500, 3)
            .unwrap()
            .is_empty());
        assert_eq!(
            names(&s.timers_due_after((500, None), 1_000, 3).unwrap()),
            ["1/d@900"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fired_timer_moves_on_only_if_it_is_still_due_as_it_fired() {
        let s = store();
        for (name, due) in [("once", 100), ("tick", 100), ("replaced", 100)] {
            s.save_timer(row(1, name, due)).await.unwrap();
        }
        // Replaced after it fired at 100: the replacement stays.
        s.save_timer(row(1, "replaced", 5_000)).await.unwrap();
        let fired = |name: &str, after| FiredRow {
            account: "default".into(),
            connector: "timers".into(),
            persona: Uuid::from_u128(1),
            name: name.into(),
            scheduled_ms: 100,
            after,
        };
        s.move_fired_timers(vec![
            fired("once", After::Remove),
            fired("tick", After::Rearm(1_100)),
            fired("replaced", After::Remove),
        ])
        .unwrap()
        .await
        .unwrap();
        let left = s.timers_due_after((0, None), i64::MAX, 10).unwrap();
        assert_eq!(names(&left), ["1/tick@1100", "1/replaced@5000"]);
        // A move written twice does nothing the second time.
        s.move_fired_timers(vec![fired("tick", After::Rearm(1_100))])
            .unwrap()
            .await
            .unwrap();
        assert_eq!(s.timer_total().unwrap(), 2);
        assert_eq!(
            s.timer("default", "timers", Uuid::from_u128(1), "tick")
                .unwrap()
                .unwrap()
                .due_ms,
            1_100
        );
    }

    /// The definitions of the timer tables and their indexes, by name.
    fn schema(s: &TimerStore) -> Vec<(String, String)> {
        s.store
            .read(|c| {
                c.prepare(
                    "SELECT name, sql FROM sqlite_master
                     WHERE tbl_name IN ('timers', 'timer_firings') AND sql IS NOT NULL
                     ORDER BY name",
                )?
                .query_map([], |r| {
                    let sql: String = r.get(1)?;
                    Ok((r.get(0)?, sql.replace("IF NOT EXISTS ", "")))
                })?
                .collect()
            })
            .unwrap()
    }

    fn applied(s: &TimerStore) -> i64 {
        s.store
            .read(|c| {
                c.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM component_migrations
                     WHERE namespace = 'program_timer'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap()
    }

    /// On a store without the tables (as a store will be once the core migrations no longer
    /// make them), the component's step makes them as the core did: same columns, same indexes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_migration_makes_the_tables_on_a_store_without_them() {
        let s = store();
        let core = schema(&s);
        for name in ["timers", "timers_due", "timers_session", "timer_firings"] {
            assert!(core.iter().any(|(n, _)| n == name), "{name}: {core:?}");
        }
        s.store
            .write(|tx| {
                tx.execute_batch("DROP TABLE timers; DROP TABLE timer_firings;")?;
                Ok(Written::Done)
            })
            .await
            .unwrap();
        assert!(schema(&s).is_empty());
        s.store
            .migrate_component("program_timer", MIGRATIONS)
            .await
            .unwrap();
        assert_eq!(schema(&s), core);
        assert_eq!(applied(&s), MIGRATIONS.len() as i64);
        s.save_timer(row(1, "tick", 100)).await.unwrap();
        assert_eq!(s.timer_total().unwrap(), 1);
    }

    /// On a store whose core migrations made the tables (every existing database), the step
    /// changes nothing and keeps the timers; it is recorded, and not run again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_migration_keeps_the_tables_the_core_migrations_made() {
        let s = store();
        let core = schema(&s);
        assert!(core.iter().any(|(n, _)| n == "timers_due"), "{core:?}");
        s.save_timer(row(1, "tick", 100)).await.unwrap();
        for _ in 0..2 {
            s.store
                .migrate_component("program_timer", MIGRATIONS)
                .await
                .unwrap();
            assert_eq!(schema(&s), core);
            assert_eq!(applied(&s), MIGRATIONS.len() as i64);
            assert_eq!(
                names(&s.timers_of("default", None, None, 10).unwrap()),
                ["1/tick@100"]
            );
        }
    }
}
