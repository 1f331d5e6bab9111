//! The live flow instances: `(flow, user persona)` → the shard that hosts it. Each worker
//! arbiter runs one [`FlowShard`]; an instance lives on the shard its key hashes to, so every
//! event of one instance takes the same path and keeps its order. Instances start on their
//! first event and retire when idle, so memory follows the active personas, not all personas
//! ever seen. A retired instance's next event simply starts a new one on the same shard.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_rt::ArbiterHandle;
use rustc_hash::FxBuildHasher;
use tokio::sync::mpsc;

use super::commands::CommandPort;
use super::instance::queue_full;
use super::messages::{FlowInstanceSnapshot, Inspect};
use super::shard::FlowShard;
use super::state::StateStore;
use crate::dead_letter::DeadLetterStore;
use crate::ingress::InternalEvents;
pub use crate::invocation::FlowInstanceKey;
use crate::routing::dispatch::{Enqueue, FlowShards};
use crate::session::SessionTable;
use crate::telemetry::handles::EngineMetrics;
use crate::telemetry::queue;

/// What every flow instance needs, shared.
pub struct FlowDeps {
    pub state: Arc<StateStore>,
    pub commands: Arc<dyn CommandPort>,
    /// The live sessions, attached to invocations of runners that carry them.
    pub sessions: Arc<SessionTable>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Where an instance emits the system events it causes (`runner_disabled`).
    pub events: InternalEvents,
    pub metrics: Arc<EngineMetrics>,
    /// Pending events one instance may hold; past it, events are dead-lettered.
    pub max_pending: usize,
    /// How long an instance with nothing to do stays alive.
    pub idle_timeout: Duration,
}

struct Shard {
    inbox: mpsc::Sender<Vec<Enqueue>>,
    addr: actix::Addr<FlowShard>,
    live: Arc<AtomicUsize>,
}

/// The shards and the way to them.
pub struct FlowInstances {
    shards: Vec<Shard>,
    inbox_capacity: usize,
    pub(crate) deps: Arc<FlowDeps>,
}

impl FlowInstances {
    /// Starts one shard on each of `arbiters` (empty: one on the current arbiter), each with
    /// an inbox of `inbox_capacity` batches.
    pub fn start(arbiters: &[ArbiterHandle], deps: FlowDeps, inbox_capacity: usize) -> Self {
        let deps = Arc::new(deps);
        let inbox_capacity = inbox_capacity.max(1);
        let start = |arbiter: Option<&ArbiterHandle>| {
            let (tx, rx) = queue::bounded(queue::names::FLOW_SHARD_INBOX, inbox_capacity);
            let live = Arc::new(AtomicUsize::new(0));
            let shard = FlowShard::new(rx, deps.clone(), live.clone());
            let addr = match arbiter {
                None => shard.start(),
                Some(a) => FlowShard::start_in_arbiter(a, move |_| shard),
            };
            Shard {
                inbox: tx,
                addr,
                live,
            }
        };
        let shards = if arbiters.is_empty() {
            vec![start(None)]
        } else {
            arbiters.iter().map(|a| start(Some(a))).collect()
        };
        FlowInstances {
            shards,
            inbox_capacity,
            deps,
        }
    }

    /// A full inbox dead-letters the events with the reason (never a silent drop); a closed one
    /// (the system is stopping) asks their sources to deliver them again.
    fn send_to(&self, shard: usize, batch: Vec<Enqueue>) {
        match self.shards[shard].inbox.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(batch)) => {
                queue::full(queue::names::FLOW_SHARD_INBOX);
                let holds = format!("{} queued batches", self.inbox_capacity);
                for msg in batch {
                    queue_full(
                        &self.deps,
                        &msg.matched,
                        &msg.event,
                        "the flow shard",
                        &holds,
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(batch)) => {
                for msg in batch {
                    msg.delivery.give_up();
                }
            }
        }
    }

    /// Live instances.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.live.load(Ordering::Relaxed))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the instance `key` holds now; `None` if it is not live (operations, tests).
    pub async fn inspect(&self, key: FlowInstanceKey) -> Option<FlowInstanceSnapshot> {
        self.shards[FlowShards::shard_of(self, &key)]
            .addr
            .send(Inspect(key))
            .await
            .ok()
            .flatten()
    }
}

impl FlowShards for FlowInstances {
    fn count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn shard_of(&self, key: &FlowInstanceKey) -> usize {
        use std::hash::BuildHasher;
        FxBuildHasher.hash_one(key) as usize % self.shards.len()
    }

    fn send(&self, shard: usize, batch: Vec<Enqueue>) {
        self.send_to(shard, batch);
    }
}
