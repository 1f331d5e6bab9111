//! The timer service's window: the soon-due timers held in memory, by due time and by key, with
//! the horizon before which every timer of the book is held, and when to load more.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::book::Horizon;
use super::spec::{Timer, TimerKey};

/// The soon-due timers, by due time and by key.
pub struct Window {
    by_due: BTreeMap<(i64, u64), TimerKey>,
    by_key: FxHashMap<TimerKey, (u64, Timer)>,
    next_seq: u64,
    /// Every timer of the book within this is here (or fired, and not yet moved on in the
    /// book).
    horizon: Horizon,
    /// When to load the timers due from the horizon on.
    refill_at: i64,
    /// The last load stopped at its limit: load again once half of it is gone.
    low_water: Option<usize>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            by_due: BTreeMap::new(),
            by_key: FxHashMap::default(),
            next_seq: 0,
            horizon: Horizon {
                due_ms: i64::MIN,
                last: None,
            },
            refill_at: i64::MIN,
            low_water: None,
        }
    }
}

impl Window {
    /// How many timers are held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn holds(&self, key: &TimerKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn horizon(&self) -> &Horizon {
        &self.horizon
    }

    pub fn refill_at(&self) -> i64 {
        self.refill_at
    }

    /// Whether the timers from the horizon on should be loaded now.
    pub fn wants_refill(&self, now_ms: i64) -> bool {
        now_ms >= self.refill_at || self.low_water.is_some_and(|low| self.len() <= low)
    }

    /// A load reached `horizon` (with `limit` timers, when it stopped at its limit); the next
    /// is due at `refill_at`.
    pub fn reached(&mut self, horizon: Horizon, refill_at: i64, limit: Option<usize>) {
        self.horizon = horizon;
        self.refill_at = refill_at;
        self.low_water = limit.map(|n| n / 2);
    }

    pub fn remove(&mut self, key: &TimerKey) -> Option<Timer> {
        let (seq, t) = self.by_key.remove(key)?;
        self.by_due.remove(&(t.due_ms, seq));
        Some(t)
    }

    /// Removes every timer whose key `of` matches.
    pub fn remove_where(&mut self, of: impl Fn(&TimerKey) -> bool) {
        let gone: Vec<TimerKey> = self.by_key.keys().filter(|k| of(k)).cloned().collect();
        for k in &gone {
            self.remove(k);
        }
    }

    /// Holds `t` if it is within the horizon (replacing a timer of its key; one of its key held
    /// before goes either way).
    pub fn put(&mut self, t: Timer) {
        self.remove(&t.key);
        if self.horizon.covers(t.due_ms, &t.key) {
            self.next_seq += 1;
            self.by_due.insert((t.due_ms, self.next_seq), t.key.clone());
            self.by_key.insert(t.key.clone(), (self.next_seq, t));
        }
    }

    pub fn next_due(&self) -> Option<i64> {
        self.by_due.first_key_value().map(|((due, _), _)| *due)
    }

    /// Takes the timers due at `now_ms`, soonest first, at most `limit`.
    pub fn take_due(&mut self, now_ms: i64, limit: usize) -> Vec<Timer> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(((d, _), _)) = self.by_due.first_key_value() else {
                break;
            };
            if *d > now_ms {
                break;
            }
            let (_, key) = self.by_due.pop_first().expect("just seen");
            if let Some((_, t)) = self.by_key.remove(&key) {
                due.push(t);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Idn, PersonaId};

    fn timer(name: &str, due_ms: i64) -> Timer {
        Timer {
            key: TimerKey {
                account: Idn::known("default"),
                connector: Idn::known("timers"),
                persona: PersonaId(uuid::Uuid::from_u128(1)),
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

    fn up_to(due_ms: i64) -> Horizon {
        Horizon { due_ms, last: None }
    }

    #[test]
    fn a_horizon_cut_among_timers_due_together_covers_them_up_to_its_key() {
        let h = Horizon {
            due_ms: 100,
            last: Some(timer("m", 100).key),
        };
        assert!(h.covers(99, &timer("z", 0).key));
        assert!(h.covers(100, &timer("a", 0).key));
        assert!(h.covers(100, &timer("m", 0).key));
        assert!(!h.covers(100, &timer("n", 0).key));
        assert!(!h.covers(101, &timer("a", 0).key));
        assert!(!up_to(100).covers(100, &timer("a", 0).key));
    }

    #[test]
    fn holds_only_what_falls_due_before_the_horizon_and_gives_it_soonest_first() {
        let mut w = Window::default();
        w.reached(up_to(100), 50, None);
        w.put(timer("late", 150));
        w.put(timer("b", 20));
        w.put(timer("a", 10));
        w.put(timer("c", 30));
        assert_eq!(
            w.len(),
            3,
            "the one due past the horizon is left to a later load"
        );
        let names = |v: Vec<Timer>| v.into_iter().map(|t| t.key.name).collect::<Vec<_>>();
        assert_eq!(names(w.take_due(20, 10)), ["a", "b"]);
        assert_eq!(w.next_due(), Some(30));
        // Replacing by key moves it; a replacement past the horizon drops the one held.
        w.put(timer("c", 5));
        assert_eq!(names(w.take_due(5, 10)), ["c"]);
        w.put(timer("d", 40));
        w.put(timer("d", 400));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn refills_at_its_time_or_once_a_load_cut_at_its_limit_is_half_gone() {
        let mut w = Window::default();
        assert!(w.wants_refill(0), "nothing loaded yet");
        w.reached(up_to(1_000), 500, None);
        assert!(!w.wants_refill(499));
        assert!(w.wants_refill(500));
        w.reached(up_to(1_000), 1_000, Some(4));
        for (k, due) in [10, 20, 30, 40].into_iter().enumerate() {
            w.put(timer(&format!("t{k}"), due));
        }
        assert!(!w.wants_refill(0));
        w.take_due(20, 10);
        assert!(w.wants_refill(20), "two of the four left");
    }
}
