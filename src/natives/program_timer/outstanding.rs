//! Firings whose events are out and whose timers have not moved on in the book yet: emitted,
//! handed on, being written. The timer service counts them against its room, does not load
//! their timers again, and keeps a re-armed timer that fell past the window's horizon until a
//! load reaches it (its row may still show the due time it fired at).

use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::book::{Horizon, Move};
use super::spec::{Timer, TimerKey};
use crate::admission::delivery::Settlement;
use crate::store::StoreError;

#[derive(Default)]
pub struct Outstanding {
    /// Emitted and not yet handed on, by event id.
    emitted: FxHashMap<Uuid, Move>,
    /// Handed on: their moves wait to be written.
    handed_on: Vec<Move>,
    /// Being written, by write.
    writing: FxHashMap<u64, Vec<Move>>,
    writing_len: usize,
    next_write: u64,
    /// Their write failed: tried again at the next load.
    unwritten: Vec<Move>,
    /// Given up by a holder (the engine stopping): not moved on in this run, so their timers
    /// stay due in the book and the next start fires them, marked.
    given_up: Vec<Move>,
    /// Re-armed past the window's horizon (so not held) and not yet held again.
    beyond: FxHashMap<TimerKey, Timer>,
}

impl Outstanding {
    /// Firings emitted and not yet handed on: held by the flows they reached.
    pub fn unsettled(&self) -> usize {
        self.emitted.len()
    }

    /// Firings settled whose timers have not moved on in the book: waiting for the store.
    pub fn unmoved(&self) -> usize {
        self.handed_on.len() + self.writing_len + self.unwritten.len() + self.given_up.len()
    }

    /// A firing's event left, with id `id`; `beyond` is its timer re-armed past the horizon.
    pub fn emitted(&mut self, id: Uuid, m: Move, beyond: Option<Timer>) {
        if let Some(t) = beyond {
            self.beyond.insert(t.key.clone(), t);
        }
        self.emitted.insert(id, m);
    }

    /// A firing's event was handed on, or given up.
    pub fn settled(&mut self, id: Uuid, s: Settlement) {
        if let Some(m) = self.emitted.remove(&id) {
            match s {
                Settlement::Done => self.handed_on.push(m),
                Settlement::Redeliver => self.given_up.push(m),
            }
        }
    }

    /// The moves to write now, if any.
    pub fn take_handed_on(&mut self) -> Option<Vec<Move>> {
        (!self.handed_on.is_empty()).then(|| std::mem::take(&mut self.handed_on))
    }

    /// `moves` are being written as write number (the answer).
    pub fn writing(&mut self, moves: Vec<Move>) -> u64 {
        let write = self.next_write;
        self.next_write += 1;
        self.writing_len += moves.len();
        self.writing.insert(write, moves);
        write
    }

    /// `moves` could not be queued: tried again at the next load.
    pub fn unwritten(&mut self, moves: Vec<Move>) {
        self.unwritten.extend(moves);
    }

    /// The moves of `write` committed, or failed (`Err`, handed back).
    pub fn written(
        &mut self,
        write: u64,
        result: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Some(moves) = self.writing.remove(&write) else {
            return Ok(());
        };
        self.writing_len -= moves.len();
        if result.is_err() {
            self.unwritten.extend(moves);
        }
        result
    }

    /// Moves whose write failed go to be written again.
    pub fn retry_unwritten(&mut self) {
        let retry = std::mem::take(&mut self.unwritten);
        self.handed_on.extend(retry);
    }

    /// The timer of `key` was set, cancelled or ended anew: a re-armed one kept is stale.
    pub fn forget(&mut self, key: &TimerKey) {
        self.beyond.remove(key);
    }

    /// Forgets every re-armed timer kept whose key `of` matches.
    pub fn forget_where(&mut self, of: impl Fn(&TimerKey) -> bool) {
        self.beyond.retain(|k, _| !of(k));
    }

    /// Takes the re-armed timers kept that `horizon` covers.
    pub fn take_beyond(&mut self, horizon: &Horizon) -> Vec<Timer> {
        let keys: Vec<TimerKey> = self
            .beyond
            .iter()
            .filter(|(k, t)| horizon.covers(t.due_ms, k))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| self.beyond.remove(k)).collect()
    }

    /// Per timer, the latest due time it fired at and did not move on in the book yet: a timer
    /// read from the book due at or before it already fired.
    pub fn fired_until(&self) -> FxHashMap<&TimerKey, i64> {
        let mut latest = FxHashMap::default();
        let all = self
            .emitted
            .values()
            .chain(&self.handed_on)
            .chain(self.writing.values().flatten())
            .chain(&self.unwritten)
            .chain(&self.given_up);
        for m in all {
            let at = latest.entry(&m.key).or_insert(m.scheduled_ms);
            *at = (*at).max(m.scheduled_ms);
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Idn, PersonaId};
    use crate::natives::program_timer::store::After;

    fn key(name: &str) -> TimerKey {
        TimerKey {
            account: Idn::known("default"),
            connector: Idn::known("timers"),
            persona: PersonaId(Uuid::from_u128(1)),
            name: name.into(),
        }
    }

    fn mv(name: &str, at: i64) -> Move {
        Move {
            key: key(name),
            scheduled_ms: at,
            after: After::Remove,
        }
    }

    #[test]
    fn a_firing_is_outstanding_until_its_move_committed_and_a_failed_write_comes_back() {
        let mut o = Outstanding::default();
        o.emitted(Uuid::from_u128(1), mv("a", 10), None);
        o.emitted(Uuid::from_u128(2), mv("b", 20), None);
        o.emitted(Uuid::from_u128(3), mv("a", 30), None);
        assert_eq!((o.unsettled(), o.unmoved()), (3, 0));
        assert!(o.take_handed_on().is_none(), "nothing handed on yet");
        o.settled(Uuid::from_u128(1), Settlement::Done);
        o.settled(Uuid::from_u128(2), Settlement::Redeliver);
        o.settled(Uuid::from_u128(9), Settlement::Done);
        let fired = o.fired_until();
        assert_eq!(fired[&key("a")], 30, "the latest of its firings");
        assert_eq!(
            fired[&key("b")],
            20,
            "given up: never loaded again in this run"
        );
        let moves = o.take_handed_on().unwrap();
        assert_eq!(moves, vec![mv("a", 10)]);
        let w = o.writing(moves);
        assert_eq!((o.unsettled(), o.unmoved()), (1, 2));
        assert!(o.written(w, Err(StoreError::Busy)).is_err());
        assert!(
            o.take_handed_on().is_none(),
            "a failed write waits for the next load"
        );
        o.retry_unwritten();
        let again = o.take_handed_on().unwrap();
        let w = o.writing(again);
        assert!(o.written(w, Ok(())).is_ok());
        assert_eq!(
            (o.unsettled(), o.unmoved()),
            (1, 1),
            "emitted a@30 and given-up b@20 remain"
        );
    }

    #[test]
    fn a_timer_re_armed_past_the_horizon_is_kept_until_a_load_reaches_it_or_it_is_set_anew() {
        let mut o = Outstanding::default();
        let t = |name: &str, due: i64| Timer {
            key: key(name),
            due_ms: due,
            interval_ms: Some(1_000),
            repeatable: true,
            event: Idn::known("timer"),
            arguments: Vec::new(),
            session: None,
        };
        o.emitted(Uuid::from_u128(1), mv("a", 10), Some(t("a", 5_000)));
        o.emitted(Uuid::from_u128(2), mv("b", 10), Some(t("b", 9_000)));
        o.emitted(Uuid::from_u128(3), mv("c", 10), Some(t("c", 6_000)));
        o.forget(&key("c"));
        let up_to = |due_ms| Horizon { due_ms, last: None };
        assert_eq!(o.take_beyond(&up_to(8_000)), vec![t("a", 5_000)]);
        assert!(o.take_beyond(&up_to(8_000)).is_empty(), "taken once");
        assert_eq!(o.take_beyond(&up_to(10_000)), vec![t("b", 9_000)]);
    }
}
