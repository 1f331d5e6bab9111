//! What the adapter remembers of each command act it was handed (in memory, the newest
//! `capacity` acts): whether its message is being sent, was sent (the chat and Telegram's
//! message id, which a recall deletes), failed, was recalled or stayed, and the outcome whose
//! result event the daemon has not taken yet. The daemon sends a command again, with the same
//! act, until the adapter answers 2xx: a repeat finds its act here and is not sent twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

use crate::envelopes::Outcome;

/// Where a command act stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Its `sendMessage` is under way.
    InFlight,
    /// Sent: `deleteMessage` takes it back.
    Sent { chat: i64, message_id: i64 },
    /// Not sent (Telegram refused, or the command could not be carried out).
    Failed,
    /// Recalled: deleted, or recalled before it was sent (then it never is).
    Recalled,
    /// A recall came too late: the message stays.
    Kept,
}

/// One act: its state and the outcome not reported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: State,
    pub unreported: Option<Outcome>,
}

#[derive(Default)]
struct Acts {
    by_act: HashMap<Uuid, Entry>,
    /// Oldest first: the first to be forgotten past the capacity.
    order: VecDeque<Uuid>,
}

pub struct Ledger {
    acts: Mutex<Acts>,
    capacity: usize,
}

impl Ledger {
    pub fn new(capacity: usize) -> Ledger {
        Ledger {
            acts: Mutex::new(Acts::default()),
            capacity: capacity.max(1),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Acts) -> T) -> T {
        f(&mut self.acts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The entry of `act`, if it is remembered.
    pub fn get(&self, act: Uuid) -> Option<Entry> {
        self.with(|a| a.by_act.get(&act).cloned())
    }

    /// Records `act` as `entry` unless it is remembered already; answers the entry it has
    /// otherwise.
    pub fn claim(&self, act: Uuid, entry: Entry) -> Result<(), Entry> {
        let capacity = self.capacity;
        self.with(|a| {
            if let Some(held) = a.by_act.get(&act) {
                return Err(held.clone());
            }
            a.by_act.insert(act, entry);
            a.order.push_back(act);
            while a.order.len() > capacity {
                if let Some(old) = a.order.pop_front() {
                    a.by_act.remove(&old);
                }
            }
            Ok(())
        })
    }

    /// `act` is now `state`, its `outcome` to be reported.
    pub fn settle(&self, act: Uuid, state: State, outcome: Outcome) {
        self.with(|a| {
            if let Some(e) = a.by_act.get_mut(&act) {
                e.state = state;
                e.unreported = Some(outcome);
            }
        });
    }

    /// The daemon took `outcome`'s event (a later outcome may have replaced it meanwhile).
    pub fn reported(&self, act: Uuid, outcome: &Outcome) {
        self.with(|a| {
            if let Some(e) = a.by_act.get_mut(&act) {
                if e.unreported.as_ref() == Some(outcome) {
                    e.unreported = None;
                }
            }
        });
    }

    /// Forgets `act` (a send that may succeed when the daemon sends it again).
    pub fn forget(&self, act: Uuid) {
        self.with(|a| {
            a.by_act.remove(&act);
            a.order.retain(|x| *x != act);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight() -> Entry {
        Entry {
            state: State::InFlight,
            unreported: None,
        }
    }

    #[test]
    fn an_act_is_claimed_once_and_settles_until_reported() {
        let ledger = Ledger::new(10);
        let act = Uuid::now_v7();
        assert_eq!(ledger.claim(act, in_flight()), Ok(()));
        assert_eq!(ledger.claim(act, in_flight()), Err(in_flight()));
        let sent = Outcome::Sent { message_id: 3 };
        let state = State::Sent {
            chat: 1,
            message_id: 3,
        };
        ledger.settle(act, state.clone(), sent.clone());
        assert_eq!(ledger.get(act).unwrap().unreported, Some(sent.clone()));
        // A report of an older outcome does not clear a newer one.
        ledger.reported(act, &Outcome::Recalled);
        assert_eq!(ledger.get(act).unwrap().unreported, Some(sent.clone()));
        ledger.reported(act, &sent);
        let entry = ledger.get(act).unwrap();
        assert_eq!((entry.state, entry.unreported), (state, None));
        ledger.forget(act);
        assert_eq!(ledger.get(act), None);
    }

    #[test]
    fn the_oldest_acts_are_forgotten_past_the_capacity() {
        let ledger = Ledger::new(2);
        let acts: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for act in &acts {
            ledger.claim(*act, in_flight()).unwrap();
        }
        assert_eq!(ledger.get(acts[0]), None);
        assert!(ledger.get(acts[1]).is_some() && ledger.get(acts[2]).is_some());
    }
}
