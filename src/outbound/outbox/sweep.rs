//! The worker's passes over the store: scanning for lanes it does not hold (at start, and past
//! `max_lanes`), withdrawing messages, and purging a gone destination. A withdrawal or a purge
//! holds the worker until its rows are gone (no attempt starts meanwhile), so a message is
//! sent or taken out, never both; attempts already in flight are left to end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::FutureExt;
use uuid::Uuid;

use super::lanes::{Head, Spill};
use super::worker::{blocking, item_of, warn, ReadDone, Worker, READS_AT_ONCE, READ_AGAIN};
use super::{OutboxError, OutboxItem, Settled, Withdraw};
use crate::store::outbox::{LaneRow, OutboxRow};
use crate::store::StoreError;

/// Lanes with rows in the store that are not held: scanned for in (destination, key) order.
#[derive(Debug, Default)]
pub(super) struct Dormant {
    /// Where the pass under way is; `None` between passes.
    pub cursor: Option<(String, String)>,
    /// Rows may have been written since the pass began (or a pass left lanes unplaced).
    pub known: bool,
    /// Enqueues sent to the store alone whose commit is not known yet: their lanes by `seq`.
    pub pending: HashMap<i64, (String, String)>,
    /// The pass under way placed every lane it found.
    pub clean: bool,
    pub scanning: bool,
}

impl Worker {
    /// Scans for lanes not held while there is room for them (one read at a time).
    pub(super) fn scan(&mut self) {
        let room = self.settings.max_lanes.saturating_sub(self.lanes.len());
        let Some(d) = self.dormant.as_mut() else {
            return;
        };
        if d.scanning || room == 0 || self.reading.len() >= READS_AT_ONCE {
            return;
        }
        if d.cursor.is_none() {
            if !d.known {
                if d.pending.is_empty() {
                    // The last pass was clean and what was written since did not commit.
                    self.dormant = None;
                }
                return;
            }
            d.clean = true;
            d.known = false;
        }
        d.scanning = true;
        let limit = room.min(self.settings.page);
        let cursor = d.cursor.clone();
        let ticket = self.ticket();
        let store = self.store.clone();
        self.reads.push(
            async move {
                let rows = blocking(move || {
                    store.outbox_lanes(
                        cursor.as_ref().map(|(d, k)| (d.as_str(), k.as_str())),
                        limit,
                    )
                })
                .await;
                ReadDone::Scan {
                    ticket,
                    limit,
                    rows,
                }
            }
            .boxed(),
        );
    }

    /// Holds the lanes a scan found (those of served, enabled kinds, while there is room).
    pub(super) fn scanned(&mut self, limit: usize, rows: Result<Vec<LaneRow>, StoreError>) {
        let found = match rows {
            Ok(found) => found,
            Err(e) => {
                warn("scanning for queued messages failed", &e);
                // `scanning` stays set until the pause is over.
                self.reads.push(
                    tokio::time::sleep(READ_AGAIN)
                        .map(|()| ReadDone::ScanAgain)
                        .boxed(),
                );
                return;
            }
        };
        let mut unplaced = false;
        for l in &found {
            if self.lanes.find(&l.destination, &l.key).is_some()
                || !self.kinds.contains_key(&l.kind)
                || self.is_disabled(&l.destination)
            {
                continue;
            }
            if self.lanes.len() >= self.settings.max_lanes {
                unplaced = true;
                continue;
            }
            let spill = Spill {
                after: 0,
                known: true,
                pending: 0,
            };
            let id = self.lanes.add(&l.destination, &l.key, &l.kind, Some(spill));
            self.adopt(id);
        }
        let Some(d) = self.dormant.as_mut() else {
            return;
        };
        d.scanning = false;
        d.clean &= !unplaced;
        d.cursor = found.last().map(|l| (l.destination.clone(), l.key.clone()));
        if found.len() < limit {
            // The pass is over.
            d.cursor = None;
            if d.clean && !d.known && d.pending.is_empty() {
                self.dormant = None;
            } else if !d.clean {
                d.known = true;
            }
        }
    }

    /// Ids of the messages with an attempt in flight.
    fn in_flight_ids(&self) -> HashSet<Uuid> {
        self.lanes
            .ids()
            .into_iter()
            .filter_map(|id| {
                let lane = self.lanes.get(id)?;
                (lane.head == Head::InFlight)
                    .then(|| lane.window.front().map(|h| h.item.id))
                    .flatten()
            })
            .collect()
    }

    pub(super) async fn withdraw(&mut self, which: Withdraw) -> Result<usize, OutboxError> {
        let busy = self.in_flight_ids();
        let page = self.settings.page;
        let mut total = 0;
        match which {
            Withdraw::Ids(ids) => {
                for chunk in ids.chunks(page) {
                    let ids = chunk
                        .iter()
                        .filter(|id| !busy.contains(id) && !self.deleting.contains(id))
                        .copied()
                        .collect();
                    total += self.take_withdrawn(ids).await?;
                }
            }
            Withdraw::Matching {
                destination,
                key,
                pick,
            } => {
                // Held and not committed yet: their rows are written before this withdrawal's
                // delete (the writer's order), which a read now would not see.
                let mut ids = Vec::new();
                for id in self.lanes.of_destination(&destination) {
                    let lane = self.lanes.get(id).expect("a lane of the destination");
                    if key.as_deref().is_some_and(|k| k != &*lane.key) {
                        continue;
                    }
                    ids.extend(
                        lane.window
                            .iter()
                            .filter(|h| !h.committed && pick(&h.item))
                            .map(|h| h.item.id),
                    );
                }
                total += self.take_withdrawn(ids).await?;
                let mut after = 0;
                loop {
                    let rows = self.page_of(&destination, key.clone(), after).await?;
                    let full = rows.len() >= page;
                    after = rows.last().map_or(after, |r| r.seq);
                    let ids = rows
                        .iter()
                        .filter(|r| !busy.contains(&r.id) && !self.deleting.contains(&r.id))
                        .filter(|r| item_of(r).is_ok_and(|item| pick(&item)))
                        .map(|r| r.id)
                        .collect();
                    total += self.take_withdrawn(ids).await?;
                    if !full {
                        break;
                    }
                }
            }
        }
        Ok(total)
    }

    /// A page of `destination`'s rows after `after` (read without holding the worker).
    fn page_of(
        &self,
        destination: &str,
        key: Option<String>,
        after: i64,
    ) -> impl std::future::Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send + 'static
    {
        let (store, destination, page) = (
            self.store.clone(),
            destination.to_owned(),
            self.settings.page,
        );
        blocking(move || store.outbox_rows(&destination, key.as_deref(), after, page))
    }

    /// Deletes the rows of `ids` that are there and takes them out of their lanes: withdrawn.
    async fn take_withdrawn(&mut self, ids: Vec<Uuid>) -> Result<usize, OutboxError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let rows = self.store.outbox_take(ids).await?;
        self.deleted(rows.iter().map(|r| r.id).collect());
        for r in &rows {
            let Some(item) = self.unhold(r).or_else(|| item_of(r).ok().map(Arc::new)) else {
                self.unreadable(r, false);
                continue;
            };
            self.count(item.kind(), "withdrawn");
            self.settle(&item, Settled::Withdrawn, false);
        }
        Ok(rows.len())
    }

    /// Takes the message of `r` out of its lane, if held (its retry's pause cancelled).
    fn unhold(&mut self, r: &OutboxRow) -> Option<Arc<OutboxItem>> {
        let id = self.lanes.find(&r.destination, &r.key)?;
        let lane = self.lanes.get_mut(id)?;
        let pos = lane.position(r.id)?;
        let held = lane.window.remove(pos)?;
        if pos == 0 {
            if let Head::Waiting(key) = std::mem::replace(&mut lane.head, Head::Idle) {
                self.timers.remove(&key);
            }
        }
        self.lanes.poke(id);
        Some(held.item)
    }

    /// `destination` answered Gone: its lanes go, and every message stored for it settles as
    /// gone (but those in flight, which settle when their attempt ends, and those not written
    /// yet, which settle when they are).
    pub(super) async fn purge(&mut self, destination: &str) {
        let mut busy = HashSet::new();
        for id in self.lanes.of_destination(destination) {
            let Some(lane) = self.lanes.remove(id) else {
                continue;
            };
            match lane.head {
                Head::InFlight => busy.extend(lane.window.front().map(|h| h.item.id)),
                Head::Waiting(key) => {
                    self.timers.remove(&key);
                }
                Head::Idle => {}
            }
        }
        let reason = "queued for a destination that answered Gone";
        let mut after = 0;
        loop {
            let rows = match self.page_of(destination, None, after).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn("reading a gone destination's messages failed", &e);
                    return;
                }
            };
            let full = rows.len() >= self.settings.page;
            after = rows.last().map_or(after, |r| r.seq);
            let ids: Vec<Uuid> = rows
                .iter()
                .filter(|r| !busy.contains(&r.id) && !self.deleting.contains(&r.id))
                .map(|r| r.id)
                .collect();
            let taken = if ids.is_empty() {
                Vec::new()
            } else {
                match self.store.outbox_take(ids).await {
                    Ok(taken) => taken,
                    Err(e) => {
                        warn("removing a gone destination's messages failed", &e);
                        return;
                    }
                }
            };
            self.deleted(taken.iter().map(|r| r.id).collect());
            for r in &taken {
                match item_of(r) {
                    Ok(item) => {
                        self.count(item.kind(), "gone");
                        self.settle(
                            &item,
                            Settled::Gone {
                                reason: reason.into(),
                            },
                            false,
                        );
                    }
                    Err(e) => {
                        warn("a stored message does not decode; removed", &e);
                        self.unreadable(r, false);
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
}

impl Dormant {
    /// With rows to find (at start, when the store holds some).
    pub(super) fn with_rows() -> Self {
        Dormant {
            known: true,
            ..Dormant::default()
        }
    }
}
