//! Ingress against stub inboxes backed by real tokio channels: what admission refuses (and
//! records), how submit waits for permits and room, how try_submit answers busy, and how a
//! batch keeps each connector's order and answers each event in its place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::*;
use crate::admission::delivery::{Settle, Settlement};
use crate::dead_letter::memory::MemoryDeadLetters;
use crate::dead_letter::DeadLetterPayload;
use crate::domain::{PersonaId, Target};
use crate::telemetry::metrics as m;

enum Slot {
    Running(mpsc::Sender<Inbound>),
    Stopped,
}

/// The running connectors' inboxes: a map under a lock, held while `send` runs (as the
/// directory holds its read guard).
struct StubInboxes {
    catalog: Arc<Catalog>,
    slots: Mutex<HashMap<ConnectorKey, Slot>>,
}

impl Inboxes for StubInboxes {
    fn with_inbox(
        &self,
        key: &ConnectorKey,
        send: &mut dyn FnMut(&mpsc::Sender<Inbound>),
    ) -> Result<(), Unreachable> {
        let slots = self.slots.lock().unwrap();
        let (integration, connector) = (key.integration.to_string(), key.connector.to_string());
        match slots.get(key) {
            Some(Slot::Running(inbox)) => {
                send(inbox);
                Ok(())
            }
            Some(Slot::Stopped) => Err(Unreachable::ConnectorStopped {
                integration,
                connector,
            }),
            None if self.catalog.get(&integration).is_none() => {
                Err(Unreachable::UnknownIntegration(integration))
            }
            None => Err(Unreachable::UnknownConnector {
                integration,
                connector,
            }),
        }
    }
}

type Settled = Arc<Mutex<Vec<(String, Settlement)>>>;

struct World {
    ingress: Ingress,
    inboxes: Arc<StubInboxes>,
    dead: Arc<MemoryDeadLetters>,
    settled: Settled,
}

fn ckey(integration: &str, connector: &str) -> ConnectorKey {
    ConnectorKey::new(
        &Idn::known("default"),
        &Idn::known(integration),
        &Idn::known(connector),
    )
}

impl World {
    fn new(inflight_limit: usize) -> World {
        let catalog = Catalog::builtin();
        let inboxes = Arc::new(StubInboxes {
            catalog: catalog.clone(),
            slots: Mutex::default(),
        });
        let dead = Arc::new(MemoryDeadLetters::new(100));
        let ingress = Ingress::new(
            inboxes.clone(),
            catalog,
            dead.clone(),
            Arc::new(EngineMetrics::new()),
            inflight_limit,
        );
        World {
            ingress,
            inboxes,
            dead,
            settled: Arc::default(),
        }
    }

    /// Runs `integration/connector` with an inbox of `capacity`; returns its receiving end.
    fn running(
        &self,
        integration: &str,
        connector: &str,
        capacity: usize,
    ) -> mpsc::Receiver<Inbound> {
        let (tx, rx) = mpsc::channel(capacity);
        self.inboxes
            .slots
            .lock()
            .unwrap()
            .insert(ckey(integration, connector), Slot::Running(tx));
        rx
    }

    fn stopped(&self, integration: &str, connector: &str) {
        self.inboxes
            .slots
            .lock()
            .unwrap()
            .insert(ckey(integration, connector), Slot::Stopped);
    }

    /// A source that reports to `settled` under `label`.
    fn source(&self, label: &str) -> Option<Box<dyn Settle>> {
        let (settled, label) = (self.settled.clone(), label.to_owned());
        Some(Box::new(move |s: Settlement| {
            settled.lock().unwrap().push((label.clone(), s))
        }))
    }

    fn settled(&self) -> Vec<(String, Settlement)> {
        self.settled.lock().unwrap().clone()
    }

    /// `(reason, event id)` of every dead letter, oldest first.
    fn dead_letters(&self) -> Vec<(&'static str, Uuid)> {
        self.dead
            .all()
            .into_iter()
            .map(|d| match d.payload {
                DeadLetterPayload::Event { event, .. } => (d.reason.code(), event.id),
                other => panic!("an event's dead letter, not {other:?}"),
            })
            .collect()
    }
}

/// An event; a `user_message` carries the `text` the catalog requires.
fn event(integration: &str, connector: &str, name: &str, who: &str) -> Event {
    let mut e = Event::from_actor(
        Idn::known("default"),
        Idn::known(integration),
        Idn::known(connector),
        Idn::known(name),
        who,
    );
    if name == "user_message" {
        e.arguments.push("text", "hello");
    }
    e
}

fn done(label: &str) -> (String, Settlement) {
    (label.to_owned(), Settlement::Done)
}

/// Event ids of what the inbox holds now, taken out (their deliveries settle).
fn drain(rx: &mut mpsc::Receiver<Inbound>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    while let Ok(inbound) = rx.try_recv() {
        ids.push(inbound.event.event.id);
    }
    ids
}

/// Lets the spawned tasks run until they can go no further.
async fn settle_tasks() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn admit_refuses_with_the_reason_counts_and_dead_letters() {
    let w = World::new(10);
    let mut inbox = w.running("telegram", "bot", 8);
    w.stopped("telegram", "stopped_bot");
    let mut no_actor = event("telegram", "bot", "user_message", "x");
    no_actor.target = Target::ByCommandAct;
    let mut no_text = event("telegram", "bot", "user_message", "alice");
    no_text.arguments = Default::default();
    let mut act_in_arguments = event("telegram", "bot", "result_error", "alice");
    act_in_arguments.target = Target::ByCommandAct;
    act_in_arguments.command_act_id = Some(Uuid::nil());
    act_in_arguments.arguments = Default::default();
    let cases: Vec<(Event, Refusal)> = vec![
        (
            no_text,
            Refusal::Malformed {
                field: "arguments.text".into(),
                reason: "required by event telegram/user_message".into(),
            },
        ),
        (
            event("nope", "bot", "user_message", "alice"),
            Refusal::Unreachable(Unreachable::UnknownIntegration("nope".into())),
        ),
        (
            event("telegram", "bot", "made_up_event", "alice"),
            Refusal::UndeclaredEvent {
                integration: "telegram".into(),
                event: "made_up_event".into(),
            },
        ),
        (
            event("telegram", "bot", "user_message", ""),
            Refusal::Malformed {
                field: "actor.external_id".into(),
                reason: "must not be empty".into(),
            },
        ),
        (
            no_actor,
            Refusal::Malformed {
                field: "actor".into(),
                reason: "required unless the event answers a command (command_act_id)".into(),
            },
        ),
        (
            event("telegram", "other_bot", "user_message", "alice"),
            Refusal::Unreachable(Unreachable::UnknownConnector {
                integration: "telegram".into(),
                connector: "other_bot".into(),
            }),
        ),
        (
            event("telegram", "stopped_bot", "user_message", "alice"),
            Refusal::Unreachable(Unreachable::ConnectorStopped {
                integration: "telegram".into(),
                connector: "stopped_bot".into(),
            }),
        ),
    ];
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut ids = Vec::new();
    for (e, want) in cases {
        ids.push((want.code(), e.id));
        let got = metrics::with_local_recorder(&recorder, || w.ingress.admit(e));
        assert_eq!(got.err(), Some(want));
    }
    assert_eq!(w.dead_letters(), ids, "each dead-lettered with its reason");
    // A result's required `command_act_id` may come as the envelope's field.
    assert!(w.ingress.admit(act_in_arguments).is_ok());
    let snap = snapshotter.snapshot().into_vec();
    let count = |name: &str, reason: &str| {
        snap.iter()
            .find_map(|(k, _, _, v)| {
                let key = k.key();
                let hit = key.name() == name
                    && key
                        .labels()
                        .any(|l| l.key() == "reason" && l.value() == reason);
                match (hit, v) {
                    (true, DebugValue::Counter(n)) => Some(*n),
                    _ => None,
                }
            })
            .unwrap_or(0)
    };
    for (reason, n) in [
        ("unknown_integration", 1),
        ("undeclared_event", 1),
        ("malformed", 3),
        ("unknown_connector", 1),
        ("connector_stopped", 1),
    ] {
        assert_eq!(
            count(m::EVENTS_REJECTED_TOTAL, reason),
            n,
            "{reason} rejected"
        );
        assert_eq!(
            count(m::DEAD_LETTERS_TOTAL, reason),
            n,
            "{reason} dead-lettered"
        );
    }
    assert!(drain(&mut inbox).is_empty(), "nothing reached an inbox");
    assert_eq!(w.ingress.inflight(), 0);
}

#[tokio::test]
async fn admit_then_submit_admitted_hands_the_event_over_with_its_persona() {
    let w = World::new(10);
    let mut inbox = w.running("telegram", "bot", 8);
    let e = event("telegram", "bot", "user_message", "alice");
    let id = e.id;
    let admitted = w.ingress.admit(e).expect("admitted");
    assert_eq!(admitted.event().id, id);
    assert!(
        drain(&mut inbox).is_empty(),
        "admission alone sends nothing"
    );
    w.ingress
        .submit_admitted(admitted, w.source("a"))
        .await
        .unwrap();
    let inbound = inbox.try_recv().expect("in the inbox");
    assert_eq!(inbound.event.event.id, id);
    assert_eq!(
        inbound.event.persona,
        PersonaId::derive(&Idn::known("default"), &Idn::known("telegram"), "alice")
    );
    assert_eq!(w.ingress.inflight(), 1, "the delivery holds its permit");
    assert!(w.settled().is_empty(), "held until the connector lets go");
    drop(inbound);
    assert_eq!(w.settled(), [done("a")]);
    assert_eq!(w.ingress.inflight(), 0);
    assert!(w.dead.is_empty());
}

#[tokio::test]
async fn a_refused_submit_settles_its_source_and_takes_no_permit() {
    let w = World::new(10);
    let e = event("telegram", "bot", "user_message", "alice");
    let id = e.id;
    let refused = w.ingress.submit(e, w.source("a")).await;
    assert_eq!(
        refused,
        Err(Refusal::Unreachable(Unreachable::UnknownConnector {
            integration: "telegram".into(),
            connector: "bot".into()
        }))
    );
    assert_eq!(w.settled(), [done("a")], "a refusal is an answer");
    assert_eq!(w.dead_letters(), [("unknown_connector", id)]);
    assert_eq!(w.ingress.inflight(), 0);
}

#[tokio::test]
async fn submit_waits_for_room_in_a_full_inbox() {
    let w = World::new(10);
    let mut inbox = w.running("telegram", "bot", 1);
    let first = event("telegram", "bot", "user_message", "alice");
    let second = event("telegram", "bot", "user_message", "alice");
    let (first_id, second_id) = (first.id, second.id);
    w.ingress.submit(first, w.source("first")).await.unwrap();
    let waiting = tokio::spawn({
        let (ingress, source) = (w.ingress.clone(), w.source("second"));
        async move { ingress.submit(second, source).await }
    });
    settle_tasks().await;
    assert!(!waiting.is_finished(), "waits for room");
    assert_eq!(w.ingress.inflight(), 2, "holding its permit while it waits");
    let inbound = inbox.recv().await.unwrap();
    assert_eq!(inbound.event.event.id, first_id);
    waiting.await.unwrap().expect("sent once there was room");
    assert_eq!(drain(&mut inbox), [second_id]);
    drop(inbound);
    assert_eq!(w.settled(), [done("second"), done("first")]);
    assert!(w.dead.is_empty());
}

#[tokio::test]
async fn submit_is_refused_when_the_inbox_closes_while_it_waits() {
    let w = World::new(10);
    let mut inbox = w.running("telegram", "bot", 1);
    w.ingress
        .submit(
            event("telegram", "bot", "user_message", "alice"),
            w.source("first"),
        )
        .await
        .unwrap();
    let second = event("telegram", "bot", "user_message", "alice");
    let second_id = second.id;
    let waiting = tokio::spawn({
        let (ingress, source) = (w.ingress.clone(), w.source("second"));
        async move { ingress.submit(second, source).await }
    });
    settle_tasks().await;
    assert!(!waiting.is_finished());
    // The connector stops: its inbox closes behind what was sent.
    inbox.close();
    assert_eq!(
        waiting.await.unwrap(),
        Err(Refusal::Unreachable(Unreachable::ConnectorStopped {
            integration: "telegram".into(),
            connector: "bot".into()
        }))
    );
    assert_eq!(w.dead_letters(), [("connector_stopped", second_id)]);
    assert_eq!(w.settled(), [done("second")]);
    assert_eq!(
        drain(&mut inbox).len(),
        1,
        "what was sent before is still handled"
    );
    assert_eq!(w.settled(), [done("second"), done("first")]);
    assert_eq!(w.ingress.inflight(), 0);
}

#[tokio::test]
async fn submit_waits_for_an_in_flight_permit() {
    let w = World::new(1);
    let mut inbox = w.running("telegram", "bot", 8);
    w.ingress
        .submit(
            event("telegram", "bot", "user_message", "alice"),
            w.source("first"),
        )
        .await
        .unwrap();
    let second = event("telegram", "bot", "user_message", "alice");
    let second_id = second.id;
    let waiting = tokio::spawn({
        let (ingress, source) = (w.ingress.clone(), w.source("second"));
        async move { ingress.submit(second, source).await }
    });
    settle_tasks().await;
    assert!(!waiting.is_finished(), "at the in-flight limit");
    assert_eq!(
        drain(&mut inbox).len(),
        1,
        "the first settles and frees its permit"
    );
    waiting.await.unwrap().unwrap();
    assert_eq!(drain(&mut inbox), [second_id]);
    assert_eq!(w.settled(), [done("first"), done("second")]);
}

#[test]
fn try_permit_answers_busy_at_the_in_flight_limit_and_counts_it() {
    let w = World::new(1);
    let (recorder, snapshotter) = {
        let r = DebuggingRecorder::new();
        let s = r.snapshotter();
        (r, s)
    };
    let held = w.ingress.try_permit().expect("one permit");
    let busy = metrics::with_local_recorder(&recorder, || w.ingress.try_permit().err());
    assert_eq!(busy, Some(Refusal::Busy));
    let counted = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .any(|(k, _, _, _)| {
            k.key().name() == m::EVENTS_REJECTED_TOTAL
                && k.key().labels().any(|l| l.value() == "busy")
        });
    assert!(counted, "a busy refusal is counted");
    assert!(w.dead.is_empty(), "and not dead-lettered");
    drop(held);
    assert!(w.ingress.try_permit().is_ok(), "room again");
}

#[tokio::test]
async fn try_submit_answers_busy_at_the_in_flight_limit_leaving_the_source_unsettled() {
    let w = World::new(1);
    let mut inbox = w.running("telegram", "bot", 8);
    w.ingress
        .try_submit(
            event("telegram", "bot", "user_message", "alice"),
            w.source("first"),
        )
        .unwrap();
    assert_eq!(w.ingress.inflight(), 1);
    let busy = w.ingress.try_submit(
        event("telegram", "bot", "user_message", "alice"),
        w.source("busy"),
    );
    assert_eq!(busy, Err(Refusal::Busy));
    assert!(
        w.settled().is_empty(),
        "nothing was taken in: the source is not settled"
    );
    assert!(w.dead.is_empty(), "busy is not recorded");
    assert_eq!(drain(&mut inbox).len(), 1);
    assert_eq!(w.settled(), [done("first")]);
    assert_eq!(w.ingress.inflight(), 0);
    w.ingress
        .try_submit(
            event("telegram", "bot", "user_message", "alice"),
            w.source("later"),
        )
        .expect("room again");
}

#[tokio::test]
async fn try_submit_answers_busy_on_a_full_inbox() {
    let w = World::new(10);
    let mut inbox = w.running("telegram", "bot", 1);
    w.ingress
        .try_submit(
            event("telegram", "bot", "user_message", "alice"),
            w.source("first"),
        )
        .unwrap();
    let busy = w.ingress.try_submit(
        event("telegram", "bot", "user_message", "alice"),
        w.source("busy"),
    );
    assert_eq!(busy, Err(Refusal::Busy));
    assert_eq!(
        w.ingress.inflight(),
        1,
        "the busy event gave its permit back"
    );
    assert!(w.dead.is_empty());
    assert_eq!(drain(&mut inbox).len(), 1);
    assert_eq!(
        w.settled(),
        [done("first")],
        "the busy source is left unsettled"
    );
    // A refusal other than busy is an answer: settled, counted, recorded.
    let refused = w.ingress.try_submit(
        event("telegram", "gone", "user_message", "alice"),
        w.source("refused"),
    );
    assert!(matches!(
        refused,
        Err(Refusal::Unreachable(Unreachable::UnknownConnector { .. }))
    ));
    assert_eq!(w.settled(), [done("first"), done("refused")]);
    assert_eq!(w.dead.len(), 1);
    assert_eq!(w.ingress.inflight(), 0);
}

#[tokio::test]
async fn submit_batch_answers_each_event_in_its_place_and_keeps_each_connectors_order() {
    let w = World::new(100);
    let mut a = w.running("telegram", "bot", 16);
    let mut b = w.running("sandbox", "sb", 16);
    w.stopped("telegram", "stopped_bot");
    let events = vec![
        ("a1", event("telegram", "bot", "user_message", "alice")),
        ("b1", event("sandbox", "sb", "user_message", "bob")),
        ("bad", event("nope", "x", "user_message", "alice")),
        ("a2", event("telegram", "bot", "user_message", "carol")),
        (
            "stopped",
            event("telegram", "stopped_bot", "user_message", "alice"),
        ),
        ("b2", event("sandbox", "sb", "user_message", "bob")),
        ("empty", event("telegram", "bot", "user_message", "")),
        (
            "a3",
            event("telegram", "bot", "conversation_ended", "alice"),
        ),
    ];
    let ids: HashMap<&str, Uuid> = events.iter().map(|(l, e)| (*l, e.id)).collect();
    let batch = events
        .into_iter()
        .map(|(label, e)| (e, w.source(label)))
        .collect();
    let results = w.ingress.submit_batch(batch).await;
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().map_or_else(Refusal::code, |()| "ok"))
        .collect();
    assert_eq!(
        codes,
        [
            "ok",
            "ok",
            "unknown_integration",
            "ok",
            "connector_stopped",
            "ok",
            "malformed",
            "ok"
        ]
    );
    assert_eq!(drain(&mut a), [ids["a1"], ids["a2"], ids["a3"]]);
    assert_eq!(drain(&mut b), [ids["b1"], ids["b2"]]);
    let mut dead = w.dead_letters();
    dead.sort();
    let mut want = vec![
        ("unknown_integration", ids["bad"]),
        ("connector_stopped", ids["stopped"]),
        ("malformed", ids["empty"]),
    ];
    want.sort();
    assert_eq!(dead, want);
    assert_eq!(w.settled().len(), 8, "every source settled");
    assert_eq!(w.ingress.inflight(), 0);
}

#[tokio::test]
async fn submit_batch_waits_for_room_and_permits_without_reordering() {
    // Two permits and an inbox of two for a batch of seven: it goes in chunks, each waiting for
    // the previous events to be handled.
    let w = World::new(2);
    let mut inbox = w.running("telegram", "bot", 2);
    let events: Vec<Event> = (0..7)
        .map(|n| event("telegram", "bot", "user_message", &format!("user{n}")))
        .collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let batch: Vec<_> = events
        .into_iter()
        .enumerate()
        .map(|(n, e)| (e, w.source(&format!("e{n}"))))
        .collect();
    let submitting = tokio::spawn({
        let ingress = w.ingress.clone();
        async move { ingress.submit_batch(batch).await }
    });
    let mut received = Vec::new();
    while received.len() < ids.len() {
        let inbound = inbox.recv().await.expect("the batch goes on");
        assert!(w.ingress.inflight() <= 2, "never past the in-flight limit");
        received.push(inbound.event.event.id);
    }
    let results = submitting.await.unwrap();
    assert_eq!(results.len(), 7);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(received, ids, "in order");
    assert_eq!(w.settled().len(), 7);
}

#[tokio::test]
async fn a_full_connector_does_not_hold_up_the_others_of_a_batch() {
    let w = World::new(100);
    let mut full = w.running("telegram", "bot", 1);
    let mut free = w.running("telegram", "other", 8);
    let batch = vec![
        (event("telegram", "bot", "user_message", "a1"), None),
        (event("telegram", "bot", "user_message", "a2"), None),
        (event("telegram", "other", "user_message", "b1"), None),
        (event("telegram", "other", "user_message", "b2"), None),
    ];
    let submitting = tokio::spawn({
        let ingress = w.ingress.clone();
        async move { ingress.submit_batch(batch).await }
    });
    let who = |i: Inbound| match &i.event.event.target {
        crate::domain::Target::Actor(a) => a.external_id.to_string(),
        other => panic!("{other:?}"),
    };
    // `bot` holds one of its two events; `other` gets both of its own meanwhile.
    let bound = std::time::Duration::from_secs(10);
    let b1 = tokio::time::timeout(bound, free.recv()).await;
    let b2 = tokio::time::timeout(bound, free.recv()).await;
    let (b1, b2) = (
        who(b1.expect("other is not held up by bot").unwrap()),
        who(b2.expect("other is not held up by bot").unwrap()),
    );
    assert_eq!((b1.as_str(), b2.as_str()), ("b1", "b2"));
    assert!(
        !submitting.is_finished(),
        "bot's second event still waits for room"
    );
    assert_eq!(who(full.recv().await.unwrap()), "a1");
    assert_eq!(who(full.recv().await.unwrap()), "a2");
    let results = submitting.await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn submit_batch_of_refusals_only() {
    let w = World::new(10);
    let results = w
        .ingress
        .submit_batch(vec![
            (event("nope", "x", "user_message", "a"), w.source("a")),
            (
                event("telegram", "gone", "user_message", "a"),
                w.source("b"),
            ),
        ])
        .await;
    assert!(matches!(
        results[0],
        Err(Refusal::Unreachable(Unreachable::UnknownIntegration(_)))
    ));
    assert!(matches!(
        results[1],
        Err(Refusal::Unreachable(Unreachable::UnknownConnector { .. }))
    ));
    assert_eq!(results.len(), 2);
    assert_eq!(w.settled(), [done("a"), done("b")]);
    assert_eq!(w.dead.len(), 2);
}

#[test]
fn admit_internal_applies_the_catalog_checks_only() {
    let w = World::new(10);
    // The connector need not run (nor exist): a daemon-made event names its persona.
    let persona = PersonaId(Uuid::now_v7());
    let mut result = Event::for_persona(
        Idn::known("default"),
        Idn::known("http"),
        Idn::known("stopped_api"),
        Idn::known("result_error"),
        persona,
    );
    result.command_act_id = Some(Uuid::now_v7());
    let id = result.id;
    let shared = w.ingress.admit_internal(result).expect("admitted");
    assert_eq!(shared.event.id, id);
    assert_eq!(shared.persona, persona);
    // An open integration accepts event idns it does not declare.
    let custom = Event::for_persona(
        Idn::known("default"),
        Idn::known("system"),
        Idn::known("system"),
        Idn::known("book_slot"),
        persona,
    );
    assert!(w.ingress.admit_internal(custom).is_ok());
    assert!(w.dead.is_empty());

    let undeclared = Event::for_persona(
        Idn::known("default"),
        Idn::known("http"),
        Idn::known("api"),
        Idn::known("made_up"),
        persona,
    );
    let undeclared_id = undeclared.id;
    assert_eq!(
        w.ingress.admit_internal(undeclared).err(),
        Some(Refusal::UndeclaredEvent {
            integration: "http".into(),
            event: "made_up".into()
        })
    );
    let unknown = Event::for_persona(
        Idn::known("default"),
        Idn::known("nope"),
        Idn::known("x"),
        Idn::known("ping"),
        persona,
    );
    let unknown_id = unknown.id;
    assert_eq!(
        w.ingress.admit_internal(unknown).err(),
        Some(Refusal::Unreachable(Unreachable::UnknownIntegration(
            "nope".into()
        )))
    );
    assert_eq!(
        w.dead_letters(),
        [
            ("undeclared_event", undeclared_id),
            ("unknown_integration", unknown_id)
        ]
    );
    assert_eq!(w.ingress.inflight(), 0, "internal events take no permit");
}
