//! The queues between stages are observable: a full flow shard inbox is counted under its
//! queue name, and depth and capacity are read from the live queues at the scrape (the shard's
//! reply queue among them).

mod common;

use common::Harness;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use switchboard::domain::{Event, Idn};
use switchboard::telemetry::{metrics as m, queue};
use switchboard::EngineConfig;

#[actix_rt::test]
async fn a_full_queue_is_counted_by_name_and_depths_are_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    // The shard inbox holds 2 batches with an in-flight limit of 1.
    let h = Harness::with_config(EngineConfig {
        inflight_limit: 1,
        ..EngineConfig::default()
    });
    h.flow(
        "Agent",
        "Main",
        "events: [{idn: timer, skill_idn: Tick, integration_idn: system}]",
    )
    .await;
    let persona = h.persona("api", "p");
    let dispatcher = h.engine.dispatcher().clone();
    // The shard runs on this thread: nothing is drained between these calls.
    for _ in 0..3 {
        dispatcher.route_internal(Event::for_persona(
            h.account.clone(),
            Idn::known("system"),
            Idn::known("system"),
            Idn::known("timer"),
            persona,
        ));
    }
    queue::report();
    let snap = snapshotter.snapshot().into_vec();
    let value = |name: &str, q: &str| {
        snap.iter().find_map(|(k, _, _, v)| {
            let key = k.key();
            (key.name() == name && key.labels().any(|l| l.key() == "queue" && l.value() == q))
                .then_some(v)
        })
    };
    assert!(
        matches!(
            value(m::QUEUE_FULL_TOTAL, "flow_shard_inbox"),
            Some(DebugValue::Counter(1))
        ),
        "one batch found the shard inbox full"
    );
    match value(m::QUEUE_DEPTH, "flow_shard_inbox") {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 2.0, "two batches wait"),
        other => panic!("flow shard depth: {other:?}"),
    }
    match value(m::QUEUE_CAPACITY, "flow_shard_inbox") {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 2.0),
        other => panic!("flow shard capacity: {other:?}"),
    }
    // Runners' replies reach the shard through a bounded queue of their own, observed too.
    match value(m::QUEUE_CAPACITY, "shard_replies") {
        Some(DebugValue::Gauge(g)) => assert!(g.into_inner() >= 1.0, "{}", g.into_inner()),
        other => panic!("shard replies capacity: {other:?}"),
    }
    assert!(
        matches!(
            value(m::QUEUE_DEPTH, "shard_replies"),
            Some(DebugValue::Gauge(_))
        ),
        "the shard replies' depth is reported"
    );
    assert_eq!(h.dead_letter_codes(), vec!["flow_queue_full"]);
}
