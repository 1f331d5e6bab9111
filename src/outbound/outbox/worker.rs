//! The outbox's worker: one task owning the lanes. It routes each enqueued message to its lane
//! (`intake.rs`: in memory while the lane's window has room, else left in the store), starts
//! the attempts of lanes whose head committed (at most `max_in_flight`) and settles them
//! (`attempts.rs`), deletes settled rows in batches, and reads what waits in the store: a lane's
//! next page once its window is done, and lanes not held at all (at start, or past
//! `max_lanes`) by scanning the store's lanes in order (`sweep.rs`, with withdrawals and the
//! purge of a gone destination).
//!
//! Every row is in exactly one of three places: its lane's window, its lane's spill (rows after
//! the window, read when the window is done), or a lane not held, while the worker is
//! *dormant* (it scans until a clean pass finds every lane held). Enqueues whose commit is not
//! known yet are counted where they went, so a read that could not see them does not end a
//! spill or a dormant state.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use uuid::Uuid;

use super::attempts::Done;
use super::intake::Committed;
use super::kind::Kind;
use super::lanes::{Head, Held, LaneId, Lanes};
use super::sweep::Dormant;
use super::{Destinations, Disabled, OutboxItem, OutboxSettings, Request};
use crate::dead_letter::DeadLetterStore;
use crate::domain::Idn;
use crate::store::outbox::{LaneRow, OutboxRow};
use crate::store::{Store, StoreError};
use crate::telemetry::throttle::Throttle;

/// Reads of the store running at once (lane pages and scans; they share one connection).
pub(super) const READS_AT_ONCE: usize = 4;
/// The pause before a failed read is tried again.
pub(super) const READ_AGAIN: Duration = Duration::from_secs(1);

/// What the worker is built from.
pub(super) struct Parts {
    pub store: Store,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub destinations: Destinations,
    pub settings: OutboxSettings,
    pub disabled: Disabled,
    /// Rows per kind at start.
    pub counts: Vec<(String, u64)>,
}

pub(super) enum ReadDone {
    Lane {
        ticket: u64,
        lane: LaneId,
        limit: usize,
        rows: Result<Vec<OutboxRow>, StoreError>,
    },
    Scan {
        ticket: u64,
        limit: usize,
        rows: Result<Vec<LaneRow>, StoreError>,
    },
    /// The pause after a failed scan is over.
    ScanAgain,
}

pub(super) struct Worker {
    pub store: Store,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub settings: OutboxSettings,
    pub kinds: HashMap<String, Kind>,
    pub disabled: Disabled,
    pub lanes: Lanes,
    pub dormant: Option<Dormant>,
    pub commits: FuturesUnordered<BoxFuture<'static, Committed>>,
    pub attempts: FuturesUnordered<BoxFuture<'static, Done>>,
    pub reads: FuturesUnordered<BoxFuture<'static, ReadDone>>,
    /// Tickets of the reads running (lane pages and scans), numbered in the order they began.
    pub reading: BTreeSet<u64>,
    next_ticket: u64,
    /// Lanes waiting for a read slot.
    pub to_read: VecDeque<LaneId>,
    pub timers: DelayQueue<LaneId>,
    pub in_flight: usize,
    /// Settled messages whose row is being deleted, or was while a read still running began: a
    /// read that finds one skips it.
    pub deleting: HashSet<Uuid>,
    /// Deleted rows, forgotten once every read that began before the delete committed (a
    /// ticket below this one) is done.
    forget: VecDeque<(u64, Vec<Uuid>)>,
    pub to_delete: Vec<Uuid>,
    deletes: FuturesUnordered<BoxFuture<'static, Vec<Uuid>>>,
}

/// Runs a blocking store read off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt(format!("outbox read task: {e}")))?
}

/// Unix milliseconds now.
pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The message of a stored row.
pub(super) fn item_of(r: &OutboxRow) -> Result<OutboxItem, String> {
    let account = Idn::parse("account", &r.account).map_err(|e| e.reason.to_string())?;
    Ok(OutboxItem {
        id: r.id,
        account,
        destination: r.destination.clone(),
        key: r.key.clone(),
        payload: Bytes::from(r.payload.clone()),
        meta: Bytes::from(r.meta.clone()),
        created_ms: r.created_ms,
    })
}

/// A stored row, held: its attempts and the time of its first, as last written.
fn held_of(r: &OutboxRow) -> Result<Held, String> {
    let first_attempt = r.first_attempt_ms.map(|ms| {
        let ago = Duration::from_millis(now_ms().saturating_sub(ms).max(0) as u64);
        let now = Instant::now();
        (now.checked_sub(ago).unwrap_or(now), ms)
    });
    Ok(Held {
        item: Arc::new(item_of(r)?),
        seq: r.seq,
        committed: true,
        attempts: r.attempts,
        first_attempt,
        policy: None,
    })
}

/// Logs a failure of the store or of a row (at most once per interval).
pub(super) fn warn(what: &str, error: &dyn std::fmt::Display) {
    static LOG: Throttle = Throttle::new();
    if let Some(suppressed) = LOG.allow(Throttle::EVERY) {
        tracing::warn!(error = %error, suppressed, "outbox: {what}");
    }
}

impl Worker {
    /// Builds the worker and runs it on its own task.
    pub fn spawn(parts: Parts, rx: mpsc::Receiver<Request>) {
        tokio::spawn(Self::new(parts).run(rx));
    }

    pub fn new(parts: Parts) -> Self {
        let Parts {
            store,
            dead_letters,
            destinations,
            settings,
            disabled,
            counts,
        } = parts;
        let settings = OutboxSettings {
            max_in_flight: settings.max_in_flight.max(1),
            max_lanes: settings.max_lanes.max(1),
            lane_window: settings.lane_window.max(1),
            queue: settings.queue.max(1),
            page: settings.page.max(1),
            ..settings
        };
        let mut stored = 0;
        let mut kinds = HashMap::new();
        for (kind, destination) in destinations.by_kind {
            let n = counts
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| *n);
            stored += n;
            kinds.insert(kind.clone(), Kind::new(&kind, destination, n));
        }
        let unserved: u64 = counts
            .iter()
            .filter(|(k, _)| !kinds.contains_key(k))
            .map(|(_, n)| n)
            .sum();
        if unserved > 0 {
            tracing::warn!(
                messages = unserved,
                "outbox: messages for destination kinds nothing serves are kept in the store"
            );
        }
        Worker {
            store,
            dead_letters,
            settings,
            kinds,
            disabled,
            lanes: Lanes::default(),
            // What the store holds is replayed: every lane of it found by scanning.
            dormant: (stored > 0).then(Dormant::with_rows),
            commits: FuturesUnordered::new(),
            attempts: FuturesUnordered::new(),
            reads: FuturesUnordered::new(),
            reading: BTreeSet::new(),
            next_ticket: 0,
            forget: VecDeque::new(),
            to_read: VecDeque::new(),
            timers: DelayQueue::new(),
            in_flight: 0,
            deleting: HashSet::new(),
            to_delete: Vec::new(),
            deletes: FuturesUnordered::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        loop {
            self.schedule();
            self.scan();
            self.flush_deletes();
            tokio::select! {
                request = rx.recv() => match request {
                    None => break,
                    Some(Request::Enqueued(e)) => self.enqueued(e),
                    Some(Request::Withdraw(which, answer)) => {
                        let r = self.withdraw(which).await;
                        let _ = answer.send(r);
                    }
                },
                Some(c) = self.commits.next() => self.committed(c),
                Some(d) = self.attempts.next() => self.attempted(d).await,
                Some(r) = self.reads.next() => self.read(r),
                Some(t) = self.timers.next() => self.woken(t.into_inner()),
                Some(ids) = self.deletes.next() => {
                    self.forget.push_back((self.next_ticket, ids));
                    self.forget_deleted();
                }
            }
        }
        // What settled is deleted before the worker goes; the rest stays for the next start.
        self.flush_deletes();
        while self.deletes.next().await.is_some() {}
        tracing::debug!("outbox worker stopped");
    }

    pub fn is_disabled(&self, destination: &str) -> bool {
        self.disabled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(destination)
    }

    /// Looks at the lanes poked: starts attempts (while below `max_in_flight`), reads the next
    /// page of a lane whose window is done, lets an idle lane go.
    fn schedule(&mut self) {
        while let Some(id) = self.lanes.next_ready() {
            let lane = self.lanes.get(id).expect("a ready lane is held");
            if lane.head != Head::Idle || lane.loading {
                continue;
            }
            let (spill, idle) = (lane.spill, lane.idle());
            match lane.window.front().map(|h| h.committed) {
                None => {
                    match spill {
                        Some(spill) if spill.known => self.load(id),
                        None if idle => {
                            self.lanes.remove(id);
                        }
                        _ => {}
                    }
                    continue;
                }
                Some(false) => continue,
                Some(true) => {}
            }
            if self.in_flight >= self.settings.max_in_flight {
                self.lanes.put_back(id);
                break;
            }
            self.attempt(id);
        }
    }

    /// Reads the next page of lane `id` (when a read slot is free; else it waits its turn).
    fn load(&mut self, id: LaneId) {
        if self.reading.len() >= READS_AT_ONCE {
            if !self.to_read.contains(&id) {
                self.to_read.push_back(id);
            }
            return;
        }
        let limit = self.settings.lane_window;
        let lane = self.lanes.get_mut(id).expect("a lane to load is held");
        let Some(spill) = lane.spill.as_mut() else {
            return;
        };
        spill.known = false;
        lane.loading = true;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.reading.insert(ticket);
        let (store, destination, key, after) = (
            self.store.clone(),
            lane.destination.clone(),
            lane.key.clone(),
            spill.after,
        );
        self.reads.push(
            async move {
                let rows =
                    blocking(move || store.outbox_rows(&destination, Some(&key), after, limit))
                        .await;
                ReadDone::Lane {
                    ticket,
                    lane: id,
                    limit,
                    rows,
                }
            }
            .boxed(),
        );
    }

    fn read(&mut self, done: ReadDone) {
        let ticket = match done {
            ReadDone::Lane {
                ticket,
                lane,
                limit,
                rows,
            } => {
                self.lane_read(lane, limit, rows);
                ticket
            }
            ReadDone::Scan {
                ticket,
                limit,
                rows,
            } => {
                self.scanned(limit, rows);
                ticket
            }
            ReadDone::ScanAgain => {
                if let Some(d) = self.dormant.as_mut() {
                    d.scanning = false;
                    d.known = true;
                }
                return;
            }
        };
        // Only now, its rows judged against `deleting`, is the read done.
        self.reading.remove(&ticket);
        self.forget_deleted();
        while let Some(id) = self.to_read.pop_front() {
            if self.lanes.get(id).is_some() {
                self.lanes.poke(id);
                break;
            }
        }
    }

    fn lane_read(&mut self, id: LaneId, limit: usize, rows: Result<Vec<OutboxRow>, StoreError>) {
        let Some(lane) = self.lanes.get_mut(id) else {
            return;
        };
        lane.loading = false;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                warn("reading a lane failed", &e);
                if let Some(spill) = lane.spill.as_mut() {
                    spill.known = true;
                }
                lane.head = Head::Waiting(self.timers.insert(id, READ_AGAIN));
                return;
            }
        };
        let full = rows.len() >= limit;
        let mut unreadable = Vec::new();
        let Some(spill) = lane.spill.as_mut() else {
            return;
        };
        for r in &rows {
            spill.after = spill.after.max(r.seq);
            if self.deleting.contains(&r.id) || lane.window.iter().any(|h| h.item.id == r.id) {
                continue;
            }
            match held_of(r) {
                Ok(h) => lane.window.push_back(h),
                Err(e) => {
                    warn("a stored message does not decode; removed", &e);
                    unreadable.push(r.clone());
                }
            }
        }
        if full {
            spill.known = true;
        } else if !spill.known && spill.pending == 0 {
            lane.spill = None;
        }
        self.lanes.poke(id);
        for r in &unreadable {
            self.unreadable(r, true);
        }
    }

    /// A stored row that does not decode (an account that is not an identifier): it leaves
    /// uncounted, nobody told (there is nobody to tell); its row is deleted when `delete`.
    pub fn unreadable(&mut self, r: &OutboxRow, delete: bool) {
        if delete {
            self.deleting.insert(r.id);
            self.to_delete.push(r.id);
        }
        if let Some(k) = self.kinds.get_mut(&r.kind) {
            k.pending(-1);
        }
    }

    /// Forgets the deleted rows no running read can have found.
    fn forget_deleted(&mut self) {
        let oldest = self.reading.first().copied().unwrap_or(u64::MAX);
        while self.forget.front().is_some_and(|(bar, _)| *bar <= oldest) {
            let (_, ids) = self.forget.pop_front().expect("a front");
            for id in ids {
                self.deleting.remove(&id);
            }
        }
    }

    /// Rows deleted already (withdrawn, purged): a read begun before must not bring them back.
    pub fn deleted(&mut self, ids: Vec<Uuid>) {
        self.deleting.extend(ids.iter().copied());
        self.forget.push_back((self.next_ticket, ids));
        self.forget_deleted();
    }

    /// A ticket for a read beginning now.
    pub fn ticket(&mut self) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.reading.insert(ticket);
        ticket
    }

    /// Deletes the rows settled since the last batch, in one write.
    fn flush_deletes(&mut self) {
        if self.to_delete.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.to_delete);
        let store = self.store.clone();
        self.deletes.push(
            async move {
                if let Err(e) = store.outbox_delete(ids.clone()).await {
                    warn(
                        "deleting settled messages failed (they are sent again at the next start)",
                        &e,
                    );
                }
                ids
            }
            .boxed(),
        );
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dead_letter::memory::MemoryDeadLetters;
    use crate::outbound::outbox::{Attempt, Destination, OutboxItem, Settled};

    struct Nowhere;

    impl Destination for Nowhere {
        fn deliver(&self, _: &OutboxItem, _: u32) -> BoxFuture<'static, Attempt> {
            std::future::pending().boxed()
        }

        fn settled(&self, _: &OutboxItem, _: &Settled) {}
    }

    /// A worker (not running) on a new store, serving kind `fake`.
    pub(in crate::outbound::outbox) fn worker(settings: OutboxSettings) -> Worker {
        let dir = std::env::temp_dir().join(format!("sb-outbox-w-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Worker::new(Parts {
            store: Store::open(&dir.join("test.db"), 64, 5000).unwrap(),
            dead_letters: Arc::new(MemoryDeadLetters::new(10)),
            destinations: Destinations::new().register("fake", Arc::new(Nowhere)),
            settings,
            disabled: Disabled::default(),
            counts: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_deleted_row_is_forgotten_only_once_every_read_begun_before_is_done() {
        let mut w = worker(OutboxSettings::default());
        let (early, gone) = (w.ticket(), Uuid::from_u128(1));
        w.deleted(vec![gone]);
        let late = w.ticket();
        assert!(
            w.deleting.contains(&gone),
            "the early read may still bring it back"
        );
        w.read(ReadDone::Lane {
            ticket: early,
            lane: 42,
            limit: 1,
            rows: Ok(Vec::new()),
        });
        assert!(
            !w.deleting.contains(&gone),
            "a read begun after cannot find it"
        );
        assert_eq!(w.reading.iter().copied().collect::<Vec<_>>(), [late]);
    }
}
