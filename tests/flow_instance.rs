//! Flow instance behaviour on tokio's paused clock: queue, interrupt, cancel, uninterruptible,
//! invocation deadlines and idle retirement. Every wait is on a condition or a channel; the
//! clock only moves when the whole runtime is idle.

mod common;

use std::time::Duration;

use common::{eventually, Harness, PATIENCE};
use switchboard::admission::delivery::Settlement;
use switchboard::domain::{Command, Idn};
use switchboard::skill_runner::Outcome;
use switchboard::EngineConfig;

const FLOW: &str = r#"
runner: {kind: in_process, name: manual}
invocation_timeout_ms: 5000
events:
  - {idn: q_event, skill_idn: Queued, integration_idn: api, interrupt_mode: queue}
  - {idn: i_event, skill_idn: Interrupting, integration_idn: api, interrupt_mode: interrupt}
  - {idn: c_event, skill_idn: Cancelling, integration_idn: api, interrupt_mode: cancel}
"#;

async fn setup(config: EngineConfig) -> Harness {
    tokio::time::pause();
    let h = Harness::with_config(config);
    h.connector("api", "webhook");
    h.connector("telegram", "bot");
    h.flow("Agent", "Main", FLOW).await;
    h
}

/// Waits (on the paused clock) until every flow instance retired.
async fn retired(h: &Harness) {
    eventually("every flow instance retired", PATIENCE, || {
        std::future::ready((h.engine.flow_instances() == 0).then_some(()))
    })
    .await;
}

fn ev(h: &Harness, event: &str) -> switchboard::domain::Event {
    h.event("api", "webhook", event, "alice")
}

fn say(h: &Harness, text: &str) -> Command {
    Command::new(
        h.account.clone(),
        Idn::known("telegram"),
        Idn::known("bot"),
        Idn::known("send_message"),
    )
    .with_argument("text", text)
}

#[actix_rt::test]
async fn queue_runs_one_at_a_time_in_order() {
    let mut h = setup(EngineConfig::default()).await;
    let p = h.persona("api", "alice");
    let events: Vec<_> = (0..3).map(|_| ev(&h, "q_event")).collect();
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    let mut settled = Vec::new();
    for e in events {
        settled.push(h.submit(e).await);
    }
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.event.event.id, ids[0]);
    let s = h
        .wait_instance("Agent", "Main", p, |s| s.pending.len() == 2)
        .await;
    assert_eq!(s.running.map(|r| r.1), Some(ids[0]));
    assert_eq!(s.pending, ids[1..].to_vec());
    assert!(
        h.manual.invocations.try_recv().is_err(),
        "one invocation at a time"
    );
    reply.finish(Outcome::Completed, vec![]);
    for id in &ids[1..] {
        let (inv, reply) = h.next_manual().await;
        assert_eq!(inv.event.event.id, *id);
        assert_eq!(inv.skill.as_str(), "Queued");
        reply.finish(Outcome::Completed, vec![]);
    }
    for s in settled {
        assert_eq!(s.await.unwrap(), Settlement::Done);
    }
}

#[actix_rt::test]
async fn interrupt_cancels_the_running_drops_pending_and_runs_now() {
    let mut h = setup(EngineConfig::default()).await;
    let p = h.persona("api", "alice");
    let first = ev(&h, "q_event");
    let pending = ev(&h, "q_event");
    let barge = ev(&h, "i_event");
    let (pending_id, barge_id) = (pending.id, barge.id);
    h.submit(first).await;
    let (_, first_reply) = h.next_manual().await;
    let pending_settled = h.submit(pending).await;
    h.wait_instance("Agent", "Main", p, |s| s.pending == vec![pending_id])
        .await;
    h.submit(barge).await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(
        inv.event.event.id, barge_id,
        "the interrupting event runs next"
    );
    assert_eq!(inv.skill.as_str(), "Interrupting");
    // The interrupted invocation was cancelled at its runner.
    assert_eq!(
        h.manual.cancelled.recv().await,
        Some(first_reply.invocation_id())
    );
    // The superseded event settles as an outcome, never invoked.
    assert_eq!(pending_settled.await.unwrap(), Settlement::Done);
    // The interrupted run's late commands never leave; the new run's do.
    first_reply.finish(Outcome::Completed, vec![say(&h, "stale")]);
    reply.finish(Outcome::Completed, vec![say(&h, "fresh")]);
    let out = h.relay.recv().await.unwrap();
    assert_eq!(out.command.arguments.get("text"), Some("fresh"));
    // The barge's outcome was handled before its command reached egress: had the superseded
    // event still been queued, it would have been handed to the runner by now.
    assert!(
        h.manual.invocations.try_recv().is_err(),
        "the superseded event never runs"
    );
    let s = h.wait_instance("Agent", "Main", p, |_| true).await;
    assert!(s.running.is_none() && s.pending.is_empty());
}

#[actix_rt::test]
async fn an_uninterruptible_invocation_finishes_first() {
    let mut h = setup(EngineConfig::default()).await;
    let p = h.persona("api", "alice");
    let mut first = ev(&h, "q_event");
    first.uninterruptible = true;
    let barge = ev(&h, "i_event");
    let barge_id = barge.id;
    h.submit(first).await;
    let (_, first_reply) = h.next_manual().await;
    h.submit(barge).await;
    let s = h
        .wait_instance("Agent", "Main", p, |s| s.pending == vec![barge_id])
        .await;
    assert!(s.running.is_some(), "still running");
    assert!(h.manual.cancelled.try_recv().is_err(), "not cancelled");
    first_reply.finish(Outcome::Completed, vec![say(&h, "kept")]);
    let (inv, _) = h.next_manual().await;
    assert_eq!(inv.event.event.id, barge_id);
    assert_eq!(
        h.relay.recv().await.unwrap().command.arguments.get("text"),
        Some("kept")
    );
}

#[actix_rt::test]
async fn cancel_drops_the_event_when_busy_and_runs_it_when_idle() {
    let mut h = setup(EngineConfig::default()).await;
    let first = ev(&h, "q_event");
    h.submit(first).await;
    let (_, reply) = h.next_manual().await;
    let dropped = ev(&h, "c_event");
    let dropped_settled = h.submit(dropped).await;
    assert_eq!(dropped_settled.await.unwrap(), Settlement::Done);
    reply.finish(Outcome::Completed, vec![]);
    let later = ev(&h, "c_event");
    let later_id = later.id;
    h.submit(later).await;
    let (inv, _) = h.next_manual().await;
    assert_eq!(inv.event.event.id, later_id);
    assert_eq!(inv.skill.as_str(), "Cancelling");
}

#[actix_rt::test]
async fn a_deadline_times_the_invocation_out_and_the_queue_moves_on() {
    let mut h = setup(EngineConfig::default()).await;
    let start = tokio::time::Instant::now();
    h.submit(ev(&h, "q_event")).await;
    let next = ev(&h, "q_event");
    let next_id = next.id;
    h.submit(next).await;
    let (first, first_reply) = h.next_manual().await;
    // Nobody answers: the paused clock advances to the 5 s deadline.
    assert_eq!(h.manual.cancelled.recv().await, Some(first.id));
    assert!(start.elapsed() >= Duration::from_secs(5));
    let (inv, _) = h.next_manual().await;
    assert_eq!(inv.event.event.id, next_id);
    // A late answer of the timed-out run changes nothing and sends nothing.
    first_reply.finish(Outcome::Completed, vec![say(&h, "too late")]);
    assert!(h.relay.try_recv().is_err());
}

#[actix_rt::test]
async fn idle_instances_retire_and_come_back() {
    let config = EngineConfig {
        flow_idle_timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    };
    let mut h = setup(config).await;
    h.submit(ev(&h, "q_event")).await;
    let (_, reply) = h.next_manual().await;
    let done_at = tokio::time::Instant::now();
    reply.finish(Outcome::Completed, vec![]);
    assert_eq!(h.engine.flow_instances(), 1);
    retired(&h).await;
    assert!(
        done_at.elapsed() >= Duration::from_secs(60),
        "not before its idle timeout"
    );
    assert!(done_at.elapsed() < Duration::from_secs(62));
    // A new event starts a fresh instance.
    let again = ev(&h, "q_event");
    let again_id = again.id;
    h.submit(again).await;
    let (inv, _) = h.next_manual().await;
    assert_eq!(inv.event.event.id, again_id);
    assert_eq!(h.engine.flow_instances(), 1);
}

#[actix_rt::test]
async fn work_inside_the_idle_timeout_postpones_retirement() {
    let config = EngineConfig {
        flow_idle_timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    };
    let mut h = setup(config).await;
    h.submit(ev(&h, "q_event")).await;
    let (_, reply) = h.next_manual().await;
    reply.finish(Outcome::Completed, vec![]);
    // The idle timer armed now fires at +60 s; a second event finishes at +40 s.
    tokio::time::sleep(Duration::from_secs(40)).await;
    h.submit(ev(&h, "q_event")).await;
    let (_, reply) = h.next_manual().await;
    let last_done = tokio::time::Instant::now();
    reply.finish(Outcome::Completed, vec![]);
    retired(&h).await;
    assert!(
        last_done.elapsed() >= Duration::from_secs(60),
        "idle for the whole timeout since the last invocation, not since the first"
    );
    assert!(last_done.elapsed() < Duration::from_secs(62));
}
