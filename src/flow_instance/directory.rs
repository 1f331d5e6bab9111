//! The live flow instances: `(flow, user persona)` → the address of its actor, spread over the
//! worker arbiters. Instances are started on their first event and retire themselves when
//! idle, so memory follows the active personas, not all personas ever seen.
//!
//! **Retirement without losing a message.** A sender looks the slot up and sends *while it
//! holds the map's read guard*, counting the message in the slot. An idle actor retires with
//! `remove_if(sent == received)` under the write guard: if anything was sent that it has not
//! received, it stays. Once removed, no sender can reach the old address, so nothing is
//! ever sent to an actor that stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_rt::ArbiterHandle;
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use super::actor::FlowInstance;
use super::messages::Enqueue;
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

struct Slot {
    addr: Addr<FlowInstance>,
    generation: u64,
    sent: AtomicU64,
}

/// What every flow instance actor needs, shared.
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

/// The map of live flow instances.
pub struct FlowInstances {
    slots: DashMap<FlowInstanceKey, Slot, FxBuildHasher>,
    arbiters: Vec<ArbiterHandle>,
    next_generation: AtomicU64,
    pub(crate) deps: FlowDeps,
}

impl FlowInstances {
    /// `arbiters` run the actors; empty means the current arbiter.
    pub fn new(arbiters: Vec<ArbiterHandle>, deps: FlowDeps) -> Self {
        FlowInstances {
            slots: DashMap::with_hasher(FxBuildHasher),
            arbiters,
            next_generation: AtomicU64::new(1),
            deps,
        }
    }

    /// Hands `msg` to the instance `key`, starting it if needed.
    pub fn deliver(self: &Arc<Self>, key: FlowInstanceKey, msg: Enqueue) {
        if let Some(slot) = self.slots.get(&key) {
            slot.sent.fetch_add(1, Ordering::Relaxed);
            slot.addr.do_send(msg);
            return;
        }
        let slot = self.slots.entry(key).or_insert_with(|| self.spawn(key));
        slot.sent.fetch_add(1, Ordering::Relaxed);
        slot.addr.do_send(msg);
    }

    fn spawn(self: &Arc<Self>, key: FlowInstanceKey) -> Slot {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let instance = FlowInstance::new(key, generation, self.clone());
        let addr = if self.arbiters.is_empty() {
            instance.start()
        } else {
            let n = {
                use std::hash::BuildHasher;
                FxBuildHasher.hash_one(key) as usize % self.arbiters.len()
            };
            FlowInstance::start_in_arbiter(&self.arbiters[n], move |_| instance)
        };
        self.deps.metrics.flow_instances_live.increment(1.0);
        Slot {
            addr,
            generation,
            sent: AtomicU64::new(0),
        }
    }

    /// Called by an idle instance: removes it if nothing was sent to it that it has not
    /// received. `true` means the actor must stop now.
    pub(crate) fn retire(&self, key: FlowInstanceKey, generation: u64, received: u64) -> bool {
        let removed = self
            .slots
            .remove_if(&key, |_, s| {
                s.generation == generation && s.sent.load(Ordering::Relaxed) == received
            })
            .is_some();
        if removed {
            self.deps.metrics.flow_instances_live.decrement(1.0);
        }
        removed
    }

    /// Live instances.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The address of a live instance (tests, operations).
    pub fn get(&self, key: &FlowInstanceKey) -> Option<Addr<FlowInstance>> {
        self.slots.get(key).map(|s| s.addr.clone())
    }
}
