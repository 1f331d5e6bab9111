//! The connector actor, driven through its inbox as ingress drives it, against a stub routing
//! stage that records every batch it is asked to route.

use std::sync::Mutex;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use uuid::Uuid;

use super::*;
use crate::admission::delivery::{Settle, Settlement};
use crate::catalog::Catalog;
use crate::dead_letter::memory::MemoryDeadLetters;
use crate::dead_letter::DeadLetterPayload;
use crate::telemetry::metrics as m;
use crate::testing::until;

const WINDOW: Duration = Duration::from_secs(10);

/// What routing was asked to route, per event.
#[derive(Debug, Clone, PartialEq)]
struct Routed {
    id: Uuid,
    event: String,
    /// `integration/connector` of the scope it was routed on.
    scope: String,
    system: bool,
    persona: PersonaId,
    arguments: Vec<(String, String)>,
}

impl Routed {
    fn arg(&self, name: &str) -> Option<&str> {
        self.arguments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Records each batch; every event reaches one flow.
#[derive(Default)]
struct RecordingRoutes(Mutex<Vec<Vec<Routed>>>);

impl Routes for RecordingRoutes {
    fn route(
        &self,
        scope: &ScopeKey,
        system_scope: &ScopeKey,
        batch: &mut Vec<Routable>,
        matched: &mut Vec<usize>,
    ) {
        let mut routed = Vec::new();
        for r in batch.drain(..) {
            let on = if r.system { system_scope } else { scope };
            routed.push(Routed {
                id: r.event.event.id,
                event: r.event.event.event.to_string(),
                scope: format!("{}/{}", on.integration, on.connector),
                system: r.system,
                persona: r.event.persona,
                arguments: r
                    .event
                    .event
                    .arguments
                    .iter()
                    .map(|a| (a.name.to_string(), a.value.to_string()))
                    .collect(),
            });
            matched.push(1);
        }
        if !routed.is_empty() {
            self.0.lock().unwrap().push(routed);
        }
    }
}

type Settled = Arc<Mutex<Vec<(String, Settlement)>>>;

struct World {
    deps: Arc<ConnectorDeps>,
    routes: Arc<RecordingRoutes>,
    dead: Arc<MemoryDeadLetters>,
    settled: Settled,
    metrics: metrics_util::debugging::Snapshotter,
    deduplicated: Mutex<u64>,
}

impl World {
    fn new() -> World {
        let routes = Arc::new(RecordingRoutes::default());
        let dead = Arc::new(MemoryDeadLetters::new(100));
        let recorder = DebuggingRecorder::new();
        let metrics = recorder.snapshotter();
        let engine_metrics = metrics::with_local_recorder(&recorder, EngineMetrics::new);
        World {
            deps: Arc::new(ConnectorDeps {
                routes: routes.clone(),
                sessions: Arc::new(SessionTable::default()),
                acts: Arc::new(CommandActs::new(Duration::from_secs(3600), 100)),
                dead_letters: dead.clone(),
                metrics: Arc::new(engine_metrics),
                dedupe_window: WINDOW,
                dedupe_capacity: 100,
            }),
            routes,
            dead,
            settled: Arc::default(),
            metrics,
            deduplicated: Mutex::default(),
        }
    }

    /// Starts the actor of `integration/connector` of account `default`.
    fn start(&self, integration: &str, connector: &str, internal: bool) -> ConnectorHandle {
        let catalog = Catalog::builtin();
        let integration = catalog.get(integration).expect("in the catalog").clone();
        let actor = ConnectorActor::new(
            key(integration.idn.as_str(), connector),
            integration,
            internal,
            None,
            self.deps.clone(),
        );
        ConnectorHandle::new(actor.start())
    }

    /// Puts `events` in the connector's inbox at once (they are handled as one batch), each
    /// delivery reporting to `settled` under its label.
    fn send(&self, handle: &ConnectorHandle, events: Vec<(&str, Event)>) {
        for (label, event) in events {
            let (settled, label) = (self.settled.clone(), label.to_owned());
            let source: Box<dyn Settle> =
                Box::new(move |s: Settlement| settled.lock().unwrap().push((label.clone(), s)));
            let inbound = Inbound {
                event: Arc::new(RoutedEvent::named(event)),
                delivery: Delivery::new(Some(source), None),
                admitted_at: Instant::now(),
            };
            assert!(
                handle.inbox().try_send(inbound).is_ok(),
                "room in the inbox"
            );
        }
    }

    /// Waits until `n` events in all were routed; returns the batches.
    async fn routed(&self, n: usize) -> Vec<Vec<Routed>> {
        until(&format!("{n} events routed"), || {
            let batches = self.routes.0.lock().unwrap();
            (batches.iter().map(Vec::len).sum::<usize>() >= n).then(|| batches.clone())
        })
        .await
    }

    /// Every routed event, in order, as `event@scope`.
    fn flat(&self) -> Vec<String> {
        self.routes
            .0
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|r| format!("{}@{}", r.event, r.scope))
            .collect()
    }

    fn settled(&self) -> Vec<(String, Settlement)> {
        self.settled.lock().unwrap().clone()
    }

    /// Events dropped as repeats so far. (A snapshot takes the counts it reads: they are
    /// added up here.)
    fn deduplicated(&self) -> u64 {
        let mut total = self.deduplicated.lock().unwrap();
        for (k, _, _, v) in self.metrics.snapshot().into_vec() {
            if let (true, DebugValue::Counter(n)) =
                (k.key().name() == m::EVENTS_DEDUPLICATED_TOTAL, v)
            {
                *total += n;
            }
        }
        *total
    }
}

fn key(integration: &str, connector: &str) -> ConnectorKey {
    ConnectorKey::new(
        &Idn::known("default"),
        &Idn::known(integration),
        &Idn::known(connector),
    )
}

fn from(who: &str, name: &str) -> Event {
    Event::from_actor(
        Idn::known("default"),
        Idn::known("sandbox"),
        Idn::known("sb"),
        Idn::known(name),
        who,
    )
}

fn persona_of(who: &str) -> PersonaId {
    PersonaId::derive(&Idn::known("default"), &Idn::known("sandbox"), who)
}

fn for_persona(persona: PersonaId, name: &str) -> Event {
    Event::for_persona(
        Idn::known("default"),
        Idn::known("sandbox"),
        Idn::known("sb"),
        Idn::known(name),
        persona,
    )
}

fn done(label: &str) -> (String, Settlement) {
    (label.to_owned(), Settlement::Done)
}

#[actix_rt::test]
async fn a_batch_routes_in_order_on_the_connectors_scope() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    let persona = PersonaId(Uuid::now_v7());
    let events: Vec<Event> = (0..5)
        .map(|_| for_persona(persona, "user_message"))
        .collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let labels = ["e0", "e1", "e2", "e3", "e4"];
    w.send(&handle, labels.iter().copied().zip(events).collect());
    let batches = w.routed(5).await;
    assert_eq!(batches.len(), 1, "sent together, routed as one batch");
    let batch = &batches[0];
    assert_eq!(batch.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(batch
        .iter()
        .all(|r| r.scope == "sandbox/sb" && !r.system && r.persona == persona));
    // An event for a persona (not an actor) starts no session.
    assert!(w.deps.sessions.is_empty());
    // Routing took the deliveries: each settled.
    assert_eq!(
        w.settled(),
        labels.iter().map(|l| done(l)).collect::<Vec<_>>()
    );
    assert!(w.dead.is_empty());
}

#[actix_rt::test]
async fn a_repeat_of_an_external_event_id_inside_the_window_is_dropped() {
    tokio::time::pause();
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    let persona = PersonaId(Uuid::now_v7());
    let with_key = |k: &str| {
        let mut e = for_persona(persona, "user_message");
        e.external_event_id = Some(k.to_owned());
        e
    };
    let first = with_key("k1");
    let first_id = first.id;
    let again = first.clone(); // the same event delivered again: not a repeat
    let copy = with_key("k1"); // another event with the same key: a repeat
    let fresh = with_key("k2");
    let fresh_id = fresh.id;
    w.send(
        &handle,
        vec![
            ("first", first),
            ("copy", copy),
            ("again", again),
            ("fresh", fresh),
        ],
    );
    let routed = w.routed(3).await.concat();
    assert_eq!(
        routed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first_id, first_id, fresh_id]
    );
    assert_eq!(w.deduplicated(), 1);
    // The copy is acknowledged, not routed: its delivery settles all the same.
    assert!(w.settled().contains(&done("copy")));
    assert_eq!(w.settled().len(), 4);

    // Past the window, the key is new again.
    tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
    let late = with_key("k1");
    let late_id = late.id;
    w.send(&handle, vec![("late", late)]);
    let routed = w.routed(4).await.concat();
    assert_eq!(routed[3].id, late_id);
    assert_eq!(w.deduplicated(), 1);
    assert!(w.dead.is_empty(), "a repeat is no failure");
}

#[actix_rt::test]
async fn an_event_naming_an_actor_starts_a_session_routed_first_on_the_system_scope() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    let hello = from("alice", "user_message");
    let hello_id = hello.id;
    w.send(&handle, vec![("hello", hello)]);
    let batch = w.routed(2).await.concat();
    let alice = persona_of("alice");
    assert_eq!(batch[0].event, "session_started");
    assert!(batch[0].system);
    assert_eq!(batch[0].scope, "system/system");
    assert_eq!(batch[0].persona, alice);
    assert_eq!(batch[0].arg("integrationIdn"), Some("sandbox"));
    assert_eq!(batch[0].arg("connectorIdn"), Some("sb"));
    assert_eq!(
        (batch[1].id, batch[1].scope.as_str()),
        (hello_id, "sandbox/sb")
    );
    assert!(!batch[1].system);
    let live = w
        .deps
        .sessions
        .find(
            &Idn::known("default"),
            alice,
            &Idn::known("sandbox"),
            &Idn::known("sb"),
        )
        .expect("a live session");
    assert_eq!(
        batch[0].arg("sessionId"),
        Some(live.id.to_string().as_str())
    );

    // The same actor again: its session goes on. Another actor: a session of its own.
    w.send(
        &handle,
        vec![
            ("again", from("alice", "user_message")),
            ("bob", from("bob", "user_message")),
        ],
    );
    w.routed(5).await;
    assert_eq!(
        w.flat()[2..],
        [
            "user_message@sandbox/sb",
            "session_started@system/system",
            "user_message@sandbox/sb"
        ]
    );
    assert_eq!(w.deps.sessions.len(), 2);
    // The session event shares the delivery of the event that caused it: one settlement each.
    assert_eq!(w.settled(), [done("hello"), done("again"), done("bob")]);
}

#[actix_rt::test]
async fn an_internal_connector_starts_no_session() {
    let w = World::new();
    let handle = w.start("sandbox", "system", true);
    let mut e = from("alice", "user_message");
    e.connector = Idn::known("system");
    w.send(&handle, vec![("e", e)]);
    w.routed(1).await;
    assert_eq!(w.flat(), ["user_message@sandbox/system"]);
    assert!(w.deps.sessions.is_empty());
}

#[actix_rt::test]
async fn conversation_ended_ends_the_personas_sessions_after_it() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    w.send(&handle, vec![("hello", from("alice", "user_message"))]);
    let first = w.routed(2).await.concat();
    let session = first[0].arg("sessionId").unwrap().to_owned();

    w.send(&handle, vec![("bye", from("alice", "conversation_ended"))]);
    let routed = w.routed(4).await.concat();
    assert_eq!(routed[2].event, "conversation_ended");
    assert_eq!(routed[2].scope, "sandbox/sb");
    let ended = &routed[3];
    assert_eq!(ended.event, "session_ended");
    assert!(ended.system);
    assert_eq!(ended.scope, "system/system");
    assert_eq!(ended.persona, persona_of("alice"));
    assert_eq!(ended.arg("sessionId"), Some(session.as_str()));
    assert_eq!(ended.arg("reason"), Some("conversation_ended"));
    assert!(w.deps.sessions.is_empty());

    // The next event starts a new session.
    w.send(&handle, vec![("back", from("alice", "user_message"))]);
    let routed = w.routed(6).await.concat();
    assert_eq!(routed[4].event, "session_started");
    assert_ne!(routed[4].arg("sessionId"), Some(session.as_str()));
    assert_eq!(w.settled(), [done("hello"), done("bye"), done("back")]);
}

#[actix_rt::test]
async fn conversation_ended_as_the_first_event_starts_and_ends_a_session() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    w.send(&handle, vec![("bye", from("alice", "conversation_ended"))]);
    w.routed(3).await;
    assert_eq!(
        w.flat(),
        [
            "session_started@system/system",
            "conversation_ended@sandbox/sb",
            "session_ended@system/system"
        ]
    );
    assert!(w.deps.sessions.is_empty());
}

#[actix_rt::test]
async fn an_event_naming_only_an_unknown_command_act_is_dead_lettered() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    let mut orphan = from("x", "user_message");
    orphan.target = Target::ByCommandAct;
    orphan.command_act_id = Some(Uuid::now_v7());
    let orphan_id = orphan.id;
    let orphan_act = orphan.command_act_id.unwrap();
    // An act issued through another connector is unknown to this one.
    let other_act = Uuid::now_v7();
    w.deps.acts.remember(
        other_act,
        persona_of("alice"),
        key("sandbox", "other"),
        Instant::now(),
    );
    let mut elsewhere = from("x", "user_message");
    elsewhere.target = Target::ByCommandAct;
    elsewhere.command_act_id = Some(other_act);
    let marker = for_persona(persona_of("alice"), "user_message");
    let marker_id = marker.id;
    w.send(
        &handle,
        vec![
            ("orphan", orphan),
            ("elsewhere", elsewhere),
            ("marker", marker),
        ],
    );
    let routed = w.routed(1).await.concat();
    assert_eq!(routed.len(), 1, "only the marker was routed");
    assert_eq!(routed[0].id, marker_id);
    let dead = w.dead.all();
    assert_eq!(dead.len(), 2);
    assert!(dead
        .iter()
        .all(|d| d.reason == DeadLetterReason::UnknownCommandAct));
    let DeadLetterPayload::Event { event, persona } = &dead[0].payload else {
        panic!("an event's dead letter");
    };
    assert_eq!((event.id, *persona), (orphan_id, None));
    assert_eq!(
        dead[0].detail,
        format!(
            "command_act_id {orphan_act} is unknown to sandbox/sb and the event names no actor"
        ),
        "the act's plain id, not Rust's Debug of an Option"
    );
    assert_eq!(
        w.settled(),
        [done("orphan"), done("elsewhere"), done("marker")],
        "recorded: settled"
    );
}

#[actix_rt::test]
async fn a_known_command_act_resolves_the_persona() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    let alice = persona_of("alice");
    let act = Uuid::now_v7();
    w.deps
        .acts
        .remember(act, alice, key("sandbox", "sb"), Instant::now());
    // An answer that names only the act.
    let mut result = from("x", "user_message");
    result.target = Target::ByCommandAct;
    result.command_act_id = Some(act);
    // An act the connector issued wins over the actor named.
    let mut named = from("someone_else", "user_message");
    named.command_act_id = Some(act);
    // An unknown act beside an actor: the actor's persona.
    let mut unknown = from("bob", "user_message");
    unknown.command_act_id = Some(Uuid::now_v7());
    w.send(
        &handle,
        vec![("result", result), ("named", named), ("unknown", unknown)],
    );
    let routed: Vec<Routed> = w
        .routed(5)
        .await
        .concat()
        .into_iter()
        .filter(|r| !r.system)
        .collect();
    assert_eq!(
        routed.iter().map(|r| r.persona).collect::<Vec<_>>(),
        [alice, alice, persona_of("bob")]
    );
    assert!(w.dead.is_empty());
    // The act's persona, not the actor named, is the one whose session goes on.
    assert!(w
        .deps
        .sessions
        .find(
            &Idn::known("default"),
            persona_of("someone_else"),
            &Idn::known("sandbox"),
            &Idn::known("sb")
        )
        .is_none());
    assert!(w
        .deps
        .sessions
        .find(
            &Idn::known("default"),
            alice,
            &Idn::known("sandbox"),
            &Idn::known("sb")
        )
        .is_some());
}

#[actix_rt::test]
async fn shutdown_handles_what_the_inbox_holds_then_stops() {
    let w = World::new();
    let handle = w.start("sandbox", "sb", false);
    let persona = PersonaId(Uuid::now_v7());
    w.send(
        &handle,
        (0..3)
            .map(|_| ("e", for_persona(persona, "user_message")))
            .collect(),
    );
    handle.addr.do_send(Shutdown);
    w.routed(3).await;
    until("the actor to stop", || {
        (!handle.addr.connected()).then_some(())
    })
    .await;
    assert!(handle.inbox().is_closed(), "nothing can be sent after");
    assert_eq!(w.settled().len(), 3);

    // A connector that never received an event stops at once.
    let idle = w.start("sandbox", "other", false);
    idle.addr.do_send(Shutdown);
    until("the idle actor to stop", || {
        (!idle.addr.connected()).then_some(())
    })
    .await;
}
