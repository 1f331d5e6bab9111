//! Where an enqueued message goes until its row's commit is known: into its lane's window,
//! behind it (the lane's spill), or only into the store (its lane is not held: dormant); once
//! committed it may be attempted, and the enqueue is answered. A message for a destination
//! disabled meanwhile settles as gone once written. A lane made while messages of it are on
//! their way to the store alone adopts them: it reads its rows until their commits are known.

use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::lanes::{Held, LaneId, Spill};
use super::sweep::Dormant;
use super::worker::Worker;
use super::{Enqueue, Enqueued, OutboxError, OutboxItem, Settled};
use crate::store::{StoreError, Written};

/// Where an enqueued message went, until its commit is known.
#[derive(Debug, Clone, Copy)]
pub(super) enum Place {
    Window(LaneId),
    Spilled(LaneId),
    /// Its lane is not held: the store keeps it until a scan (or until a lane made for it
    /// adopts it).
    Dormant,
    /// Its destination was disabled: it settles as gone once written.
    Detached,
}

pub(super) struct Committed {
    place: Place,
    seq: i64,
    item: Arc<OutboxItem>,
    result: Result<Written, StoreError>,
    answer: oneshot::Sender<Result<Enqueued, OutboxError>>,
}

impl Worker {
    pub(super) fn enqueued(&mut self, e: Enqueue) {
        let Enqueue {
            item,
            seq,
            commit,
            answer,
        } = e;
        let place = self.place(&item, seq);
        self.commits.push(
            async move {
                let result = commit.await;
                Committed {
                    place,
                    seq,
                    item,
                    result,
                    answer,
                }
            }
            .boxed(),
        );
    }

    /// Where a message enqueued goes: behind its lane's window if that is full or already
    /// spilled, else into it; nowhere in memory if its lane is not held and there is no room.
    fn place(&mut self, item: &Arc<OutboxItem>, seq: i64) -> Place {
        if self.is_disabled(&item.destination) {
            return Place::Detached;
        }
        let id = match self.lanes.find(&item.destination, &item.key) {
            Some(id) => id,
            None if self.lanes.len() < self.settings.max_lanes => {
                // While lanes wait in the store, this one may be one of them: read it first.
                let spill = self.dormant.as_ref().map(|_| Spill {
                    after: 0,
                    known: true,
                    pending: 0,
                });
                let id = self
                    .lanes
                    .add(&item.destination, &item.key, item.kind(), spill);
                self.adopt(id);
                id
            }
            None => {
                self.dormant
                    .get_or_insert_with(Dormant::default)
                    .pending
                    .insert(seq, (item.destination.clone(), item.key.clone()));
                return Place::Dormant;
            }
        };
        let window = self.settings.lane_window;
        let lane = self.lanes.get_mut(id).expect("a lane just found");
        lane.uncommitted += 1;
        match &mut lane.spill {
            None if lane.window.len() < window => {
                lane.window.push_back(Held {
                    item: item.clone(),
                    seq,
                    committed: false,
                    attempts: 0,
                    first_attempt: None,
                    policy: None,
                });
                Place::Window(id)
            }
            None => {
                lane.spill = Some(Spill {
                    after: lane.window.back().map_or(0, |h| h.seq),
                    known: false,
                    pending: 1,
                });
                Place::Spilled(id)
            }
            Some(spill) => {
                spill.pending += 1;
                Place::Spilled(id)
            }
        }
    }

    pub(super) fn committed(&mut self, c: Committed) {
        let Committed {
            place,
            seq,
            item,
            result,
            answer,
        } = c;
        let place = match place {
            Place::Dormant => self.unadopt(&item, seq),
            place => place,
        };
        let lane = match place {
            Place::Window(id) | Place::Spilled(id) => Some(id),
            Place::Dormant | Place::Detached => None,
        };
        let held = lane.and_then(|id| self.lanes.get_mut(id));
        let lane_gone = lane.is_some() && held.is_none();
        if let Some(l) = held {
            l.uncommitted = l.uncommitted.saturating_sub(1);
            if let (Place::Spilled(_), Some(spill)) = (place, l.spill.as_mut()) {
                spill.pending = spill.pending.saturating_sub(1);
            }
        }
        let written = match result {
            Ok(Written::Done) => {
                let _ = answer.send(Ok(Enqueued::Queued));
                true
            }
            Ok(Written::Duplicate) => {
                let _ = answer.send(Ok(Enqueued::AlreadyQueued));
                false
            }
            Err(e) => {
                let _ = answer.send(Err(OutboxError::Store(e)));
                false
            }
        };
        if let Some(k) = self.kinds.get_mut(item.kind()) {
            k.pending(written as i64);
        }
        // Its place in the window, unless it is not to be sent.
        let mut keep = written;
        // Its lane went with a gone destination, or it was enqueued for a disabled one: it
        // settles as gone (an enqueue that raced the answer Gone).
        if written
            && (lane_gone
                || matches!(place, Place::Detached)
                || self.is_disabled(&item.destination))
        {
            keep = false;
            self.count(item.kind(), "gone");
            self.settle(
                &item,
                Settled::Gone {
                    reason: "its destination is disabled: it answered Gone".into(),
                },
                true,
            );
        }
        match place {
            Place::Window(id) => {
                if let Some(l) = self.lanes.get_mut(id) {
                    if let Some(pos) = l.window.iter().position(|h| h.seq == seq) {
                        if keep {
                            l.window[pos].committed = true;
                        } else {
                            l.window.remove(pos);
                        }
                    }
                }
                self.lanes.poke(id);
            }
            Place::Spilled(id) => {
                if let Some(spill) = self.lanes.get_mut(id).and_then(|l| l.spill.as_mut()) {
                    spill.known |= keep;
                }
                self.lanes.poke(id);
            }
            Place::Dormant if keep => {
                self.dormant.get_or_insert_with(Dormant::default).known = true;
            }
            Place::Dormant | Place::Detached => {}
        }
    }

    /// Lane `id`, just made, adopts the messages of its name sent to the store alone whose
    /// commit is not known yet: its spill waits for them.
    pub(super) fn adopt(&mut self, id: LaneId) {
        let (Some(d), Some(lane)) = (self.dormant.as_mut(), self.lanes.get_mut(id)) else {
            return;
        };
        let seqs: Vec<i64> = d
            .pending
            .iter()
            .filter(|(_, (dest, key))| **dest == *lane.destination && **key == *lane.key)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in seqs {
            d.pending.remove(&seq);
            lane.adopted.insert(seq);
            lane.uncommitted += 1;
            if let Some(spill) = lane.spill.as_mut() {
                spill.pending += 1;
            }
        }
    }

    /// Where a message sent to the store alone is now: still dormant, or adopted by a lane
    /// (spilled), or nowhere (the lane that adopted it went with a gone destination).
    fn unadopt(&mut self, item: &OutboxItem, seq: i64) -> Place {
        if let Some(d) = self.dormant.as_mut() {
            if d.pending.remove(&seq).is_some() {
                return Place::Dormant;
            }
        }
        match self.lanes.find(&item.destination, &item.key) {
            Some(id)
                if self
                    .lanes
                    .get_mut(id)
                    .is_some_and(|l| l.adopted.remove(&seq)) =>
            {
                Place::Spilled(id)
            }
            _ => Place::Detached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Idn;
    use crate::outbound::outbox::worker::tests::worker;
    use crate::outbound::outbox::OutboxSettings;

    fn item(key: &str) -> Arc<OutboxItem> {
        Arc::new(OutboxItem::new(Idn::known("default"), "fake:x", key, "x"))
    }

    fn commit(w: &mut Worker, place: Place, seq: i64, item: Arc<OutboxItem>) {
        let (answer, _) = oneshot::channel();
        w.committed(Committed {
            place,
            seq,
            item,
            result: Ok(Written::Done),
            answer,
        });
    }

    #[tokio::test]
    async fn a_lane_made_while_its_messages_go_to_the_store_alone_waits_for_their_commit() {
        let mut w = worker(OutboxSettings {
            max_lanes: 1,
            ..OutboxSettings::default()
        });
        let a = w.place(&item("a"), 1);
        let Place::Window(lane_a) = a else {
            panic!("{a:?}")
        };
        // No room for b's lane: b1 goes to the store alone.
        let b1 = item("b");
        assert!(matches!(w.place(&b1, 2), Place::Dormant));
        // a's lane goes; b2 makes b's lane, which reads from the start and adopts b1.
        w.lanes.remove(lane_a);
        let Place::Spilled(lane_b) = w.place(&item("b"), 3) else {
            panic!("b2 waits behind what the store may hold")
        };
        let lane = w.lanes.get(lane_b).unwrap();
        assert_eq!(lane.spill.map(|s| (s.after, s.pending)), Some((0, 2)));
        assert_eq!((lane.uncommitted, lane.adopted.len()), (2, 1));
        assert!(w.dormant.as_ref().unwrap().pending.is_empty());
        // b1 commits: b's lane knows there is a row to read.
        if let Some(s) = w.lanes.get_mut(lane_b).unwrap().spill.as_mut() {
            s.known = false;
        }
        commit(&mut w, Place::Dormant, 2, b1);
        let lane = w.lanes.get(lane_b).unwrap();
        let spill = lane.spill.unwrap();
        assert_eq!((spill.pending, spill.known), (1, true));
        assert_eq!((lane.uncommitted, lane.adopted.len()), (1, 0));
    }
}
