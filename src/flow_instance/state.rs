//! Flow state fields: written by the `system` integration's `set_state` command, read by
//! `skill_idn_from_state` subscriptions when their invocation starts. Each value is recorded
//! in a [`StateJournal`] (the durable store, written behind) and restored at start, so a
//! restart keeps what skills set. Bounded: a value older than the TTL reads as unset, and past
//! the capacity the oldest values leave.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::domain::{Flow, Idn, Name, PersonaId, StateScope};

/// Whose value: one persona's, or the whole agent's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateOwner {
    User(PersonaId),
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StateKey {
    account: Idn,
    agent: Name,
    flow: Name,
    field: Idn,
    owner: StateOwner,
}

/// One value as recorded: whose field of which flow, and when it was set (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub account: Idn,
    pub agent: Name,
    pub flow: Name,
    pub field: Idn,
    pub owner: StateOwner,
    pub value: String,
    pub set_at_ms: i64,
}

impl StateEntry {
    /// The entry as the store keeps it: whose field, and (value, when set).
    fn split(self) -> (StateKey, (String, i64)) {
        let key = StateKey {
            account: self.account,
            agent: self.agent,
            flow: self.flow,
            field: self.field,
            owner: self.owner,
        };
        (key, (self.value, self.set_at_ms))
    }
}

/// Where values are recorded, off the hot path (the durable store).
pub trait StateJournal: Send + Sync + 'static {
    fn set(&self, entry: &StateEntry);
}

/// Every flow's state values.
pub struct StateStore {
    values: DashMap<StateKey, (String, i64), FxBuildHasher>,
    ttl: Duration,
    capacity: usize,
    journal: Option<Arc<dyn StateJournal>>,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore::new(Self::DEFAULT_TTL, Self::DEFAULT_CAPACITY, None)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl StateStore {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    pub fn new(ttl: Duration, capacity: usize, journal: Option<Arc<dyn StateJournal>>) -> Self {
        StateStore {
            values: DashMap::default(),
            ttl,
            capacity: capacity.max(1),
            journal,
        }
    }

    pub fn set(&self, flow: &Flow, field: Idn, owner: StateOwner, value: String) {
        let entry = StateEntry {
            account: flow.account.clone(),
            agent: flow.agent.clone(),
            flow: flow.flow.clone(),
            field,
            owner,
            value,
            set_at_ms: now_ms(),
        };
        if let Some(j) = &self.journal {
            j.set(&entry);
        }
        self.put(entry);
    }

    /// Puts back values recorded by an earlier run; those past the TTL are left out.
    pub fn restore(&self, entries: impl IntoIterator<Item = StateEntry>) {
        let oldest = now_ms() - self.ttl.as_millis() as i64;
        for e in entries.into_iter().filter(|e| e.set_at_ms > oldest) {
            self.put(e);
        }
    }

    /// Applies a value another daemon set (shared flow state), unless the one held here was
    /// set later or at the same time: the latest set wins, whatever order values arrive in.
    /// Not journalled here (the other daemon's journal and the shared bucket hold it).
    pub fn apply(&self, e: StateEntry) {
        let oldest = now_ms() - self.ttl.as_millis() as i64;
        if e.set_at_ms <= oldest {
            return;
        }
        let (key, value) = e.split();
        match self.values.entry(key) {
            dashmap::Entry::Occupied(mut held) => {
                if held.get().1 < value.1 {
                    held.insert(value);
                }
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(value);
            }
        }
        if self.values.len() > self.capacity {
            self.evict();
        }
    }

    fn put(&self, e: StateEntry) {
        let (key, value) = e.split();
        self.values.insert(key, value);
        if self.values.len() > self.capacity {
            self.evict();
        }
    }

    /// Past the capacity: the expired values leave, then the oldest until a tenth is free
    /// (so the scan runs once per many writes, not at every one).
    fn evict(&self) {
        let oldest = now_ms() - self.ttl.as_millis() as i64;
        self.values.retain(|_, (_, at)| *at > oldest);
        let keep = self.capacity - self.capacity / 10;
        if self.values.len() > keep {
            let mut ages: Vec<i64> = self.values.iter().map(|v| v.value().1).collect();
            let cut = ages.len() - keep;
            let (_, nth, _) = ages.select_nth_unstable(cut - 1);
            let bound = *nth;
            self.values.retain(|_, (_, at)| *at > bound);
        }
    }

    /// The value of `field` for `persona`: the field's declared scope decides whose value is
    /// read; an undeclared field is read per user, then per agent. No value (or one past the
    /// TTL): the default.
    pub fn get(&self, flow: &Flow, field: &Idn, persona: PersonaId) -> Option<String> {
        let key = |owner| StateKey {
            account: flow.account.clone(),
            agent: flow.agent.clone(),
            flow: flow.flow.clone(),
            field: field.clone(),
            owner,
        };
        let declared = flow.state_field(field.as_str());
        let owners: &[StateOwner] = match declared.map(|d| d.scope) {
            Some(StateScope::User) => &[StateOwner::User(persona)],
            Some(StateScope::Agent) => &[StateOwner::Agent],
            None => &[StateOwner::User(persona), StateOwner::Agent],
        };
        let oldest = now_ms() - self.ttl.as_millis() as i64;
        owners
            .iter()
            .find_map(|o| {
                self.values
                    .get(&key(o.clone()))
                    .filter(|v| v.1 > oldest)
                    .map(|v| v.0.clone())
            })
            .or_else(|| declared.and_then(|d| d.default_value.clone()))
    }

    /// The owner a write goes to: an explicit scope, else the declared one, else the user.
    pub fn owner_for(
        flow: &Flow,
        field: &str,
        scope: Option<StateScope>,
        persona: PersonaId,
    ) -> StateOwner {
        match scope.or_else(|| flow.state_field(field).map(|f| f.scope)) {
            Some(StateScope::Agent) => StateOwner::Agent,
            _ => StateOwner::User(persona),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn flow() -> Flow {
        let doc: crate::wire::flow_doc::FlowDoc = serde_yaml_ng::from_str(
            "events:\n  - {idn: user_message, skill_idn: S, integration_idn: telegram}\n",
        )
        .unwrap();
        doc.to_domain(&Idn::known("default"), "A", "F").unwrap()
    }

    #[derive(Default)]
    struct Journal(Mutex<Vec<StateEntry>>);

    impl StateJournal for Journal {
        fn set(&self, entry: &StateEntry) {
            self.0.lock().unwrap().push(entry.clone());
        }
    }

    #[test]
    fn applied_values_keep_the_latest_set_whatever_their_order() {
        let state = StateStore::new(StateStore::DEFAULT_TTL, 10, None);
        let (f, p) = (flow(), PersonaId(uuid::Uuid::now_v7()));
        let field = Idn::known("mood");
        let at = |value: &str, set_at_ms: i64| StateEntry {
            account: f.account.clone(),
            agent: f.agent.clone(),
            flow: f.flow.clone(),
            field: field.clone(),
            owner: StateOwner::User(p),
            value: value.into(),
            set_at_ms,
        };
        let now = now_ms();
        state.apply(at("later", now - 10));
        state.apply(at("earlier", now - 20));
        assert_eq!(state.get(&f, &field, p).as_deref(), Some("later"));
        // Set here now: newer than both.
        state.set(&f, field.clone(), StateOwner::User(p), "here".into());
        state.apply(at("late echo", now - 5));
        assert_eq!(state.get(&f, &field, p).as_deref(), Some("here"));
        // Past the TTL: not applied.
        let old = StateStore::new(Duration::from_secs(1), 10, None);
        old.apply(at("stale", now - 5_000));
        assert_eq!(old.get(&f, &field, p), None);
    }

    #[test]
    fn values_are_journalled_restored_and_expire() {
        let journal = Arc::new(Journal::default());
        let state = StateStore::new(
            Duration::from_secs(60),
            10,
            Some(journal.clone() as Arc<dyn StateJournal>),
        );
        let (f, p) = (flow(), PersonaId(uuid::Uuid::now_v7()));
        let field = Idn::known("mood");
        state.set(&f, field.clone(), StateOwner::User(p), "calm".into());
        assert_eq!(state.get(&f, &field, p).as_deref(), Some("calm"));
        let recorded = journal.0.lock().unwrap().clone();
        assert_eq!(recorded.len(), 1);

        let restarted = StateStore::new(Duration::from_secs(60), 10, None);
        let mut expired = recorded[0].clone();
        expired.field = Idn::known("old");
        expired.set_at_ms -= 61_000;
        restarted.restore([recorded[0].clone(), expired]);
        assert_eq!(restarted.get(&f, &field, p).as_deref(), Some("calm"));
        assert_eq!(
            restarted.get(&f, &Idn::known("old"), p),
            None,
            "past the TTL"
        );
    }

    #[test]
    fn past_the_capacity_the_oldest_values_leave() {
        let state = StateStore::new(Duration::from_secs(60), 10, None);
        let f = flow();
        let p = PersonaId(uuid::Uuid::now_v7());
        for n in 0..10 {
            state.restore([StateEntry {
                account: f.account.clone(),
                agent: f.agent.clone(),
                flow: f.flow.clone(),
                field: Idn::known(&format!("f{n}")),
                owner: StateOwner::User(p),
                value: n.to_string(),
                set_at_ms: now_ms() - 10_000 + n,
            }]);
        }
        state.set(&f, Idn::known("newest"), StateOwner::User(p), "x".into());
        assert!(state.values.len() <= 10);
        assert_eq!(
            state.get(&f, &Idn::known("newest"), p).as_deref(),
            Some("x")
        );
        assert_eq!(state.get(&f, &Idn::known("f0"), p), None, "the oldest left");
    }
}
