//! An in-memory dead-letter store, bounded: past its capacity the oldest letter is evicted and
//! counted (`evicted()`), never dropped silently. The daemon's durable store replaces it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

use super::{DeadLetter, DeadLetterStore, ReadError};
use crate::domain::Idn;
use crate::telemetry::throttle::Throttle;

pub struct MemoryDeadLetters {
    capacity: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
    evicted: AtomicU64,
}

impl MemoryDeadLetters {
    pub fn new(capacity: usize) -> Self {
        MemoryDeadLetters {
            capacity: capacity.max(1),
            letters: Mutex::new(VecDeque::new()),
            evicted: AtomicU64::new(0),
        }
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.letters.lock().expect("dead letters lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every letter, oldest first.
    pub fn all(&self) -> Vec<DeadLetter> {
        self.letters
            .lock()
            .expect("dead letters lock")
            .iter()
            .cloned()
            .collect()
    }
}

impl DeadLetterStore for MemoryDeadLetters {
    fn record(&self, letter: DeadLetter) {
        let mut l = self.letters.lock().expect("dead letters lock");
        if l.len() >= self.capacity {
            l.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            static EVICTED: Throttle = Throttle::new();
            if let Some(suppressed) = EVICTED.allow(Throttle::EVERY) {
                tracing::warn!(
                    capacity = self.capacity,
                    suppressed,
                    "dead-letter store full: oldest evicted"
                );
            }
        }
        l.push_back(letter);
    }

    fn list(&self, account: &Idn, limit: usize) -> Result<Vec<DeadLetter>, ReadError> {
        let l = self.letters.lock().expect("dead letters lock");
        Ok(l.iter()
            .rev()
            .filter(|d| &d.account == account)
            .take(limit)
            .cloned()
            .collect())
    }

    fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError> {
        let l = self.letters.lock().expect("dead letters lock");
        Ok(l.iter().find(|d| d.id == id).cloned())
    }

    fn remove(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError> {
        let mut l = self.letters.lock().expect("dead letters lock");
        Ok(l.iter()
            .position(|d| d.id == id)
            .and_then(|pos| l.remove(pos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetterReason;
    use crate::domain::Command;

    #[test]
    fn bounded_with_counted_eviction() {
        let s = MemoryDeadLetters::new(2);
        let a = Idn::known("default");
        let mk = || {
            DeadLetter::command(
                DeadLetterReason::CommandRefused,
                "x".into(),
                Command::new(
                    a.clone(),
                    Idn::known("http"),
                    Idn::known("c"),
                    Idn::known("send_request"),
                ),
                None,
            )
        };
        let first = mk();
        let first_id = first.id;
        s.record(first);
        s.record(mk());
        s.record(mk());
        assert_eq!(s.len(), 2);
        assert_eq!(s.evicted(), 1);
        assert!(s.get(first_id).unwrap().is_none());
        let newest = s.list(&a, 1).unwrap();
        assert_eq!(newest.len(), 1);
        assert!(s.remove(newest[0].id).unwrap().is_some());
        assert_eq!(s.len(), 1);
    }
}
