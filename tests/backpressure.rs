//! Bounded everything: a stalled runner fills the in-flight budget, intake then waits (or is
//! told to retry), and resumes as soon as the runner moves. A full connector inbox makes intake
//! wait too; a full flow shard inbox dead-letters; a stopped connector drains its inbox first.
//! Nothing is dropped.

mod common;

use std::time::Duration;

use common::{eventually, Harness, PATIENCE};
use switchboard::admission::delivery::Settlement;
use switchboard::admission::{Refusal, Unreachable};
use switchboard::connectors::actor::INBOX_CAPACITY;
use switchboard::domain::{Event, Idn};
use switchboard::skill_runner::Outcome;
use switchboard::EngineConfig;

/// `user_message` on `sandbox` runs skill `Talk` of `Agent/Main`, with the default runner
/// (completes at once, recorded).
const TALK: &str = r#"
events:
  - {idn: user_message, skill_idn: Talk, integration_idn: sandbox}
"#;

/// The same with the manual runner: the test completes each invocation.
const TALK_MANUAL: &str = r#"
runner: {kind: in_process, name: manual}
events:
  - {idn: user_message, skill_idn: Talk, integration_idn: sandbox}
"#;

async fn talk(h: &Harness, flow: &str) {
    h.flow("Agent", "Main", flow).await;
}

/// Waits until the default runner has been invoked `n` times.
async fn invoked(h: &Harness, n: usize) {
    h.wait_recorded(&format!("{n} invocations"), |r| r.len() >= n)
        .await;
}

#[actix_rt::test]
async fn a_stalled_runner_pauses_intake_without_losing_events() {
    tokio::time::pause();
    let mut h = Harness::with_config(EngineConfig {
        inflight_limit: 4,
        invocation_timeout: Duration::from_secs(3600),
        ..EngineConfig::default()
    });
    h.connector("sandbox", "sb");
    talk(&h, TALK_MANUAL).await;
    // One persona: the first event runs (its permit is released when dispatched), the next
    // four wait in the flow instance queue holding their permits.
    let mut settled = Vec::new();
    for _ in 0..5 {
        settled.push(
            h.submit(h.event("sandbox", "sb", "user_message", "p"))
                .await,
        );
    }
    let (_, first) = h.next_manual().await;
    assert_eq!(settled.remove(0).await.unwrap(), Settlement::Done);
    let ingress = h.engine.ingress().clone();
    eventually("four events in flight", PATIENCE, || {
        std::future::ready((ingress.inflight() >= 4).then_some(()))
    })
    .await;
    // Full: a non-waiting submit is told to retry, and nothing is dead-lettered for it.
    let busy = ingress.try_submit(h.event("sandbox", "sb", "user_message", "p"), None);
    assert_eq!(busy, Err(Refusal::Busy));
    assert!(h.dead.is_empty());
    // A waiting submit waits...
    let waiting = {
        let e = h.event("sandbox", "sb", "user_message", "p");
        let engine = h.engine.clone();
        actix_rt::spawn(async move { engine.ingress().submit(e, None).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "intake pauses while the budget is used up"
    );
    // ...and goes through once the runner moves on.
    first.finish(Outcome::Completed, vec![]);
    waiting.await.unwrap().unwrap();
    for s in settled {
        let (_, reply) = h.next_manual().await;
        assert_eq!(s.await.unwrap(), Settlement::Done);
        reply.finish(Outcome::Completed, vec![]);
    }
    let (_, last) = h.next_manual().await;
    last.finish(Outcome::Completed, vec![]);
}

#[actix_rt::test]
async fn a_full_flow_instance_is_refused_at_admission_and_nothing_is_dead_lettered() {
    let mut h = Harness::with_config(EngineConfig {
        max_pending_per_flow_instance: 2,
        ..EngineConfig::default()
    });
    h.connector("sandbox", "sb");
    talk(&h, TALK_MANUAL).await;
    // One running and two queued: the instance of persona `p` is full.
    for _ in 0..3 {
        h.submit(h.event("sandbox", "sb", "user_message", "p"))
            .await;
    }
    let (running, reply) = h.next_manual().await;
    let ingress = h.engine.ingress().clone();
    assert_eq!(
        ingress
            .admit(h.event("sandbox", "sb", "user_message", "p"))
            .err(),
        Some(Refusal::FlowInstanceFull {
            agent: "Agent".into(),
            flow: "Main".into()
        }),
        "refused before anything is acknowledged"
    );
    assert!(h.dead.is_empty(), "a refusal for room is not dead-lettered");
    // Another persona's instance has room.
    assert!(ingress
        .admit(h.event("sandbox", "sb", "user_message", "q"))
        .is_ok());
    // Once the running invocation is done, `p` has room again.
    reply.finish(Outcome::Completed, vec![]);
    drop(running);
    let next = eventually("room for p again", PATIENCE, || {
        std::future::ready(
            ingress
                .admit(h.event("sandbox", "sb", "user_message", "p"))
                .ok(),
        )
    })
    .await;
    ingress.submit_admitted(next, None).await.unwrap();
    for _ in 0..3 {
        let (_, reply) = h.next_manual().await;
        reply.finish(Outcome::Completed, vec![]);
    }
    assert!(h.dead.is_empty(), "{:?}", h.dead_letter_codes());
}

#[actix_rt::test]
async fn a_full_connector_inbox_makes_intake_wait_and_loses_nothing() {
    let h = Harness::start();
    h.connector("sandbox", "sb");
    talk(&h, TALK).await;
    // The connector actor runs on this thread, so it drains nothing until the test awaits:
    // the inbox takes exactly its capacity.
    let ingress = h.engine.ingress().clone();
    for n in 0..INBOX_CAPACITY {
        let e = h.event("sandbox", "sb", "user_message", &n.to_string());
        assert_eq!(ingress.try_submit(e, None), Ok(()), "event {n} fits");
    }
    let over = h.event("sandbox", "sb", "user_message", "over");
    assert_eq!(ingress.try_submit(over, None), Err(Refusal::Busy));
    assert!(h.dead.is_empty(), "a busy answer records nothing");
    // A waiting submit goes through once the connector drains its inbox.
    let settled = h
        .send(h.event("sandbox", "sb", "user_message", "waited"))
        .await;
    assert_eq!(settled, Ok(Settlement::Done));
    let invoked = h.recorded.lock().unwrap().len();
    assert_eq!(
        invoked,
        INBOX_CAPACITY + 1,
        "every admitted event was invoked"
    );
}

#[actix_rt::test]
async fn a_full_flow_shard_inbox_dead_letters_the_overflow() {
    // The shard's inbox holds twice the in-flight limit: room for every admitted event and as
    // many internal ones. Internal events take no permit, so they can reach the bound.
    let h = Harness::with_config(EngineConfig {
        inflight_limit: 1,
        ..EngineConfig::default()
    });
    h.flow(
        "Agent",
        "Main",
        r#"
events:
  - {idn: timer, skill_idn: Tick, integration_idn: system}
"#,
    )
    .await;
    let persona = h.persona("api", "p");
    let timer = || {
        Event::for_persona(
            h.account.clone(),
            Idn::known("system"),
            Idn::known("system"),
            Idn::known("timer"),
            persona,
        )
    };
    // The shard runs on this thread: nothing is drained between these calls.
    let dispatcher = h.engine.dispatcher().clone();
    for _ in 0..3 {
        assert_eq!(dispatcher.route_internal(timer()), 1);
    }
    assert_eq!(h.dead_letter_codes(), vec!["flow_queue_full"]);
    // The two that fit are invoked.
    invoked(&h, 2).await;
}

#[actix_rt::test]
async fn a_stopped_connector_handles_what_it_admitted_and_refuses_the_rest() {
    let h = Harness::start();
    let id = h.connector("sandbox", "sb");
    talk(&h, TALK).await;
    let ingress = h.engine.ingress().clone();
    for n in 0..10 {
        let e = h.event("sandbox", "sb", "user_message", &n.to_string());
        assert_eq!(ingress.try_submit(e, None), Ok(()));
    }
    // Stopped with ten events in its inbox, none handled yet.
    h.engine.stop_connector(id).unwrap();
    let late = h
        .send(h.event("sandbox", "sb", "user_message", "late"))
        .await;
    assert!(
        matches!(
            late,
            Err(Refusal::Unreachable(Unreachable::ConnectorStopped { .. }))
        ),
        "{late:?}"
    );
    invoked(&h, 10).await;
    assert_eq!(h.dead_letter_codes(), vec!["connector_stopped"]);
}

#[actix_rt::test]
async fn a_batch_is_admitted_in_order_with_one_answer_per_event() {
    let h = Harness::start();
    h.connector("sandbox", "one");
    h.connector("sandbox", "two");
    talk(&h, TALK).await;
    let say = |connector: &str, text: &str| {
        h.event("sandbox", connector, "user_message", "alice")
            .with_argument("text", text)
    };
    let batch = vec![
        say("one", "first"),
        h.event("sandbox", "one", "no_such_event", "alice"),
        say("two", "second"),
        say("three", "lost"),
        say("one", "third"),
    ];
    let results = h
        .engine
        .ingress()
        .submit_batch(batch.into_iter().map(|e| (e, None)).collect())
        .await;
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok() && results[2].is_ok() && results[4].is_ok());
    assert!(
        matches!(results[1], Err(Refusal::UndeclaredEvent { .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(
            results[3],
            Err(Refusal::Unreachable(Unreachable::UnknownConnector { .. }))
        ),
        "{:?}",
        results[3]
    );
    assert_eq!(
        h.dead_letter_codes(),
        vec!["undeclared_event", "unknown_connector"]
    );
    invoked(&h, 3).await;
    let texts: Vec<String> = h
        .recorded
        .lock()
        .unwrap()
        .iter()
        .map(|i| i.event.event.arguments.get("text").unwrap_or("").to_owned())
        .collect();
    // Events of one connector keep their order; connectors are independent of each other
    // (their actors run side by side), in a batch as one by one.
    let at = |t: &str| texts.iter().position(|x| x == t).unwrap();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(at("first") < at("third"), "{texts:?}");
    assert!(texts.contains(&"second".to_owned()));
}
