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

use super::instance::queue_full;
use super::messages::{Enqueue, FlowInstanceSnapshot, Inspect};
use super::shard::{FlowShard, ShardAddr};
use super::state::StateStore;
use crate::commands::router::CommandRouter;
use crate::dead_letter::DeadLetterStore;
use crate::domain::PersonaId;
use crate::routing::index::FlowId;
use crate::telemetry::handles::EngineMetrics;

/// Identifies a flow instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowInstanceKey {
    pub flow: FlowId,
    pub persona: PersonaId,
}

/// What every flow instance needs, shared.
pub struct FlowDeps {
    pub state: Arc<StateStore>,
    pub commands: Arc<CommandRouter>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub metrics: Arc<EngineMetrics>,
    /// Pending events one instance may hold; past it, events are dead-lettered.
    pub max_pending: usize,
    /// How long an instance with nothing to do stays alive.
    pub idle_timeout: Duration,
}

struct Shard {
    inbox: mpsc::Sender<Vec<Enqueue>>,
    addr: ShardAddr,
    live: Arc<AtomicUsize>,
}

/// Events bound for the shards, gathered per shard while a connector handles one batch of its
/// inbox and sent as one message per shard at the end: one channel operation and at most one
/// wake-up per shard and batch instead of per event.
pub struct Outbox {
    per_shard: Vec<Vec<Enqueue>>,
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
            let (tx, rx) = mpsc::channel(inbox_capacity);
            let live = Arc::new(AtomicUsize::new(0));
            let shard = FlowShard::new(rx, deps.clone(), live.clone());
            let addr = match arbiter {
                None => shard.start(),
                Some(a) => FlowShard::start_in_arbiter(a, move |_| shard),
            };
            Shard {
                inbox: tx,
                addr: Arc::new(addr),
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

    fn shard_of(&self, key: &FlowInstanceKey) -> usize {
        use std::hash::BuildHasher;
        FxBuildHasher.hash_one(key) as usize % self.shards.len()
    }

    /// An empty outbox for these shards.
    pub fn outbox(&self) -> Outbox {
        Outbox {
            per_shard: (0..self.shards.len()).map(|_| Vec::new()).collect(),
        }
    }

    /// Puts `msg` in `outbox`, for [`FlowInstances::flush`].
    pub fn post(&self, outbox: &mut Outbox, msg: Enqueue) {
        outbox.per_shard[self.shard_of(&msg.key)].push(msg);
    }

    /// Sends what `outbox` gathered, one message per shard.
    pub fn flush(&self, outbox: &mut Outbox) {
        for (shard, events) in outbox.per_shard.iter_mut().enumerate() {
            if !events.is_empty() {
                let batch = std::mem::replace(events, Vec::with_capacity(events.capacity()));
                self.send(shard, batch);
            }
        }
    }

    /// Hands `msg` to the shard of its instance at once.
    pub fn deliver(&self, msg: Enqueue) {
        self.send(self.shard_of(&msg.key), vec![msg]);
    }

    /// A full inbox dead-letters the events with the reason (never a silent drop); a closed one
    /// (the system is stopping) asks their sources to deliver them again.
    fn send(&self, shard: usize, batch: Vec<Enqueue>) {
        match self.shards[shard].inbox.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(batch)) => {
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
        self.shards[self.shard_of(&key)]
            .addr
            .send(Inspect(key))
            .await
            .ok()
            .flatten()
    }
}
