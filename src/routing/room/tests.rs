//! Room reserved at admission carries the event's matches to dispatch: one index lookup per
//! event, and an index swapped in between makes dispatch look the event up again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::admission::delivery::Delivery;
use crate::connectors::route::{Routable, Routes};
use crate::domain::{
    Event, Flow, Idn, InterruptMode, Name, Reservation, RunnerSpec, ScopeKey, SkillSelector,
    Subscription,
};
use crate::invocation::{Handoff, Invocation, Reply, SkillRunner};
use crate::routing::dispatch::{Dispatcher, Enqueue, FlowShards};
use crate::routing::index::{FlowRoute, LOOKUPS};

/// A flow route only needs a runner to exist.
struct NoRunner;

impl SkillRunner for NoRunner {
    fn invoke(&self, _invocation: Invocation, _reply: Reply, _handoff: Handoff) {}
}

/// One shard keeping what it receives.
#[derive(Default)]
struct Shards(Mutex<Vec<Enqueue>>);

impl FlowShards for Shards {
    fn count(&self) -> usize {
        1
    }

    fn shard_of(&self, _key: &crate::invocation::FlowInstanceKey) -> usize {
        0
    }

    fn send(&self, _shard: usize, batch: Vec<Enqueue>) {
        self.0.lock().unwrap().extend(batch);
    }
}

/// An index with one flow per name, each subscribing `user_message` on any sandbox connector.
fn index(flows: &[(u32, &str)]) -> Arc<SubscriptionIndex> {
    let routes: Vec<Arc<FlowRoute>> = flows
        .iter()
        .map(|&(id, name)| {
            Arc::new(FlowRoute::new(
                FlowId(id),
                Flow {
                    account: Idn::known("default"),
                    agent: Name::known("Agent"),
                    flow: Name::known(name),
                    runner: RunnerSpec::Default,
                    invocation_timeout: None,
                    state_fields: Vec::new(),
                    subscriptions: vec![Subscription {
                        event: Idn::known("user_message"),
                        integration: Some(Idn::known("sandbox")),
                        connector: None,
                        skill: SkillSelector::Skill(Name::known("Reply")),
                        interrupt_mode: InterruptMode::Queue,
                    }],
                },
                Arc::new(NoRunner),
                Duration::from_secs(30),
            ))
        })
        .collect();
    Arc::new(SubscriptionIndex::build(&routes))
}

struct Setup {
    live: Arc<LiveIndex>,
    room: InstanceRoom,
    shards: Arc<Shards>,
    dispatcher: Dispatcher,
}

fn setup(flows: &[(u32, &str)]) -> Setup {
    let live = Arc::new(LiveIndex::default());
    live.swap(index(flows));
    let shards = Arc::new(Shards::default());
    Setup {
        room: InstanceRoom::new(live.clone(), 4),
        dispatcher: Dispatcher::new(live.clone(), shards.clone()),
        live,
        shards,
    }
}

/// A `user_message` on `sandbox/web`, with room reserved as admission does.
fn admitted(room: &InstanceRoom) -> Routable {
    let mut event = RoutedEvent::named(Event::for_persona(
        Idn::known("default"),
        Idn::known("sandbox"),
        Idn::known("web"),
        Idn::known("user_message"),
        PersonaId(Uuid::from_u128(7)),
    ));
    event.room = room.reserve(&event, false).unwrap().map(Reservation);
    Routable {
        event: Arc::new(event),
        system: false,
        delivery: Delivery::none(),
        admitted_at: Instant::now(),
    }
}

/// Dispatches `batch` as a connector actor does; the flows that received each event.
fn dispatch(s: &Setup, batch: Vec<Routable>) -> Vec<String> {
    let scope = ScopeKey::new(
        Idn::known("default"),
        Idn::known("sandbox"),
        Idn::known("web"),
    );
    let system = ScopeKey::new(
        Idn::known("default"),
        Idn::known("system"),
        Idn::known("system"),
    );
    let (mut batch, mut matched) = (batch, Vec::new());
    Routes::route(&s.dispatcher, &scope, &system, &mut batch, &mut matched);
    s.shards
        .0
        .lock()
        .unwrap()
        .drain(..)
        .map(|e| e.matched.flow.flow.flow.to_string())
        .collect()
}

fn lookups() -> usize {
    LOOKUPS.with(|n| n.get())
}

#[test]
fn an_event_is_looked_up_once_from_admission_to_dispatch() {
    let s = setup(&[(1, "Main"), (2, "Audit")]);
    let before = lookups();
    let batch: Vec<Routable> = (0..3).map(|_| admitted(&s.room)).collect();
    assert_eq!(
        lookups() - before,
        3,
        "one lookup per event to reserve its room"
    );
    assert_eq!(
        s.room.held.len(),
        2,
        "a place in each flow instance reached"
    );
    let reached = dispatch(&s, batch);
    assert_eq!(
        lookups() - before,
        3,
        "dispatch used what admission matched"
    );
    assert_eq!(reached, ["Main", "Audit"].repeat(3));
}

#[test]
fn an_event_that_reaches_no_flow_is_looked_up_once_too() {
    let s = setup(&[]);
    let before = lookups();
    let batch = vec![admitted(&s.room)];
    assert!(dispatch(&s, batch).is_empty());
    assert_eq!(lookups() - before, 1);
    assert!(s.room.held.is_empty());
}

#[test]
fn an_index_swapped_before_dispatch_is_looked_up_again() {
    let s = setup(&[(1, "Main")]);
    let batch = vec![admitted(&s.room)];
    // `Main` is replaced by `Other` between admission and dispatch: dispatch routes by the
    // flows in force as it dispatches.
    s.live.swap(index(&[(2, "Other")]));
    let before = lookups();
    assert_eq!(dispatch(&s, batch), ["Other"]);
    assert_eq!(lookups() - before, 1, "looked up again in the new index");
    // The place taken in `Main`'s instance is given back with the event all the same.
    assert!(s.room.held.is_empty());
}
