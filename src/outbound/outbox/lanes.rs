//! The lanes the worker holds in memory: per (destination, key), a window of messages in
//! `seq` order (the head is the one attempted), and whether more wait in the store behind
//! them (`Spill`). A lane has an id for its lifetime: work started for a lane that was removed
//! meanwhile (a read, a commit) finds no lane under that id and is not mistaken for a later one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::time::delay_queue;

use super::{OutboxItem, RetryPolicy};

pub(super) type LaneId = u64;

/// A message held in a lane.
pub(super) struct Held {
    pub item: Arc<OutboxItem>,
    pub seq: i64,
    /// Its row committed: it may be attempted.
    pub committed: bool,
    pub attempts: u32,
    /// When its first attempt was (tokio's clock, Unix milliseconds).
    pub first_attempt: Option<(Instant, i64)>,
    pub policy: Option<RetryPolicy>,
}

/// What the head of a lane is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Head {
    Idle,
    InFlight,
    /// Waiting for a retry (or for a failed read to be tried again).
    Waiting(delay_queue::Key),
}

/// Rows of a lane in the store past its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Spill {
    /// Rows after this `seq` are not in the window.
    pub after: i64,
    /// There may be committed rows to read (set by a commit, a full page, a scan).
    pub known: bool,
    /// Messages sent to the store behind the window whose commit is not known yet.
    pub pending: u32,
}

pub(super) struct Lane {
    pub destination: Arc<str>,
    pub key: Arc<str>,
    pub kind: Arc<str>,
    pub window: VecDeque<Held>,
    pub head: Head,
    pub spill: Option<Spill>,
    pub loading: bool,
    /// Enqueues routed to this lane (window or spill) whose commit is not known yet.
    pub uncommitted: u32,
    /// Of those, the ones sent to the store alone before the lane was made (by `seq`).
    pub adopted: HashSet<i64>,
    /// In the ready queue.
    queued: bool,
}

impl Lane {
    /// Nothing left to do or to wait for: the lane can go.
    pub fn idle(&self) -> bool {
        self.window.is_empty()
            && self.head == Head::Idle
            && self.spill.is_none()
            && !self.loading
            && self.uncommitted == 0
    }

    /// The position of the message `id` in the window.
    pub fn position(&self, id: uuid::Uuid) -> Option<usize> {
        self.window.iter().position(|h| h.item.id == id)
    }
}

/// Every lane held, by id and by name, and the lanes to look at next.
#[derive(Default)]
pub(super) struct Lanes {
    by_id: HashMap<LaneId, Lane>,
    /// By destination, then key.
    by_name: HashMap<Arc<str>, HashMap<Arc<str>, LaneId>>,
    ready: VecDeque<LaneId>,
    next: LaneId,
}

impl Lanes {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn find(&self, destination: &str, key: &str) -> Option<LaneId> {
        self.by_name.get(destination)?.get(key).copied()
    }

    pub fn get(&self, id: LaneId) -> Option<&Lane> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: LaneId) -> Option<&mut Lane> {
        self.by_id.get_mut(&id)
    }

    /// A new lane, empty but for `spill`, queued to be looked at.
    pub fn add(
        &mut self,
        destination: &str,
        key: &str,
        kind: &str,
        spill: Option<Spill>,
    ) -> LaneId {
        self.next += 1;
        let id = self.next;
        let destination: Arc<str> = Arc::from(destination);
        let key: Arc<str> = Arc::from(key);
        self.by_name
            .entry(destination.clone())
            .or_default()
            .insert(key.clone(), id);
        self.by_id.insert(
            id,
            Lane {
                destination,
                key,
                kind: Arc::from(kind),
                window: VecDeque::new(),
                head: Head::Idle,
                spill,
                loading: false,
                uncommitted: 0,
                adopted: HashSet::new(),
                queued: false,
            },
        );
        self.poke(id);
        id
    }

    pub fn remove(&mut self, id: LaneId) -> Option<Lane> {
        let lane = self.by_id.remove(&id)?;
        if let Some(keys) = self.by_name.get_mut(&lane.destination) {
            keys.remove(&lane.key);
            if keys.is_empty() {
                self.by_name.remove(&lane.destination);
            }
        }
        Some(lane)
    }

    /// The lanes of `destination`.
    pub fn of_destination(&self, destination: &str) -> Vec<LaneId> {
        self.by_name
            .get(destination)
            .map(|keys| keys.values().copied().collect())
            .unwrap_or_default()
    }

    /// Every lane, for a look at each (withdrawals).
    pub fn ids(&self) -> Vec<LaneId> {
        self.by_id.keys().copied().collect()
    }

    /// Queues `id` to be looked at (once, however often poked).
    pub fn poke(&mut self, id: LaneId) {
        if let Some(lane) = self.by_id.get_mut(&id) {
            if !lane.queued {
                lane.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// The next lane to look at.
    pub fn next_ready(&mut self) -> Option<LaneId> {
        while let Some(id) = self.ready.pop_front() {
            if let Some(lane) = self.by_id.get_mut(&id) {
                lane.queued = false;
                return Some(id);
            }
        }
        None
    }

    /// Puts `id` back at the front (looked at first next time).
    pub fn put_back(&mut self, id: LaneId) {
        if let Some(lane) = self.by_id.get_mut(&id) {
            lane.queued = true;
            self.ready.push_front(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_is_looked_at_once_however_often_poked_and_not_after_it_went() {
        let mut lanes = Lanes::default();
        let a = lanes.add("api:x", "p1", "api", None);
        let b = lanes.add("api:x", "p2", "api", None);
        lanes.poke(a);
        lanes.poke(b);
        assert_eq!(lanes.find("api:x", "p2"), Some(b));
        assert_eq!(lanes.next_ready(), Some(a));
        lanes.poke(a);
        lanes.remove(b);
        assert_eq!(lanes.find("api:x", "p2"), None);
        assert_eq!(lanes.next_ready(), Some(a));
        assert_eq!(lanes.next_ready(), None);
        let c = lanes.add("api:x", "p2", "api", None);
        assert_ne!(c, b, "a lane made again has a new id");
        assert!(lanes.get(c).unwrap().idle());
        assert_eq!(lanes.of_destination("api:x").len(), 2);
    }
}
