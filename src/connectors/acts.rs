//! Command acts the daemon issued to adapters: `command_act_id` → the persona and connector it
//! was issued for, so that the adapter's result events come back to the same persona. The
//! command stage records an act when it sends a command to an external integration; the
//! connector actor resolves events that name only an act. Bounded by age and count. Each act
//! is also recorded in an [`ActJournal`] (the durable store, written behind), and the acts
//! still young enough are restored at start, so a result for a command sent before a restart
//! still finds its persona.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{ConnectorKey, PersonaId};

#[derive(Default)]
struct Acts {
    by_id: FxHashMap<Uuid, (PersonaId, ConnectorKey)>,
    /// Eviction order: the oldest acts leave first, by age or past the capacity.
    order: VecDeque<(Instant, Uuid)>,
    /// Acts whose result came back (recalls skip them).
    done: rustc_hash::FxHashSet<Uuid>,
}

/// Where issued acts are recorded, off the hot path (the durable store).
pub trait ActJournal: Send + Sync + 'static {
    fn issued(&self, act: Uuid, persona: PersonaId, connector: &ConnectorKey);
}

/// An act as recorded, restored at start: `age` is how long ago it was issued.
#[derive(Debug, Clone)]
pub struct RecordedAct {
    pub act: Uuid,
    pub persona: PersonaId,
    pub connector: ConnectorKey,
    pub age: Duration,
}

pub struct CommandActs {
    ttl: Duration,
    capacity: usize,
    acts: Mutex<Acts>,
    journal: Option<Arc<dyn ActJournal>>,
}

impl CommandActs {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        CommandActs {
            ttl,
            capacity: capacity.max(1),
            acts: Mutex::new(Acts::default()),
            journal: None,
        }
    }

    /// Records every act remembered in `journal` too.
    pub fn with_journal(mut self, journal: Option<Arc<dyn ActJournal>>) -> Self {
        self.journal = journal;
        self
    }

    /// Puts back acts recorded by an earlier run (oldest first); those past the age or the
    /// capacity are left out as if they had been evicted.
    pub fn restore(&self, recorded: impl IntoIterator<Item = RecordedAct>, now: Instant) {
        for r in recorded {
            if r.age >= self.ttl {
                continue;
            }
            let at = now.checked_sub(r.age).unwrap_or(now);
            self.insert(r.act, r.persona, r.connector, at, now);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Acts> {
        self.acts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that `act` was issued for `persona` through `connector`.
    pub fn remember(&self, act: Uuid, persona: PersonaId, connector: ConnectorKey, now: Instant) {
        if let Some(j) = &self.journal {
            j.issued(act, persona, &connector);
        }
        self.insert(act, persona, connector, now, now);
    }

    fn insert(
        &self,
        act: Uuid,
        persona: PersonaId,
        connector: ConnectorKey,
        at: Instant,
        now: Instant,
    ) {
        let mut acts = self.lock();
        // Amortized O(1): the oldest acts leave first, by age or past the capacity.
        while let Some((at, old)) = acts.order.front().copied() {
            if now.duration_since(at) < self.ttl && acts.order.len() < self.capacity {
                break;
            }
            acts.by_id.remove(&old);
            acts.done.remove(&old);
            acts.order.pop_front();
        }
        acts.by_id.insert(act, (persona, connector));
        acts.order.push_back((at, act));
    }

    /// The adapter reported `act` done (a result event came back).
    pub fn reported(&self, act: &Uuid) {
        let mut acts = self.lock();
        if acts.by_id.contains_key(act) {
            acts.done.insert(*act);
        }
    }

    /// Whether `act` is known to be done (its result came back while it was remembered).
    pub fn is_reported(&self, act: &Uuid) -> bool {
        self.lock().done.contains(act)
    }

    /// The persona `act` was issued for, if it was issued through `connector` and is still
    /// known.
    pub fn persona(&self, act: &Uuid, connector: &ConnectorKey) -> Option<PersonaId> {
        let acts = self.lock();
        acts.by_id
            .get(act)
            .filter(|(_, c)| c == connector)
            .map(|(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Idn;

    fn key(c: &str) -> ConnectorKey {
        ConnectorKey::new(&Idn::known("a"), &Idn::known("telegram"), &Idn::known(c))
    }

    #[test]
    fn an_act_resolves_only_on_its_connector_and_only_while_known() {
        let acts = CommandActs::new(Duration::from_secs(10), 2);
        let now = Instant::now();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let p = PersonaId(Uuid::now_v7());
        acts.remember(a, p, key("bot"), now);
        assert_eq!(acts.persona(&a, &key("bot")), Some(p));
        assert_eq!(acts.persona(&a, &key("other")), None);
        acts.remember(b, p, key("bot"), now);
        acts.remember(c, p, key("bot"), now);
        assert_eq!(acts.persona(&a, &key("bot")), None, "evicted past capacity");
        acts.remember(Uuid::now_v7(), p, key("bot"), now + Duration::from_secs(11));
        assert_eq!(acts.persona(&b, &key("bot")), None, "evicted by age");
    }

    #[derive(Default)]
    struct Journal(Mutex<Vec<Uuid>>);

    impl ActJournal for Journal {
        fn issued(&self, act: Uuid, _: PersonaId, _: &ConnectorKey) {
            self.0.lock().unwrap().push(act);
        }
    }

    #[test]
    fn acts_are_journalled_and_restored_while_young_enough() {
        let journal = Arc::new(Journal::default());
        let acts = CommandActs::new(Duration::from_secs(10), 10)
            .with_journal(Some(journal.clone() as Arc<dyn ActJournal>));
        let (a, p) = (Uuid::now_v7(), PersonaId(Uuid::now_v7()));
        acts.remember(a, p, key("bot"), Instant::now());
        assert_eq!(*journal.0.lock().unwrap(), [a]);

        let restarted = CommandActs::new(Duration::from_secs(10), 10);
        let (young, old) = (Uuid::now_v7(), Uuid::now_v7());
        let recorded = |act, secs| RecordedAct {
            act,
            persona: p,
            connector: key("bot"),
            age: Duration::from_secs(secs),
        };
        restarted.restore([recorded(old, 11), recorded(young, 9)], Instant::now());
        assert_eq!(restarted.persona(&young, &key("bot")), Some(p));
        assert_eq!(restarted.persona(&old, &key("bot")), None, "past the age");
    }
}
