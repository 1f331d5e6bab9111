//! Per-key order for asynchronous work: jobs submitted under one key (a connector and a
//! persona: one conversation) run one after the other in the order submitted; different keys
//! run concurrently. A lane's task exists while it has work and ends when idle. Each lane holds
//! at most [`LANE_CAPACITY`] jobs; past it a submit is refused (the caller answers busy).

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use tokio::sync::mpsc;

use crate::telemetry::queue;

/// Jobs one lane holds at most.
pub const LANE_CAPACITY: usize = 256;

/// A unit of work.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The lanes, by key; each an observed queue of one name (`switchboard_queue_depth{queue}`).
pub struct Lanes<K: Eq + Hash + Clone + Send + Sync + 'static> {
    lanes: Arc<DashMap<K, mpsc::Sender<Job>, FxBuildHasher>>,
    name: &'static str,
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Lanes<K> {
    /// Lanes whose queues are observed under `name` (a [`queue::names`] constant).
    pub fn new(name: &'static str) -> Self {
        Lanes {
            lanes: Arc::default(),
            name,
        }
    }
}

/// The lane of the key was full.
#[derive(Debug, PartialEq, Eq)]
pub struct LaneFull;

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Lanes<K> {
    /// Runs `job` after every job submitted under `key` before it. Needs a tokio runtime.
    pub fn submit(&self, key: K, job: Job) -> Result<(), LaneFull> {
        // Sent under the map's entry lock: a lane leaves the map only under it too, when it is
        // empty, so nothing is sent to a lane that has left (see `open`).
        let lane = self
            .lanes
            .entry(key.clone())
            .or_insert_with(|| self.open(key));
        lane.try_send(job).map_err(|_| {
            queue::full(self.name);
            LaneFull
        })
    }

    /// Lanes with work.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    fn open(&self, key: K) -> mpsc::Sender<Job> {
        let (tx, mut rx) = queue::bounded::<Job>(self.name, LANE_CAPACITY);
        let lanes = self.lanes.clone();
        // Weak: the map's sender is what keeps the lane open.
        let mine = tx.downgrade();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                job.await;
                while let Ok(job) = rx.try_recv() {
                    job.await;
                }
                // Idle: leave, unless a job came in meanwhile (checked under the entry's lock,
                // which every send holds).
                let left = lanes.remove_if(&key, |_, t| {
                    mine.upgrade().is_some_and(|m| t.same_channel(&m)) && rx.is_empty()
                });
                if left.is_some() {
                    return;
                }
            }
        });
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_runs_in_order_others_run_alongside() {
        let lanes: Lanes<u32> = Lanes::new(queue::names::HTTP_REQUEST_LANES);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        for n in 0..50u32 {
            let (log, done) = (log.clone(), done_tx.clone());
            lanes
                .submit(
                    n % 2,
                    Box::pin(async move {
                        // Earlier jobs take longer: out-of-order would show.
                        tokio::time::sleep(Duration::from_micros(u64::from(50 - n) * 20)).await;
                        log.lock().unwrap().push(n);
                        let _ = done.send(());
                    }),
                )
                .unwrap();
        }
        for _ in 0..50 {
            done_rx.recv().await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        for key in 0..2 {
            let mine: Vec<u32> = log.iter().copied().filter(|n| n % 2 == key).collect();
            let mut sorted = mine.clone();
            sorted.sort();
            assert_eq!(mine, sorted, "key {key} in order");
            assert_eq!(mine.len(), 25);
        }
    }

    /// On the current thread: the lane's task runs between the waits' turns.
    #[tokio::test]
    async fn a_full_lane_refuses_and_an_idle_one_ends() {
        let lanes: Lanes<u32> = Lanes::new(queue::names::HTTP_REQUEST_LANES);
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        lanes
            .submit(
                1,
                Box::pin(async move {
                    let _ = gate_rx.await;
                }),
            )
            .unwrap();
        let mut refused = false;
        for _ in 0..LANE_CAPACITY + 2 {
            if lanes.submit(1, Box::pin(async {})) == Err(LaneFull) {
                refused = true;
                break;
            }
        }
        assert!(refused, "a lane holds at most {LANE_CAPACITY}");
        gate_tx.send(()).unwrap();
        crate::testing::until("the idle lane to end", || lanes.is_empty().then_some(())).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        lanes
            .submit(
                1,
                Box::pin(async move {
                    let _ = tx.send(());
                }),
            )
            .unwrap();
        rx.await.expect("a new lane runs");
    }
}
