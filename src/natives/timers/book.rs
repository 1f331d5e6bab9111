//! Where timers are kept: [`Book`], the interface the timer service writes through, with the
//! SQLite store behind it in the daemon ([`StoredBook`]) and an in-memory one for tests and
//! benchmarks ([`MemoryBook`]). Every method answers once the change is durable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{ready, BoxFuture, FutureExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::spec::{Timer, TimerKey};
use crate::domain::{Idn, PersonaId};
use crate::store::timers::{After, FiringRow, TimerRow};
use crate::store::{Store, StoreError};
use crate::telemetry::queue;

/// A firing: the event a timer fired, recorded until it was handed on.
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
    /// Records firings and moves their timers on, all at once: queued before this returns
    /// (so whatever is asked of the book afterwards comes after it); the future answers when it
    /// is durable. An `Err` queued nothing.
    fn fire(&self, firings: &[(Firing, After)]) -> Result<Durable, StoreError>;
    /// A firing's event was handed on.
    fn done(&self, id: Uuid);
    /// Timers due before `before_ms`, soonest first, at most `limit`.
    fn due_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>>;
    /// How many timers the key's persona holds on its connector.
    fn count(&self, key: &TimerKey) -> BoxFuture<'static, Result<usize, StoreError>>;
    /// Whether the timer of this key exists.
    fn exists(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// How many timers there are.
    fn total(&self) -> BoxFuture<'static, Result<usize, StoreError>>;
    /// Firings recorded and not handed on.
    fn pending_firings(&self) -> BoxFuture<'static, Result<Vec<Firing>, StoreError>>;
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

fn firing_row(f: &Firing) -> FiringRow {
    FiringRow {
        id: f.id,
        account: f.key.account.to_string(),
        connector: f.key.connector.to_string(),
        persona: f.key.persona.0,
        name: f.key.name.clone(),
        event: f.event.to_string(),
        arguments: f.arguments.clone(),
        scheduled_ms: f.scheduled_ms,
    }
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

/// The daemon's SQLite store. Firings handed on are forgotten in bulk: their ids gather in a
/// queue that one task drains into one delete per batch (a firing forgotten late is only
/// replayed, marked redelivered, if the daemon stops first).
pub struct StoredBook {
    store: Store,
    done: mpsc::Sender<Uuid>,
}

/// Firing ids deleted in one write, at most.
const DONE_BATCH: usize = 4096;

impl StoredBook {
    /// Starts the task that forgets firings; call inside the runtime.
    pub fn new(store: Store) -> Self {
        let (done, mut rx) = queue::bounded::<Uuid>(queue::names::TIMER_FIRINGS_DONE, 65_536);
        let writer = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(DONE_BATCH);
            while rx.recv_many(&mut ids, DONE_BATCH).await > 0 {
                writer.firings_done(std::mem::take(&mut ids));
            }
        });
        StoredBook { store, done }
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

    fn fire(&self, firings: &[(Firing, After)]) -> Result<Durable, StoreError> {
        let rows = firings
            .iter()
            .map(|(f, after)| (firing_row(f), after.clone()))
            .collect();
        Ok(self.store.fire_timers(rows)?.boxed())
    }

    fn done(&self, id: Uuid) {
        if let Err(e) = self.done.try_send(id) {
            queue::full(queue::names::TIMER_FIRINGS_DONE);
            if let mpsc::error::TrySendError::Full(id) = e {
                self.store.firings_done(vec![id]);
            }
        }
    }

    fn due_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let store = self.store.clone();
        blocking(move || {
            store
                .timers_due_before(before_ms, limit)?
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
}

impl MemoryBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every timer kept, by key.
    pub fn timers(&self) -> Vec<Timer> {
        self.lock().timers.values().cloned().collect()
    }

    /// Firings not handed on yet.
    pub fn firings(&self) -> Vec<Firing> {
        self.lock().firings.values().cloned().collect()
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

    fn fire(&self, firings: &[(Firing, After)]) -> Result<Durable, StoreError> {
        let mut m = self.lock();
        for (f, after) in firings.iter().cloned() {
            let same = m
                .timers
                .get(&f.key)
                .is_some_and(|t| t.due_ms == f.scheduled_ms);
            if same {
                match after {
                    After::Rearm(next) => {
                        if let Some(t) = m.timers.get_mut(&f.key) {
                            t.due_ms = next;
                        }
                    }
                    After::Remove => {
                        m.timers.remove(&f.key);
                    }
                }
            }
            m.firings.insert(f.id, f);
        }
        Ok(ready(Ok(())).boxed())
    }

    fn done(&self, id: Uuid) {
        self.lock().firings.remove(&id);
    }

    fn due_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Timer>, StoreError>> {
        let mut due: Vec<Timer> = self
            .lock()
            .timers
            .values()
            .filter(|t| t.due_ms < before_ms)
            .cloned()
            .collect();
        due.sort_by_key(|t| t.due_ms);
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

    fn exists(&self, key: &TimerKey) -> BoxFuture<'static, Result<bool, StoreError>> {
        ready(Ok(self.lock().timers.contains_key(key))).boxed()
    }

    fn total(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        ready(Ok(self.lock().timers.len())).boxed()
    }

    fn pending_firings(&self) -> BoxFuture<'static, Result<Vec<Firing>, StoreError>> {
        ready(Ok(self.firings())).boxed()
    }
}
