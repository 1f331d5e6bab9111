//! Dispatch: one admitted event → the flow instances whose subscriptions match it. Runs on the
//! caller's thread (a connector actor) against the live index, read lock-free: dispatch never
//! waits for the flow table, and a rebuild never pauses dispatch. Matches go to the flow shards
//! through [`FlowShards`], the interface this stage owns and `flow_instance` implements.

use std::cell::RefCell;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use smallvec::SmallVec;
use tokio::time::Instant;

use super::index::{Match, SubscriptionIndex};
use crate::admission::delivery::Delivery;
use crate::connectors::route::{Routable, Routes};
use crate::domain::{Event, RoutedEvent, ScopeKey, SharedEvent};
use crate::ingress::RouteAdmitted;
use crate::invocation::FlowInstanceKey;

/// An event for the flow instance `key`, with the subscription that matched it. Travels
/// through the shard's bounded inbox, not its actix mailbox.
pub struct Enqueue {
    pub key: FlowInstanceKey,
    pub event: SharedEvent,
    pub matched: Match,
    pub delivery: Delivery,
    /// When the event was admitted: dispatch latency is measured from here.
    pub admitted_at: Instant,
}

/// Where matches go: the flow shards (`flow_instance` implements it).
pub trait FlowShards: Send + Sync + 'static {
    /// How many shards there are.
    fn count(&self) -> usize;
    /// The shard hosting the instance `key`.
    fn shard_of(&self, key: &FlowInstanceKey) -> usize;
    /// Hands a batch to shard `shard`. Must not block: a full shard records its events as
    /// dead letters with the reason.
    fn send(&self, shard: usize, batch: Vec<Enqueue>);
}

/// The index in force now, swapped whole on every rebuild.
#[derive(Default)]
pub struct LiveIndex(ArcSwap<SubscriptionIndex>);

impl LiveIndex {
    /// The index in force now.
    pub fn load(&self) -> Guard<Arc<SubscriptionIndex>> {
        self.0.load()
    }

    /// Replaces the index atomically, and frees the old one here, on the caller's (rebuilding)
    /// thread: it waits until no dispatch still reads it, so the last reader never pays for
    /// freeing a large index on the hot path.
    pub fn swap(&self, index: Arc<SubscriptionIndex>) {
        let old = self.0.swap(index);
        while Arc::strong_count(&old) > 1 {
            std::thread::yield_now();
        }
        drop(old);
    }
}

/// Events bound for the shards, gathered per shard while a connector handles one batch of its
/// inbox and sent as one message per shard at the end: one channel operation and at most one
/// wake-up per shard and batch instead of per event.
#[derive(Default)]
pub struct Outbox {
    per_shard: Vec<Vec<Enqueue>>,
}

thread_local! {
    /// The outbox of the connector actor running on this thread: kept between batches so its
    /// buffers are reused. Always empty between two calls.
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

pub struct Dispatcher {
    index: Arc<LiveIndex>,
    shards: Arc<dyn FlowShards>,
}

impl Dispatcher {
    pub fn new(index: Arc<LiveIndex>, shards: Arc<dyn FlowShards>) -> Self {
        Dispatcher { index, shards }
    }

    /// The index in force now.
    pub fn index(&self) -> Guard<Arc<SubscriptionIndex>> {
        self.index.load()
    }

    /// Queues `event` on every matching flow instance at once; returns how many flows received
    /// it.
    pub fn route(
        &self,
        event: SharedEvent,
        scope: &ScopeKey,
        delivery: Delivery,
        admitted_at: Instant,
    ) -> usize {
        let shards = &self.shards;
        self.route_in(
            &self.index.load(),
            event,
            scope,
            delivery,
            admitted_at,
            &mut |m| shards.send(shards.shard_of(&m.key), vec![m]),
        )
    }

    /// Routes an event the daemon made itself (command results, system events, timer
    /// firings) once `ingress` admitted it: the pump of the internal-events sink calls this.
    pub fn route_admitted(&self, event: SharedEvent, delivery: Delivery) -> usize {
        let scope = ScopeKey::new(
            event.event.account.clone(),
            event.event.integration.clone(),
            event.event.connector.clone(),
        );
        self.route(event, &scope, delivery, Instant::now())
    }

    /// [`Dispatcher::route_admitted`] for a batch, in order: one look at the index, one
    /// message per flow shard.
    pub fn route_admitted_batch(&self, events: &mut Vec<(SharedEvent, Delivery)>) {
        let index = self.index.load();
        let shards = &*self.shards;
        let now = Instant::now();
        OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            let count = shards.count();
            if outbox.per_shard.len() != count {
                outbox.per_shard = (0..count).map(|_| Vec::new()).collect();
            }
            for (event, delivery) in events.drain(..) {
                let scope = ScopeKey::new(
                    event.event.account.clone(),
                    event.event.integration.clone(),
                    event.event.connector.clone(),
                );
                let per_shard = &mut outbox.per_shard;
                self.route_in(&index, event, &scope, delivery, now, &mut |m| {
                    per_shard[shards.shard_of(&m.key)].push(m)
                });
            }
            for (shard, events) in outbox.per_shard.iter_mut().enumerate() {
                if !events.is_empty() {
                    let batch = std::mem::replace(events, Vec::with_capacity(events.capacity()));
                    shards.send(shard, batch);
                }
            }
        });
    }

    /// [`Dispatcher::route_admitted`] for an event that names its persona.
    pub fn route_internal(&self, event: Event) -> usize {
        self.route_admitted(Arc::new(RoutedEvent::named(event)), Delivery::none())
    }

    /// [`Dispatcher::route`] against `index`, handing each match to `deliver`. An event
    /// admitted from outside brings the matches admission found to reserve its room (on its
    /// own scope, the one it routes on): taken as they are while `index` is the one they come
    /// from ([`super::room::matched_in`]), so such an event is looked up once.
    #[inline]
    fn route_in(
        &self,
        index: &SubscriptionIndex,
        event: SharedEvent,
        scope: &ScopeKey,
        delivery: Delivery,
        admitted_at: Instant,
        deliver: &mut impl FnMut(Enqueue),
    ) -> usize {
        match super::room::matched_in(&event, index) {
            Some(matched) => {
                // Owned before the event moves on (a reference count each, as a lookup's).
                let matched: SmallVec<[Match; 1]> = matched.iter().cloned().collect();
                fan_out(matched.into_iter(), event, delivery, admitted_at, deliver)
            }
            None => {
                let matches = index.lookup(scope, event.event.event.as_str());
                fan_out(
                    matches.iter().cloned(),
                    event,
                    delivery,
                    admitted_at,
                    deliver,
                )
            }
        }
    }
}

/// Hands `event` to each of `matches`, in order: the last receiver gets `event` and
/// `delivery` themselves, the others clones (in the common case of one receiving flow, no
/// reference count is touched). Returns how many received it.
#[inline]
fn fan_out(
    matches: impl Iterator<Item = Match>,
    event: SharedEvent,
    delivery: Delivery,
    admitted_at: Instant,
    deliver: &mut impl FnMut(Enqueue),
) -> usize {
    let persona = event.persona;
    let mut held = Some((event, delivery));
    let mut n = 0;
    let mut matches = matches.peekable();
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
            matched: m,
            delivery,
            admitted_at,
        });
    }
    n
}

impl Routes for Dispatcher {
    /// One look at the live index per batch, one message per flow shard.
    fn route(
        &self,
        scope: &ScopeKey,
        system_scope: &ScopeKey,
        batch: &mut Vec<Routable>,
        matched: &mut Vec<usize>,
    ) {
        let index = self.index.load();
        let shards = &*self.shards;
        OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            let count = shards.count();
            if outbox.per_shard.len() != count {
                outbox.per_shard = (0..count).map(|_| Vec::new()).collect();
            }
            for r in batch.drain(..) {
                let scope = if r.system { system_scope } else { scope };
                let per_shard = &mut outbox.per_shard;
                matched.push(self.route_in(
                    &index,
                    r.event,
                    scope,
                    r.delivery,
                    r.admitted_at,
                    &mut |m| per_shard[shards.shard_of(&m.key)].push(m),
                ));
            }
            for (shard, events) in outbox.per_shard.iter_mut().enumerate() {
                if !events.is_empty() {
                    let batch = std::mem::replace(events, Vec::with_capacity(events.capacity()));
                    shards.send(shard, batch);
                }
            }
        });
    }
}

impl RouteAdmitted for Dispatcher {
    /// The internal-events pump's batches, as [`Dispatcher::route_admitted_batch`].
    fn route_admitted(&self, events: &mut Vec<(SharedEvent, Delivery)>) {
        self.route_admitted_batch(events);
    }
}
