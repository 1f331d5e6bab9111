//! The native `program_timer` integration through the engine, on tokio's paused clock: timers
//! set by a skill's commands fire their events into the flows.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use switchboard::domain::{Command, Idn};
use switchboard::invocation::{Invocation, Outcome, Reply};
use switchboard::natives::component::StartGate;
use switchboard::natives::program_timer::book::{Book, Firing, MemoryBook};
use switchboard::natives::program_timer::service::{LatePolicy, Settings, LOAD_LIMIT};
use switchboard::natives::program_timer::spec::{Timer, TimerKey};
use switchboard::natives::program_timer::ProgramTimer;

const FLOW: &str = r#"
runner: {kind: in_process, name: manual}
events:
  - {idn: user_message, skill_idn: Talk, integration_idn: telegram}
  - {idn: timer, skill_idn: OnTimer, integration_idn: program_timer}
  - {idn: follow_up_due, skill_idn: OnFollowUp, integration_idn: program_timer}
  - {idn: timer_cancelled, skill_idn: OnCancelled, integration_idn: program_timer}
  - {idn: result_success, skill_idn: OnSuccess, integration_idn: program_timer}
  - {idn: result_error, skill_idn: OnError, integration_idn: program_timer}
"#;

fn settings(late: LatePolicy) -> Settings {
    Settings {
        window: Duration::from_secs(60),
        grace: Duration::from_secs(60),
        late,
        load_limit: LOAD_LIMIT,
        max_per_account: usize::MAX,
    }
}

async fn setup(book: &MemoryBook, late: LatePolicy) -> Harness {
    setup_with(book, settings(late)).await
}

async fn setup_with(book: &MemoryBook, settings: Settings) -> Harness {
    tokio::time::pause();
    let (open, start) = StartGate::new();
    let h = Harness::builder()
        .component(ProgramTimer::component_with(
            Some(Arc::new(book.clone())),
            settings,
        ))
        .started(start)
        .start();
    h.connector("telegram", "bot");
    h.connector("program_timer", "timers");
    h.flow("Agent", "Main", FLOW).await;
    // As the daemon does once connectors and flows are back.
    open.open_now();
    h
}

fn timer_cmd(verb: &str, args: &[(&str, &str)]) -> Command {
    let mut c = Command::new(
        Idn::known("default"),
        Idn::known("program_timer"),
        Idn::known("timers"),
        Idn::known(verb),
    );
    for (n, v) in args {
        c = c.with_argument(n, *v);
    }
    c
}

/// Alice says something; `Talk` answers with `commands`.
async fn talk(h: &mut Harness, commands: Vec<Command>) {
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "Talk");
    reply.finish(Outcome::Completed, commands);
}

/// The next invocation, which must be of `skill`; finished at once.
async fn next(h: &mut Harness, skill: &str) -> Invocation {
    let (inv, reply): (Invocation, Reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), skill, "{:?}", inv.event.event);
    reply.finish(Outcome::Completed, vec![]);
    inv
}

fn arg<'a>(inv: &'a Invocation, name: &str) -> Option<&'a str> {
    inv.event.event.arguments.get(name)
}

/// A timer of `key` firing every hour from `due_ms`.
fn hourly(key: TimerKey, due_ms: i64) -> Timer {
    Timer {
        key,
        due_ms,
        interval_ms: Some(3_600_000),
        repeatable: true,
        event: Idn::known("timer"),
        arguments: Vec::new(),
        session: None,
    }
}

fn millis(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap()
        .timestamp_millis()
}

#[actix_rt::test]
async fn a_one_shot_timer_fires_once_into_the_flow_for_its_persona() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    let alice = h.persona("telegram", "alice");
    talk(
        &mut h,
        vec![timer_cmd(
            "set_timer",
            &[
                ("timerName", "t1"),
                ("interval", "120"),
                ("repeatable", "false"),
            ],
        )],
    )
    .await;
    let ok = next(&mut h, "OnSuccess").await;
    assert_eq!(ok.persona, alice);
    let next_fire = arg(&ok, "nextFireAt")
        .expect("the next fire time")
        .to_owned();
    assert_eq!(arg(&ok, "result"), Some(next_fire.as_str()));
    assert!(ok.event.event.command_act_id.is_some());
    let fired = next(&mut h, "OnTimer").await;
    assert_eq!(fired.persona, alice, "fires for the persona that set it");
    assert_eq!(arg(&fired, "timerName"), Some("t1"));
    assert_eq!(arg(&fired, "fireAt"), Some(next_fire.as_str()));
    // On time, within tokio's timer granularity (1 ms).
    let late: f64 = arg(&fired, "lateBySeconds").unwrap().parse().unwrap();
    assert!(late <= 0.002, "{late}");
    let fired_at = millis(arg(&fired, "firedAt").unwrap());
    assert!(
        (0..=2).contains(&(fired_at - millis(&next_fire))),
        "on time"
    );
    assert_eq!(fired.event.event.connector.as_str(), "timers");
    assert!(!fired.event.event.redelivered);
    // Done: nothing left to fire, and its firing was forgotten once handed on.
    common::eventually("the firing to be forgotten", common::PATIENCE, || async {
        (book.timers().is_empty() && book.firings().is_empty()).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_repeating_timer_fires_on_schedule_until_cancelled_by_name() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    talk(
        &mut h,
        vec![timer_cmd(
            "set_timer",
            &[("timerName", "tick"), ("interval", "60")],
        )],
    )
    .await;
    let first = millis(arg(&next(&mut h, "OnSuccess").await, "nextFireAt").unwrap());
    let mut fire_times = Vec::new();
    for _ in 0..3 {
        let fired = next(&mut h, "OnTimer").await;
        fire_times.push(millis(arg(&fired, "fireAt").unwrap()));
    }
    assert_eq!(
        fire_times,
        vec![first, first + 60_000, first + 120_000],
        "every interval from the schedule, no drift"
    );
    // Replace by name: the same name, another interval, one timer.
    talk(
        &mut h,
        vec![timer_cmd(
            "set_timer",
            &[("timerName", "tick"), ("interval", "600")],
        )],
    )
    .await;
    next(&mut h, "OnSuccess").await;
    assert_eq!(book.timers().len(), 1);
    assert_eq!(book.timers()[0].interval_ms, Some(600_000));
    talk(
        &mut h,
        vec![timer_cmd("cancel_timer", &[("timerName", "tick")])],
    )
    .await;
    let cancelled = next(&mut h, "OnSuccess").await;
    assert_eq!(arg(&cancelled, "result"), Some("cancelled"));
    assert!(book.timers().is_empty());
    // An hour of virtual time later, nothing more has fired.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        h.manual.invocations.try_recv().is_err(),
        "no firing after the cancel"
    );
}

#[actix_rt::test]
async fn enabled_false_cancels_and_event_idn_fires_another_event_with_the_extra_arguments() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    talk(
        &mut h,
        vec![
            timer_cmd("set_timer", &[("timerName", "gone"), ("interval", "60")]),
            timer_cmd("set_timer", &[("timerName", "gone"), ("enabled", "false")]),
            timer_cmd(
                "set_timer",
                &[
                    ("timerName", "invoice"),
                    ("interval", "90"),
                    ("repeatable", "false"),
                    ("eventIdn", "follow_up_due"),
                    ("topic", "invoice 42"),
                ],
            ),
        ],
    )
    .await;
    for _ in 0..3 {
        next(&mut h, "OnSuccess").await;
    }
    let fired = next(&mut h, "OnFollowUp").await;
    assert_eq!(fired.event.event.event.as_str(), "follow_up_due");
    assert_eq!(arg(&fired, "timerName"), Some("invoice"));
    assert_eq!(arg(&fired, "topic"), Some("invoice 42"));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        h.manual.invocations.try_recv().is_err(),
        "the disabled timer never fires"
    );
}

#[actix_rt::test]
async fn invalid_timers_are_answered_with_result_error_naming_the_argument() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    talk(
        &mut h,
        vec![
            timer_cmd("set_timer", &[("timerName", "a"), ("interval", "30")]),
            timer_cmd("set_timer", &[("timerName", "b")]),
            timer_cmd(
                "set_timer",
                &[("timerName", "c"), ("fireAt", "2001-01-01T00:00:00Z")],
            ),
            // The audit's timer storm: 1e16 s overflowed the due time, which then fired
            // forever. Out of range now, as is a fireAt more than ten years ahead.
            timer_cmd("set_timer", &[("timerName", "d"), ("interval", "1e16")]),
            timer_cmd(
                "set_timer",
                &[("timerName", "e"), ("fireAt", "2999-01-01T00:00:00Z")],
            ),
        ],
    )
    .await;
    let mut fields = Vec::new();
    for _ in 0..5 {
        let e = next(&mut h, "OnError").await;
        fields.push(arg(&e, "field").unwrap().to_owned());
    }
    assert_eq!(
        fields,
        ["interval", "fireAt", "fireAt", "interval", "fireAt"]
    );
    assert!(book.timers().is_empty());
    assert_eq!(h.dead_letter_codes(), vec!["command_refused"; 5]);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(h.manual.invocations.try_recv().is_err(), "nothing fires");
}

/// A row an older build stored with an interval that overflows (the audit's `1e16`, kept as
/// `i64::MAX` ms) fires once, is removed with a dead letter saying why, and never fires again.
#[actix_rt::test]
async fn a_stored_timer_that_cannot_be_rearmed_fires_once_and_is_removed() {
    let book = MemoryBook::default();
    let key = TimerKey {
        account: Idn::known("default"),
        connector: Idn::known("timers"),
        persona: switchboard::domain::PersonaId(uuid::Uuid::from_u128(5)),
        name: "storm".into(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    book.save(&Timer {
        interval_ms: Some(i64::MAX),
        ..hourly(key, now + 1_000)
    })
    .await
    .unwrap();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    let fired = next(&mut h, "OnTimer").await;
    assert_eq!(arg(&fired, "timerName"), Some("storm"));
    common::eventually("the timer removed", common::PATIENCE, || {
        let gone = book.timers().is_empty();
        async move { gone.then_some(()) }
    })
    .await;
    assert_eq!(h.dead_letter_codes(), ["malformed"]);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(h.manual.invocations.try_recv().is_err(), "fired once only");
}

/// Deleting a `program_timer` connector removes its timers: held in memory (due soon) or only
/// in the book (due in a week); none fires afterwards.
#[actix_rt::test]
async fn deleting_its_connector_removes_its_timers_held_or_not() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    talk(
        &mut h,
        vec![
            timer_cmd("set_timer", &[("timerName", "soon"), ("interval", "60")]),
            timer_cmd(
                "set_timer",
                &[("timerName", "later"), ("interval", "604800")],
            ),
        ],
    )
    .await;
    next(&mut h, "OnSuccess").await;
    next(&mut h, "OnSuccess").await;
    assert_eq!(book.timers().len(), 2);
    let id = h
        .engine
        .registry()
        .directory()
        .find(&h.account, "program_timer", "timers")
        .expect("the timers connector")
        .id;
    h.engine.stop_connector(id).unwrap();
    h.engine.delete_connector(id).unwrap();
    common::eventually("the connector's timers removed", common::PATIENCE, || {
        let gone = book.timers().is_empty();
        async move { gone.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8 * 24 * 3600)).await;
    assert!(h.manual.invocations.try_recv().is_err(), "nothing fires");
    assert!(
        h.dead_letter_codes().is_empty(),
        "{:?}",
        h.dead_letter_codes()
    );
}

/// An account holds at most `limits.timers_per_account` timers; at the limit a new one is
/// refused naming it, and a replacement still passes.
#[actix_rt::test]
async fn an_account_holds_at_most_its_limit_of_timers() {
    let book = MemoryBook::default();
    let mut h = setup_with(
        &book,
        Settings {
            max_per_account: 2,
            ..settings(LatePolicy::FireOnce)
        },
    )
    .await;
    talk(
        &mut h,
        vec![
            timer_cmd("set_timer", &[("timerName", "a"), ("interval", "3600")]),
            timer_cmd("set_timer", &[("timerName", "b"), ("interval", "3600")]),
            timer_cmd("set_timer", &[("timerName", "c"), ("interval", "3600")]),
            timer_cmd("set_timer", &[("timerName", "a"), ("interval", "7200")]),
        ],
    )
    .await;
    next(&mut h, "OnSuccess").await;
    next(&mut h, "OnSuccess").await;
    let refused = next(&mut h, "OnError").await;
    assert_eq!(arg(&refused, "field"), Some("timerName"));
    assert!(
        arg(&refused, "error")
            .unwrap()
            .contains("limits.timers_per_account"),
        "{:?}",
        arg(&refused, "error")
    );
    next(&mut h, "OnSuccess").await;
    assert_eq!(book.timers().len(), 2);
}

#[actix_rt::test]
async fn a_session_scoped_timer_is_cancelled_when_its_session_ends() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    talk(
        &mut h,
        vec![timer_cmd(
            "set_timer",
            &[
                ("timerName", "nudge"),
                ("interval", "3600"),
                ("scope", "session"),
                ("sessionConnector", "telegram/bot"),
            ],
        )],
    )
    .await;
    next(&mut h, "OnSuccess").await;
    assert!(
        book.timers()[0].session.is_some(),
        "bound to alice's session"
    );
    // Alice's conversation ends: her telegram session ends, and the timer with it.
    h.submit(h.event("telegram", "bot", "conversation_ended", "alice"))
        .await;
    let cancelled = next(&mut h, "OnCancelled").await;
    assert_eq!(arg(&cancelled, "timerName"), Some("nudge"));
    assert_eq!(arg(&cancelled, "reason"), Some("conversation_ended"));
    assert!(book.timers().is_empty());
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert!(h.manual.invocations.try_recv().is_err(), "it never fires");
}

#[actix_rt::test]
async fn at_start_a_recorded_firing_is_replayed_and_an_overdue_timer_fires_once_late() {
    let book = MemoryBook::default();
    let persona = switchboard::domain::PersonaId::derive(
        &Idn::known("default"),
        &Idn::known("telegram"),
        "alice",
    );
    let key = |name: &str| TimerKey {
        account: Idn::known("default"),
        connector: Idn::known("timers"),
        persona,
        name: name.to_owned(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    // A firing recorded by the last run, whose event was never handed on.
    // (Builds before the timer's row became its firing record kept them apart.)
    book.record_firing(Firing {
        id: uuid::Uuid::from_u128(77),
        key: key("recorded"),
        event: Idn::known("timer"),
        arguments: vec![("timerName".into(), "recorded".into())],
        scheduled_ms: now - 5_000,
        redelivered: false,
    });
    // A repeating timer that fell due ten minutes ago, while the daemon was down.
    book.save(&hourly(key("overdue"), now - 600_000))
        .await
        .unwrap();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    let replayed = next(&mut h, "OnTimer").await;
    assert_eq!(
        replayed.event.event.id,
        uuid::Uuid::from_u128(77),
        "the same event id"
    );
    assert!(replayed.event.event.redelivered, "marked as a redelivery");
    let late = next(&mut h, "OnTimer").await;
    assert_eq!(arg(&late, "timerName"), Some("overdue"));
    assert!(
        late.event.event.redelivered,
        "due before this run started: a run before may have emitted it unrecorded"
    );
    let late_by: f64 = arg(&late, "lateBySeconds").unwrap().parse().unwrap();
    assert!((599.0..700.0).contains(&late_by), "{late_by}");
    // Once, then on its schedule: due an hour after the missed time (the row moves on once
    // the firing's invocation is done, after the reply above reached its flow instance).
    let due = now - 600_000 + 3_600_000;
    common::eventually("the overdue timer re-armed", common::PATIENCE, || {
        std::future::ready((book.timers()[0].due_ms == due).then_some(()))
    })
    .await;
}

#[actix_rt::test]
async fn the_skip_policy_moves_an_overdue_repeating_timer_to_its_next_interval() {
    let book = MemoryBook::default();
    let persona = switchboard::domain::PersonaId::derive(
        &Idn::known("default"),
        &Idn::known("telegram"),
        "alice",
    );
    let now = chrono::Utc::now().timestamp_millis();
    let key = TimerKey {
        account: Idn::known("default"),
        connector: Idn::known("timers"),
        persona,
        name: "daily".into(),
    };
    book.save(&hourly(key, now - 600_000)).await.unwrap();
    let mut h = setup(&book, LatePolicy::Skip).await;
    let fired = next(&mut h, "OnTimer").await;
    let scheduled = millis(arg(&fired, "fireAt").unwrap());
    assert_eq!(
        scheduled,
        now - 600_000 + 3_600_000,
        "the missed firing was skipped"
    );
    let late: f64 = arg(&fired, "lateBySeconds").unwrap().parse().unwrap();
    assert!(late <= 0.002, "on schedule: {late}");
}

#[actix_rt::test]
async fn timers_past_a_load_s_limit_fire_once_each_even_when_more_than_a_load_share_a_due_time() {
    let book = MemoryBook::default();
    let persona = switchboard::domain::PersonaId::derive(
        &Idn::known("default"),
        &Idn::known("telegram"),
        "alice",
    );
    let now = chrono::Utc::now().timestamp_millis();
    // 40 one-shot timers, a load reads 10: 15 of them due at one instant (a load stops among
    // them, and the next must read on past its last key), the others spread around it.
    let due = |k: i64| match k {
        0..=4 => now + 1_000 + k * 100,
        5..=19 => now + 2_000,
        _ => now + 2_000 + (k - 19) * 100,
    };
    for k in 0..40 {
        let key = TimerKey {
            account: Idn::known("default"),
            connector: Idn::known("timers"),
            persona,
            name: format!("t{k:02}"),
        };
        book.save(&Timer {
            interval_ms: None,
            repeatable: false,
            ..hourly(key, due(k))
        })
        .await
        .unwrap();
    }
    let mut h = setup_with(
        &book,
        Settings {
            load_limit: 10,
            ..settings(LatePolicy::FireOnce)
        },
    )
    .await;
    let mut fired = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let inv = next(&mut h, "OnTimer").await;
        let name = arg(&inv, "timerName").unwrap().to_owned();
        let scheduled = millis(arg(&inv, "fireAt").unwrap());
        let k: i64 = name[1..].parse().unwrap();
        assert_eq!(scheduled, due(k), "{name} fires at its own time");
        assert!(!inv.event.event.redelivered);
        assert!(fired.insert(name.clone()), "{name} fired twice");
    }
    assert_eq!(fired.len(), 40);
    // Four loads hold the 40, one more may run as the last fire. A load per firing (as a
    // window ending at a cut load's last due time used to ask) would be dozens.
    let loads = book.loads();
    assert!((4..=6).contains(&loads), "{loads} loads");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        h.manual.invocations.try_recv().is_err(),
        "nothing fires again"
    );
    common::eventually("every timer to be moved on", common::PATIENCE, || async {
        book.timers().is_empty().then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_repeating_timer_whose_interval_outlasts_the_window_fires_each_time_on_schedule() {
    let book = MemoryBook::default();
    let mut h = setup(&book, LatePolicy::FireOnce).await;
    // Every 10 minutes; the window holds one minute: each re-arm falls past it and is held
    // again only when a load reaches it.
    talk(
        &mut h,
        vec![timer_cmd(
            "set_timer",
            &[("timerName", "slow"), ("interval", "600")],
        )],
    )
    .await;
    let first = millis(arg(&next(&mut h, "OnSuccess").await, "nextFireAt").unwrap());
    for k in 0..3 {
        let fired = next(&mut h, "OnTimer").await;
        assert_eq!(millis(arg(&fired, "fireAt").unwrap()), first + k * 600_000);
        let late: f64 = arg(&fired, "lateBySeconds").unwrap().parse().unwrap();
        assert!(late <= 0.002, "on time: {late}");
        assert!(!fired.event.event.redelivered);
        let next_due = first + (k + 1) * 600_000;
        common::eventually("the timer to move on in the book", common::PATIENCE, || {
            let book = &book;
            async move { (book.timers()[0].due_ms == next_due).then_some(()) }
        })
        .await;
    }
    assert!(
        h.manual.invocations.try_recv().is_err(),
        "once per interval"
    );
}
