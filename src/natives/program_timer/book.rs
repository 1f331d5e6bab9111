//! Where timers are kept: [`Book`], the interface the timer service writes through, with the
//! SQLite store behind it in the daemon ([`StoredBook`]) and an in-memory one for tests and
//! benchmarks ([`MemoryBook`]). Every method answers once the change is durable.
//!
//! A timer's row is its own firing record: the service moves a fired timer on ([`Book::advance`])
//! only once its event was handed on. [`Firing`]s are what builds before that design recorded
//! separately; they are replayed once at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{ready, BoxFuture, FutureExt};
use uuid::Uuid;

use super::spec::{Timer, TimerKey};
use super::store::{After, FiredRow, FiringRow, TimerRow, TimerStore};
use crate::domain::{Idn, PersonaId};
use crate::store::{Store, StoreError};

/// How far the timers in memory reach, in the order of due time, then key: every timer due
/// before `due_ms`, and those due at `due_ms` up to key `last` when a load stopped at its limit
/// there (so a load after it reads on from that key, however many share the due time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    pub due_ms: i64,
    pub last: Option<TimerKey>,
}

impl Horizon {
    /// Whether a timer due at `due_ms` with `key` is within.
    pub fn covers(&self, due_ms: i64, key: &TimerKey) -> bool {
        due_ms < self.due_ms
            || (due_ms == self.due_ms && self.last.as_ref().is_some_and(|last| key <= last))
    }
}

/// A fired timer to move on once its event was handed on: removed, or re-armed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub key: TimerKey,
    /// The due time it fired at: only a timer still due then moves.
    pub scheduled_ms: i64,
    pub after: After,
}

/// A firing an earlier build recorded: the event a timer fired, until it was handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub id: Uuid,
    pub key: TimerKey,
    pub event: Idn,
    /// The event's arguments.
    pub arguments: Vec<(String, String)>,
    pub scheduled_ms: i64,
    /// It may have left before (not stored: a firing read back from the book is replayed,
    /// hence marked, anyway).
    pub redelivered: bool,
}

/// A write queued, answering when it is durable.
pub type Durable = BoxFuture<'static, Result<(), StoreError>>;

pub trait Book: Send + Sync + 'static {
    /// Creates or replaces the timer of its key.
    fn save(&self, timer: &Timer) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Removes a timer; whether there was one.
    fn delete(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Removes the timers bound to `session`; returns them.
    fn delete_session(&self, session: Uuid) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>>;
    /// Moves fired timers on, each only if it is still due as it fired (one replaced or
    /// cancelled meanwhile stays): queued before this returns (so whatever is asked of the book
    /// afterwards comes after it); the future answers when it is durable. An `Err` queued
    /// nothing.
    fn advance(&self, moves: &[Move]) -> Result<Durable, StoreError>;
    /// A replayed [`Firing`]'s event was handed on.
    fn done(&self, id: Uuid);
    /// Timers due before `before_ms` and past `from`, in the order of due time, then key, at
    /// most `limit`.
    fn due_after(
        &self,
        from: &Horizon,
        before_ms: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>>;
    /// How many timers the key's persona holds on its connector.
    fn count(&self, key: &TimerKey) -> BoxFuture<'static, Result<usize, StoreError>>;
    /// How many timers `account` holds, over its connectors and personas.
    fn count_account(&self, account: &Idn) -> BoxFuture<'static, Result<usize, StoreError>>;
    /// Removes every timer of connector `connector` of `account`; how many there were.
    fn delete_connector(
        &self,
        account: &Idn,
        connector: &Idn,
    ) -> BoxFuture<'static, Result<usize, StoreError>>;
    /// Whether the timer of this key exists.
    fn exists(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// How many timers there are.
    fn total(&self) -> BoxFuture<'static, Result<usize, StoreError>>;
    /// Firings an earlier build recorded and did not hand on.
    fn pending_firings(&self) -> BoxFuture<'static, Result<Vec<Firing>, StoreError>>;
    /// Timers of `account`, optionally of one connector and one persona, soonest first, at
    /// most `limit`; those whose changes were answered before the call included.
    fn list(
        &self,
        account: &Idn,
        connector: Option<&Idn>,
        persona: Option<PersonaId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>>;
}

/// A key as the store names it: account, connector, persona, name.
fn parts(key: &TimerKey) -> (String, String, Uuid, String) {
    (
        key.account.to_string(),
        key.connector.to_string(),
        key.persona.0,
        key.name.clone(),
    )
}

fn row_of(t: &Timer) -> TimerRow {
    TimerRow {
        account: t.key.account.to_string(),
        connector: t.key.connector.to_string(),
        persona: t.key.persona.0,
        name: t.key.name.clone(),
        due_ms: t.due_ms,
        interval_ms: t.interval_ms,
        repeatable: t.repeatable,
        event: t.event.to_string(),
        arguments: t.arguments.clone(),
        session: t.session,
    }
}

fn idn(field: &str, v: &str) -> Result<Idn, StoreError> {
    Idn::parse(field, v).map_err(|e| StoreError::Corrupt(format!("timer {field}: {e}")))
}

/// The timer a stored row holds.
pub fn timer_of(r: TimerRow) -> Result<Timer, StoreError> {
    Ok(Timer {
        key: TimerKey {
            account: idn("account", &r.account)?,
            connector: idn("connector", &r.connector)?,
            persona: PersonaId(r.persona),
            name: r.name,
        },
        due_ms: r.due_ms,
        interval_ms: r.interval_ms,
        repeatable: r.repeatable,
        event: idn("event", &r.event)?,
        arguments: r.arguments,
        session: r.session,
    })
}

fn firing_of(r: FiringRow) -> Result<Firing, StoreError> {
    Ok(Firing {
        id: r.id,
        key: TimerKey {
            account: idn("account", &r.account)?,
            connector: idn("connector", &r.connector)?,
            persona: PersonaId(r.persona),
            name: r.name,
        },
        event: idn("event", &r.event)?,
        arguments: r.arguments,
        scheduled_ms: r.scheduled_ms,
        redelivered: true,
    })
}

/// Runs a blocking store read off the async workers.
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Corrupt(format!("timer read task: {e}")))?
    }
    .boxed()
}

/// The daemon's SQLite store.
pub struct StoredBook {
    store: TimerStore,
}

impl StoredBook {
    pub fn new(store: Store) -> Self {
        StoredBook {
            store: TimerStore::new(store),
        }
    }
}

impl Book for StoredBook {
    fn save(&self, timer: &Timer) -> BoxFuture<'static, Result<(), StoreError>> {
        let (store, row) = (self.store.clone(), row_of(timer));
        async move { store.save_timer(row).await }.boxed()
    }

    fn delete(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>> {
        let store = self.store.clone();
        let (a, c, p, n) = parts(key);
        async move { store.delete_timer(a, c, p, n).await }.boxed()
    }

    fn delete_session(&self, session: Uuid) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let store = self.store.clone();
        async move {
            store
                .delete_session_timers(session)
                .await?
                .into_iter()
                .map(timer_of)
                .collect()
        }
        .boxed()
    }

    fn advance(&self, moves: &[Move]) -> Result<Durable, StoreError> {
        let rows = moves
            .iter()
            .map(|m| FiredRow {
                account: m.key.account.to_string(),
                connector: m.key.connector.to_string(),
                persona: m.key.persona.0,
                name: m.key.name.clone(),
                scheduled_ms: m.scheduled_ms,
                after: m.after.clone(),
            })
            .collect();
        Ok(self.store.move_fired_timers(rows)?.boxed())
    }

    fn done(&self, id: Uuid) {
        self.store.firings_done(vec![id]);
    }

    fn due_after(
        &self,
        from: &Horizon,
        before_ms: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let store = self.store.clone();
        let due = from.due_ms;
        let last = from.last.as_ref().map(parts);
        blocking(move || {
            let last = last
                .as_ref()
                .map(|(a, c, p, n)| (a.as_str(), c.as_str(), *p, n.as_str()));
            store
                .timers_due_after((due, last), before_ms, limit)?
                .into_iter()
                .map(timer_of)
                .collect()
        })
    }

    fn count(&self, key: &TimerKey) -> BoxFuture<'static, Result<usize, StoreError>> {
        let store = self.store.clone();
        let (a, c, p, _) = parts(key);
        blocking(move || store.timer_count(&a, &c, p))
    }

    fn count_account(&self, account: &Idn) -> BoxFuture<'static, Result<usize, StoreError>> {
        let (store, account) = (self.store.clone(), account.to_string());
        blocking(move || store.timer_count_of_account(&account))
    }

    fn delete_connector(
        &self,
        account: &Idn,
        connector: &Idn,
    ) -> BoxFuture<'static, Result<usize, StoreError>> {
        let store = self.store.clone();
        let (account, connector) = (account.to_string(), connector.to_string());
        async move { store.delete_connector_timers(account, connector).await }.boxed()
    }

    fn exists(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>> {
        let store = self.store.clone();
        let (a, c, p, n) = parts(key);
        blocking(move || Ok(store.timer(&a, &c, p, &n)?.is_some()))
    }

    fn total(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        let store = self.store.clone();
        blocking(move || store.timer_total())
    }

    fn pending_firings(&self) -> BoxFuture<'static, Result<Vec<Firing>, StoreError>> {
        let store = self.store.clone();
        blocking(move || {
            store
                .pending_firings()?
                .into_iter()
                .map(firing_of)
                .collect()
        })
    }

    fn list(
        &self,
        account: &Idn,
        connector: Option<&Idn>,
        persona: Option<PersonaId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let store = self.store.clone();
        let (account, connector) = (account.to_string(), connector.map(Idn::to_string));
        async move {
            store.flush().await?;
            blocking(move || {
                store
                    .timers_of(&account, connector.as_deref(), persona.map(|p| p.0), limit)?
                    .into_iter()
                    .map(timer_of)
                    .collect()
            })
            .await
        }
        .boxed()
    }
}

/// Timers in memory: for tests and benchmarks of the service (answers at once).
#[derive(Default, Clone)]
pub struct MemoryBook {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Default)]
struct Memory {
    timers: BTreeMap<TimerKey, Timer>,
    firings: BTreeMap<Uuid, Firing>,
    /// Reads of due timers so far.
    loads: usize,
}

impl MemoryBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every timer kept, by key.
    pub fn timers(&self) -> Vec<Timer> {
        self.lock().timers.values().cloned().collect()
    }

    /// Replayed firings not handed on yet.
    pub fn firings(&self) -> Vec<Firing> {
        self.lock().firings.values().cloned().collect()
    }

    /// How many times due timers were read.
    pub fn loads(&self) -> usize {
        self.lock().loads
    }

    /// Records a firing as an earlier build did (to replay at start).
    pub fn record_firing(&self, f: Firing) {
        self.lock().firings.insert(f.id, f);
    }
}

impl Book for MemoryBook {
    fn save(&self, timer: &Timer) -> BoxFuture<'static, Result<(), StoreError>> {
        self.lock().timers.insert(timer.key.clone(), timer.clone());
        ready(Ok(())).boxed()
    }

    fn delete(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>> {
        ready(Ok(self.lock().timers.remove(key).is_some())).boxed()
    }

    fn delete_session(&self, session: Uuid) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let mut m = self.lock();
        let gone: Vec<Timer> = m
            .timers
            .values()
            .filter(|t| t.session == Some(session))
            .cloned()
            .collect();
        for t in &gone {
            m.timers.remove(&t.key);
        }
        ready(Ok(gone)).boxed()
    }

    fn advance(&self, moves: &[Move]) -> Result<Durable, StoreError> {
        let mut m = self.lock();
        for mv in moves {
            let Some(t) = m.timers.get_mut(&mv.key) else {
                continue;
            };
            if t.due_ms != mv.scheduled_ms {
                continue;
            }
            match mv.after {
                After::Rearm(next) => t.due_ms = next,
                After::Remove => {
                    m.timers.remove(&mv.key);
                }
            }
        }
        Ok(ready(Ok(())).boxed())
    }

    fn done(&self, id: Uuid) {
        self.lock().firings.remove(&id);
    }

    fn due_after(
        &self,
        from: &Horizon,
        before_ms: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let mut m = self.lock();
        m.loads += 1;
        let mut due: Vec<Timer> = m
            .timers
            .values()
            .filter(|t| t.due_ms < before_ms && !from.covers(t.due_ms, &t.key))
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.due_ms, &a.key).cmp(&(b.due_ms, &b.key)));
        due.truncate(limit);
        ready(Ok(due)).boxed()
    }

    fn count(&self, key: &TimerKey) -> BoxFuture<'static, Result<usize, StoreError>> {
        let n = self
            .lock()
            .timers
            .keys()
            .filter(|k| {
                k.account == key.account && k.connector == key.connector && k.persona == key.persona
            })
            .count();
        ready(Ok(n)).boxed()
    }

    fn count_account(&self, account: &Idn) -> BoxFuture<'static, Result<usize, StoreError>> {
        let n = self
            .lock()
            .timers
            .keys()
            .filter(|k| k.account == *account)
            .count();
        ready(Ok(n)).boxed()
    }

    fn delete_connector(
        &self,
        account: &Idn,
        connector: &Idn,
    ) -> BoxFuture<'static, Result<usize, StoreError>> {
        let mut m = self.lock();
        let before = m.timers.len();
        m.timers
            .retain(|k, _| !(k.account == *account && k.connector == *connector));
        ready(Ok(before - m.timers.len())).boxed()
    }

    fn exists(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>> {
        ready(Ok(self.lock().timers.contains_key(key))).boxed()
    }

    fn total(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        ready(Ok(self.lock().timers.len())).boxed()
    }

    fn pending_firings(&self) -> BoxFuture<'static, Result<Vec<Firing>, StoreError>> {
        ready(Ok(self.firings())).boxed()
    }

    fn list(
        &self,
        account: &Idn,
        connector: Option<&Idn>,
        persona: Option<PersonaId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let mut listed: Vec<Timer> = self
            .lock()
            .timers
            .values()
            .filter(|t| {
                t.key.account == *account
                    && connector.is_none_or(|c| t.key.connector == *c)
                    && persona.is_none_or(|p| t.key.persona == p)
            })
            .cloned()
            .collect();
        listed.sort_by(|a, b| (a.due_ms, &a.key).cmp(&(b.due_ms, &b.key)));
        listed.truncate(limit);
        ready(Ok(listed)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(account: &str, connector: &str, persona: u128, name: &str, due_ms: i64) -> Timer {
        Timer {
            key: TimerKey {
                account: Idn::known(account),
                connector: Idn::known(connector),
                persona: PersonaId(Uuid::from_u128(persona)),
                name: name.into(),
            },
            due_ms,
            interval_ms: None,
            repeatable: false,
            event: Idn::known("timer"),
            arguments: Vec::new(),
            session: None,
        }
    }

    /// What `GET /v1/timers` reads: the account's timers, of one connector and one persona when
    /// asked, soonest first, at most the limit.
    #[tokio::test]
    async fn a_listing_keeps_to_its_account_and_filters_soonest_first() {
        let book = MemoryBook::default();
        for t in [
            timer("acme", "timers", 1, "late", 300),
            timer("acme", "timers", 2, "soon", 100),
            timer("acme", "other", 1, "mid", 200),
            timer("default", "timers", 1, "theirs", 50),
        ] {
            book.save(&t).await.unwrap();
        }
        let names = |listed: Vec<Timer>| -> Vec<String> {
            listed.into_iter().map(|t| t.key.name).collect()
        };
        let acme = Idn::known("acme");
        let list = |connector: Option<&str>, persona: Option<u128>, limit| {
            let connector = connector.map(Idn::known);
            book.list(
                &acme,
                connector.as_ref(),
                persona.map(|p| PersonaId(Uuid::from_u128(p))),
                limit,
            )
        };
        assert_eq!(
            names(list(None, None, 10).await.unwrap()),
            ["soon", "mid", "late"]
        );
        assert_eq!(names(list(None, None, 2).await.unwrap()), ["soon", "mid"]);
        assert_eq!(
            names(list(Some("timers"), None, 10).await.unwrap()),
            ["soon", "late"]
        );
        assert_eq!(
            names(list(None, Some(1), 10).await.unwrap()),
            ["mid", "late"]
        );
        assert_eq!(
            names(list(Some("timers"), Some(1), 10).await.unwrap()),
            ["late"]
        );
    }
}
