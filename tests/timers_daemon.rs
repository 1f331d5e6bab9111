//! `program_timer` in the real daemon: a timer set by a webhook runner's answer fires into its
//! flow; timers that fall due while the daemon is down (killed with SIGKILL) each fire once
//! after the restart, late, and a repeat is only ever a marked redelivery; a kill in the middle
//! of firing loses none either.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::daemon::{temp_dir, DaemonProcess};
use common::eventually;
use common::runner_server::{completed, Received, RunnerServer};
use serde_json::{json, Value};

/// A runner whose `Talk` sets `n` one-shot timers due at `due`, and that completes the rest.
fn runner(n: usize, due: chrono::DateTime<Utc>) -> RunnerServer {
    runner_taking(n, due, Duration::ZERO)
}

/// As [`runner`], taking `on_timer` to answer each `OnTimer`.
fn runner_taking(n: usize, due: chrono::DateTime<Utc>, on_timer: Duration) -> RunnerServer {
    let fire_at = due.to_rfc3339_opts(SecondsFormat::Millis, true);
    RunnerServer::start(move |r: &Received| {
        if r.json["skill_idn"] == "OnTimer" {
            std::thread::sleep(on_timer);
        }
        if r.json["skill_idn"] != "Talk" {
            return (200, completed(json!([])));
        }
        let commands: Vec<Value> = (0..n)
            .map(|k| {
                json!({"v": 1, "integration_idn": "program_timer", "connector_idn": "timers",
                       "command_idn": "set_timer",
                       "arguments": {"timerName": format!("t{k}"), "fireAt": fire_at, "note": "from the runner"}})
            })
            .collect();
        (200, completed(Value::Array(commands)))
    })
}

async fn setup(d: &DaemonProcess, runner: &str) {
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "program_timer",
        json!({"title": "Timers", "connector_idn": "timers"}),
    )
    .await;
    let flow = json!({
        "runner": {"kind": "webhook", "url": format!("{runner}/skills"), "max_attempts": 5},
        "events": [
            {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
            {"idn": "result_success", "skill_idn": "OnSet", "integration_idn": "program_timer"},
            {"idn": "timer", "skill_idn": "OnTimer", "integration_idn": "program_timer"}
        ]
    });
    d.put_flow("Bot", "Main", &flow).await;
}

async fn talk(d: &DaemonProcess) {
    let r = d
        .client()
        .post(d.url("/v1/events"))
        .json(
            &json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                      "event_idn": "user_message", "actor": {"external_id": "alice"},
                      "arguments": {"text": "remind me"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
}

async fn timers(d: &DaemonProcess) -> Vec<Value> {
    d.client()
        .get(d.url("/v1/timers?connector=timers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits for runner POSTs until `n` of `skill` came; returns them with everything else seen.
async fn collect(runner: &mut RunnerServer, skill: &str, n: usize) -> Vec<Received> {
    let mut got = Vec::new();
    while got
        .iter()
        .filter(|r: &&Received| r.json["skill_idn"] == skill)
        .count()
        < n
    {
        got.push(runner.next().await);
    }
    got
}

#[actix_rt::test]
async fn a_timer_set_by_a_webhook_runner_fires_into_its_flow() {
    let due = Utc::now() + chrono::Duration::seconds(2);
    let mut runner = runner(1, due);
    let dir = temp_dir("timer");
    let d = DaemonProcess::start(&dir, &[]);
    setup(&d, &runner.base).await;
    talk(&d).await;
    let seen = collect(&mut runner, "OnSet", 1).await;
    let set = seen
        .iter()
        .find(|r| r.json["skill_idn"] == "OnSet")
        .unwrap();
    let args = &set.json["event"]["arguments"];
    let listed = timers(&d).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["timer_name"], "t0");
    assert_eq!(listed[0]["arguments"]["note"], "from the runner");
    let fired = collect(&mut runner, "OnTimer", 1).await;
    let fired = fired
        .iter()
        .find(|r| r.json["skill_idn"] == "OnTimer")
        .unwrap();
    let persona = &set.json["flow_instance"]["persona_id"];
    assert_eq!(
        &fired.json["flow_instance"]["persona_id"], persona,
        "alice's timer"
    );
    let fired_args: BTreeMap<String, String> = args_of(&fired.json["event"]["arguments"]);
    assert_eq!(fired_args["timerName"], "t0");
    assert_eq!(fired_args["note"], "from the runner");
    assert!(args.is_array() || args.is_object());
    eventually("the timer to be done", Duration::from_secs(10), || async {
        timers(&d).await.is_empty().then_some(())
    })
    .await;
    let metrics = d.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "switchboard_timers_fired_total 1"),
        "{metrics}"
    );
}

fn args_of(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Array(list) => list
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_owned(),
                    a["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        other => panic!("arguments: {other}"),
    }
}

#[actix_rt::test]
async fn timers_due_while_the_daemon_was_killed_fire_once_after_the_restart() {
    const N: usize = 20;
    let due = Utc::now() + chrono::Duration::seconds(4);
    let mut runner = runner(N, due);
    let dir = temp_dir("timer-crash");
    let builder = DaemonProcess::builder(&dir);
    let d = builder.start();
    setup(&d, &runner.base).await;
    talk(&d).await;
    // Every timer is durable once its result_success was emitted.
    collect(&mut runner, "OnSet", N).await;
    assert_eq!(timers(&d).await.len(), N);
    d.kill9();
    // The due time passes while the daemon is down: this wait is the point of the test.
    let until_due = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(until_due).await;
    let d = builder.start();
    let mut fired: BTreeMap<String, Vec<(String, bool, f64)>> = BTreeMap::new();
    while fired.len() < N {
        let r = runner.next().await;
        if r.json["skill_idn"] != "OnTimer" {
            continue;
        }
        let args = args_of(&r.json["event"]["arguments"]);
        fired.entry(args["timerName"].clone()).or_default().push((
            r.json["invocation_id"].as_str().unwrap().to_owned(),
            r.json["redelivered"] == true,
            args["lateBySeconds"].parse().unwrap(),
        ));
    }
    eventually(
        "every timer to be done",
        Duration::from_secs(10),
        || async { timers(&d).await.is_empty().then_some(()) },
    )
    .await;
    // What else reached the runner meanwhile.
    while let Ok(r) = runner.rx.try_recv() {
        if r.json["skill_idn"] == "OnTimer" {
            let args = args_of(&r.json["event"]["arguments"]);
            fired.entry(args["timerName"].clone()).or_default().push((
                r.json["invocation_id"].as_str().unwrap().to_owned(),
                r.json["redelivered"] == true,
                args["lateBySeconds"].parse().unwrap(),
            ));
        }
    }
    assert_eq!(fired.len(), N, "every timer fired");
    for (name, firings) in &fired {
        let (first_id, _, late) = &firings[0];
        assert!(*late > 0.0, "{name} fired late, after the restart: {late}");
        for (id, redelivered, _) in &firings[1..] {
            assert_eq!(id, first_id, "{name}: a repeat is the same invocation");
            assert!(redelivered, "{name}: a repeat is marked as a redelivery");
        }
    }
}

/// The `OnTimer` invocations among `got`: timer name, invocation id, marked redelivered.
fn firings(got: &[Received]) -> Vec<(String, String, bool)> {
    got.iter()
        .filter(|r| r.json["skill_idn"] == "OnTimer")
        .map(|r| {
            (
                args_of(&r.json["event"]["arguments"])["timerName"].clone(),
                r.json["invocation_id"].as_str().unwrap().to_owned(),
                r.json["redelivered"] == true,
            )
        })
        .collect()
}

#[actix_rt::test]
async fn a_kill_in_the_middle_of_firing_loses_no_timer_and_repeats_only_marked() {
    const N: usize = 40;
    let due = Utc::now() + chrono::Duration::seconds(3);
    // One persona's invocations run one at a time: 40 firings take the runner 40 x 40 ms, so
    // the kill lands among them (a firing's timer moves on once the runner has its invocation).
    let mut runner = runner_taking(N, due, Duration::from_millis(40));
    let dir = temp_dir("timer-crash-firing");
    let builder = DaemonProcess::builder(&dir);
    let d = builder.start();
    setup(&d, &runner.base).await;
    talk(&d).await;
    collect(&mut runner, "OnSet", N).await;
    let before = firings(&collect(&mut runner, "OnTimer", 10).await);
    d.kill9();
    assert!(
        before.iter().all(|(_, _, marked)| !marked),
        "first firings are not marked"
    );
    let d = builder.start();
    let mut after = Vec::new();
    let mut seen: std::collections::BTreeSet<String> =
        before.iter().map(|(name, _, _)| name.clone()).collect();
    while seen.len() < N {
        let got = firings(&[runner.next().await]);
        seen.extend(got.iter().map(|(name, _, _)| name.clone()));
        after.extend(got);
    }
    eventually(
        "every timer to be done",
        Duration::from_secs(20),
        || async { timers(&d).await.is_empty().then_some(()) },
    )
    .await;
    // What else reached the runner meanwhile.
    while let Ok(r) = runner.rx.try_recv() {
        after.extend(firings(&[r]));
    }
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (name, id, _) in before.iter().chain(&after) {
        let first = ids.entry(name.clone()).or_insert_with(|| id.clone());
        assert_eq!(first, id, "{name}: a repeat is the same invocation");
    }
    assert_eq!(ids.len(), N, "every timer fired");
    for (name, _, marked) in &after {
        assert!(
            marked,
            "{name}: fired after the restart, so marked as a redelivery"
        );
    }
    let repeated = after
        .iter()
        .filter(|(name, _, _)| before.iter().any(|(b, _, _)| b == name))
        .count();
    println!(
        "kill mid-firing: {} invocations before the kill, {} after (of which {repeated} repeats, marked), {N} timers",
        before.len(),
        after.len()
    );
}
