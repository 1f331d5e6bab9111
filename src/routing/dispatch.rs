//! Dispatch: one admitted event → the flow instances whose subscriptions match it. Runs on the
//! caller's thread (a connector actor) against the current index, read lock-free: dispatch
//! never waits for the router, and a rebuild never pauses dispatch.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::time::Instant;

use super::index::{ScopeKey, SubscriptionIndex};
use crate::admission::delivery::Delivery;
use crate::catalog::Catalog;
use crate::domain::{Event, RoutedEvent, SharedEvent, Target};
use crate::flow_instance::messages::Enqueue;
use crate::flow_instance::{FlowInstanceKey, FlowInstances};

pub struct Dispatcher {
    index: ArcSwap<SubscriptionIndex>,
    instances: Arc<FlowInstances>,
    catalog: Arc<Catalog>,
}

impl Dispatcher {
    pub fn new(instances: Arc<FlowInstances>, catalog: Arc<Catalog>) -> Self {
        Dispatcher {
            index: ArcSwap::from_pointee(SubscriptionIndex::default()),
            instances,
            catalog,
        }
    }

    /// The index in force now.
    pub fn index(&self) -> Guard<Arc<SubscriptionIndex>> {
        self.index.load()
    }

    /// Replaces the index atomically (the router does this after a rebuild), and frees the
    /// old one here, on the caller's (rebuilding) thread: it waits until no dispatch still
    /// reads it, so the last reader never pays for freeing a large index on the hot path.
    pub fn swap_index(&self, index: Arc<SubscriptionIndex>) {
        let old = self.index.swap(index);
        while Arc::strong_count(&old) > 1 {
            std::thread::yield_now();
        }
        drop(old);
    }

    pub fn instances(&self) -> &Arc<FlowInstances> {
        &self.instances
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Queues `event` on every matching flow instance; returns how many flows received it.
    /// The last receiver gets `event` and `delivery` themselves, the others clones: in the
    /// common case of one receiving flow, no reference count is touched.
    pub fn route(
        &self,
        event: SharedEvent,
        scope: &ScopeKey,
        delivery: Delivery,
        admitted_at: Instant,
    ) -> usize {
        let instances = &self.instances;
        self.route_in(
            &self.index.load(),
            event,
            scope,
            delivery,
            admitted_at,
            &mut |m| instances.deliver(m),
        )
    }

    /// [`Dispatcher::route`] against `index`, handing each match to `deliver`: a connector
    /// loads the index once per batch and gathers the matches per shard in its outbox.
    #[inline]
    pub fn route_in(
        &self,
        index: &SubscriptionIndex,
        event: SharedEvent,
        scope: &ScopeKey,
        delivery: Delivery,
        admitted_at: Instant,
        deliver: &mut impl FnMut(Enqueue),
    ) -> usize {
        let matches = index.lookup(scope, event.event.event.as_str());
        let persona = event.persona;
        let mut held = Some((event, delivery));
        let mut n = 0;
        let mut matches = matches.iter().peekable();
        while let Some(m) = matches.next() {
            n += 1;
            let (event, delivery) = if matches.peek().is_none() {
                held.take().expect("taken only by the last match")
            } else {
                let (e, d) = held.as_ref().expect("held until the last match");
                (e.clone(), d.clone())
            };
            deliver(Enqueue {
                key: FlowInstanceKey {
                    flow: m.flow_id,
                    persona,
                },
                event,
                matched: m.clone(),
                delivery,
                admitted_at,
            });
        }
        n
    }

    /// Routes an event the daemon made itself for a known persona (command results, system
    /// events). It needs no admission: its scope is the daemon's own.
    pub fn route_internal(&self, event: Event) -> usize {
        let Target::Persona(persona) = event.target else {
            debug_assert!(false, "internal events name their persona");
            return 0;
        };
        let scope = ScopeKey::new(
            event.account.clone(),
            event.integration.clone(),
            event.connector.clone(),
        );
        self.route(
            Arc::new(RoutedEvent { event, persona }),
            &scope,
            Delivery::none(),
            Instant::now(),
        )
    }
}
