//! Faults an operator meets, with the real daemon binary, a real nats-server and a real webhook
//! runner on loopback, counting outcomes: every command a skill sends is delivered once or
//! answered with one `result_error`, never both, never neither.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};
use common::nats::NatsServer;
use common::runner_server::{completed, RunnerServer};
use serde_json::json;
use switchboard::transport::client::Client;
use switchboard::wire::envelope::{ArgumentsWire, Encoding};

const WAIT: Duration = Duration::from_secs(30);
/// Commands each invocation answers with.
const PER_EVENT: usize = 3;
const EVENTS: usize = 3;
/// How long the NATS server stays away: the fault itself, not a wait for a result.
const OUTAGE: Duration = Duration::from_secs(15);
/// How long the runner takes to answer: the server is killed meanwhile (well within it).
const ANSWER_DELAY: Duration = Duration::from_secs(3);

/// A slow skill: each invocation takes `ms` (the fault), one at a time, then completes.
fn slow_runner(ms: u64) -> RunnerServer {
    RunnerServer::start(move |_| {
        std::thread::sleep(Duration::from_millis(ms));
        (200, completed(json!([])))
    })
}

/// Waits until `d` counted `n` completed invocations of `Bot/Main`.
async fn all_completed(d: &DaemonProcess, n: usize) {
    let done = format!(
        "switchboard_invocations_total{{agent=\"Bot\",flow=\"Main\",outcome=\"completed\"}} {n}"
    );
    common::eventually("every invocation completed", WAIT, || async {
        d.metrics().await.contains(&done).then_some(())
    })
    .await;
}

/// A runner answering every `user_message` with [`PER_EVENT`] telegram messages, each answer
/// `delay` after its request.
fn talking_runner(delay: Duration) -> RunnerServer {
    RunnerServer::start_slow(delay, |r| {
        let who = r.json["event"]["actor"]["external_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let commands: Vec<_> = (0..PER_EVENT)
            .map(|k| {
                json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
                       "command_idn": "send_message", "arguments": {"text": format!("{who}-{k}")}})
            })
            .collect();
        (200, completed(json!(commands)))
    })
}

#[actix_rt::test]
async fn commands_sent_during_a_nats_outage_are_delivered_once_each() {
    let dir = temp_dir("chaos-commands");
    let mut nats = NatsServer::start(&dir);
    // A short acknowledgement timeout makes the old retry budget (8 tries) end within the
    // outage: it gave the commands up after about 10 s here (each try also waits for the
    // client while disconnected).
    // The events' acknowledgements, made during the outage, are sent on reconnecting: a long
    // `ack_wait` keeps the restarted server from delivering them again first.
    let d = DaemonProcess::builder(&dir)
        .envs(nats.daemon_env())
        .env("SWITCHBOARD_TRANSPORT__NATS__PUBLISH_ACK_TIMEOUT_MS", "200")
        .env("SWITCHBOARD_TRANSPORT__NATS__ACK_WAIT_MS", "120000")
        .start();
    // The skill answers once the server is gone: its commands are made during the outage.
    let mut runner = talking_runner(ANSWER_DELAY);
    d.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    d.put_flow(
        "Bot",
        "Main",
        &json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
                "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram"}]}),
    )
    .await;
    let adapter = Client::connect(&nats.url(), "sb", Encoding::MessagePack)
        .await
        .unwrap();
    let commands = adapter
        .commands("SB_COMMANDS", "adapter", "default", "telegram", "bot")
        .await
        .unwrap();

    // Events come over HTTP (stored in the stream: 202), reach the runner, and the server goes
    // away before the skill answers each.
    for n in 0..EVENTS {
        let (s, v) = common::call(
            &d.client(),
            "POST",
            d.url("/v1/events"),
            Some(
                json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
                        "event_idn": "user_message", "actor": {"external_id": format!("user-{n}")},
                        "arguments": {"text": "hi"}}),
            ),
        )
        .await;
        assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{v}");
    }
    common::eventually("every invocation at the runner", WAIT, || async {
        (runner.arrived() == EVENTS).then_some(())
    })
    .await;
    nats.kill();
    for _ in 0..EVENTS {
        runner.next().await;
    }
    // The outage lasts longer than the old retry budget, and the daemon knows it is
    // disconnected; nothing is given up meanwhile.
    common::eventually("the daemon to see NATS gone", WAIT, || async {
        d.metrics()
            .await
            .contains("switchboard_transport_connected{transport=\"nats\"} 0")
            .then_some(())
    })
    .await;
    tokio::time::sleep(OUTAGE).await;
    let m = d.metrics().await;
    assert!(
        !m.contains("switchboard_dead_letters_total{reason=\"command_refused\"}"),
        "a command was given up during the outage:\n{m}"
    );
    nats.resume();

    // Every command arrives exactly once.
    let mut delivered: BTreeMap<uuid::Uuid, String> = BTreeMap::new();
    let mut copies = 0;
    while delivered.len() < EVENTS * PER_EVENT {
        let Some(c) = Client::next_command(&commands, WAIT).await.unwrap() else {
            panic!(
                "{} of {} commands delivered",
                delivered.len(),
                EVENTS * PER_EVENT
            );
        };
        let act = c.value.command_act_id.expect("an act id");
        let text = match &c.value.arguments {
            ArgumentsWire::Map(m) => m["text"].to_string(),
            ArgumentsWire::List(l) => l[0].value.to_string(),
        };
        copies += 1;
        delivered.insert(act, text);
        c.ack().await.unwrap();
    }
    assert!(
        Client::next_command(&commands, Duration::from_secs(2))
            .await
            .unwrap()
            .is_none(),
        "no copy follows"
    );
    assert_eq!(copies, EVENTS * PER_EVENT, "one copy each");
    let texts: std::collections::BTreeSet<_> = delivered.values().cloned().collect();
    assert_eq!(
        texts.len(),
        EVENTS * PER_EVENT,
        "every command, once: {texts:?}"
    );
    let letters: serde_json::Value =
        common::call(&d.client(), "GET", d.url("/v1/dead-letters"), None)
            .await
            .1;
    assert_eq!(letters, json!([]), "nothing refused");
    let m = d.metrics().await;
    assert!(
        m.contains(&format!(
            "switchboard_commands_total{{integration=\"telegram\",command=\"send_message\",outcome=\"sent\"}} {}",
            EVENTS * PER_EVENT
        )),
        "{m}"
    );
    eprintln!(
        "chaos counts: nats outage: {} commands sent by skills, {} delivered once, 0 result_error, 0 dead letters",
        EVENTS * PER_EVENT,
        delivered.len()
    );
}

#[actix_rt::test]
async fn an_overloaded_persona_is_told_to_retry_and_every_accepted_event_runs_once() {
    const SENT: usize = 12;
    let mut runner = slow_runner(100);
    let dir = temp_dir("chaos-overload");
    let d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_ENGINE__MAX_PENDING_PER_FLOW_INSTANCE", "3")
        .start();
    chat_on(&d, &runner.base).await;
    let post = |n: usize| {
        let (c, url) = (d.client(), d.url("/v1/events"));
        async move {
            c.post(url)
                .json(
                    &json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                              "event_idn": "user_message", "actor": {"external_id": "alice"},
                              "arguments": {"text": format!("m-{n}")}}),
                )
                .send()
                .await
                .unwrap()
        }
    };
    // A burst from one persona: what does not fit is refused with 429 and Retry-After.
    let mut refused = Vec::new();
    for n in 0..SENT {
        let r = post(n).await;
        match r.status() {
            reqwest::StatusCode::ACCEPTED => {}
            reqwest::StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.headers()["retry-after"], "1");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "flow_instance_full", "{body}");
                refused.push(n);
            }
            s => panic!("event {n}: {s}"),
        }
    }
    assert!(!refused.is_empty(), "the burst overflowed the instance");
    let first_refusals = refused.len();
    // The adapter sends each refused event again until it is taken.
    for n in refused {
        common::eventually(&format!("event {n} taken"), WAIT, || async {
            (post(n).await.status() == reqwest::StatusCode::ACCEPTED).then_some(())
        })
        .await;
    }
    // Every event ran exactly once, and nothing was dead-lettered for lack of room.
    let mut ran = BTreeMap::new();
    while ran.len() < SENT {
        let inv = runner.next().await;
        let text = inv.json["event"]["arguments"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned();
        *ran.entry(text).or_insert(0) += 1;
    }
    assert!(ran.values().all(|n| *n == 1), "{ran:?}");
    all_completed(&d, SENT).await;
    assert!(runner.rx.try_recv().is_err(), "no second run of any event");
    let (_, letters) = common::call(&d.client(), "GET", d.url("/v1/dead-letters"), None).await;
    assert_eq!(letters, json!([]), "nothing dead-lettered");
    let m = d.metrics().await;
    assert!(
        m.contains("switchboard_events_rejected_total{reason=\"flow_instance_full\"}"),
        "refusals counted"
    );
    eprintln!(
        "chaos counts: one persona overloaded: {SENT} events, {first_refusals} first refused with 429, all {} accepted ran once, 0 dead letters",
        ran.len()
    );
}

/// The sandbox connector `chat` and the flow `Bot/Main` on the webhook runner at `runner`.
async fn chat_on(d: &DaemonProcess, runner: &str) {
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.put_flow(
        "Bot",
        "Main",
        &json!({"runner": {"kind": "webhook", "url": format!("{runner}/skills")},
                "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]}),
    )
    .await;
}

/// POSTs event `text` from `who` to `d`, expecting 202.
async fn accepted(d: &DaemonProcess, who: &str, text: &str) {
    let (s, v) = common::call(
        &d.client(),
        "POST",
        d.url("/v1/events"),
        Some(
            json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                    "event_idn": "user_message", "actor": {"external_id": who},
                    "arguments": {"text": text}}),
        ),
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{v}");
}

/// What the runner saw of each event (by its text): invocation ids and whether each delivery
/// said `redelivered`.
type Deliveries = BTreeMap<String, Vec<(String, bool)>>;

fn record(seen: &mut Deliveries, r: &common::runner_server::Received) {
    let text = r.json["event"]["arguments"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = r.json["invocation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let again = r.json["redelivered"].as_bool().unwrap_or(false);
    seen.entry(text).or_default().push((id, again));
}

/// Every event reached the runner as one invocation, and at most one delivery of it did not
/// say it may be a repeat.
fn once_each(seen: &Deliveries, events: usize) {
    assert_eq!(seen.len(), events, "every event reached the runner");
    for (text, deliveries) in seen {
        let ids: std::collections::BTreeSet<_> = deliveries.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 1, "{text}: one invocation: {deliveries:?}");
        let unmarked = deliveries.iter().filter(|(_, again)| !again).count();
        assert!(unmarked <= 1, "{text}: a repeat not marked: {deliveries:?}");
    }
}

#[actix_rt::test]
async fn a_runner_down_longer_than_the_old_retry_budget_loses_nothing() {
    const EVENTS: usize = 12;
    // Down: every attempt answers 503.
    let mut runner = RunnerServer::start(|_| (503, "{}".into()));
    let dir = temp_dir("chaos-runner-down");
    let d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_RUNNERS__BACKOFF_INITIAL_MS", "20")
        .env("SWITCHBOARD_RUNNERS__BACKOFF_MAX_MS", "200")
        .start();
    chat_on(&d, &runner.base).await;
    for n in 0..EVENTS {
        accepted(&d, &format!("user-{}", n % 4), &format!("m-{n}")).await;
    }
    // Down well past the old budget (3 attempts): some invocation is tried a sixth time.
    let mut tries: BTreeMap<String, usize> = BTreeMap::new();
    while tries.values().all(|n| *n < 6) {
        let r = runner.next().await;
        *tries
            .entry(r.json["invocation_id"].to_string())
            .or_default() += 1;
    }
    let attempts_while_down: usize = tries.values().sum();
    // Back up: every event completes once.
    runner.answer_with(|_| (200, completed(json!([]))));
    all_completed(&d, EVENTS).await;
    let (_, letters) = common::call(&d.client(), "GET", d.url("/v1/dead-letters"), None).await;
    assert_eq!(letters, json!([]), "nothing dead-lettered");
    let m = d.metrics().await;
    assert!(
        m.contains(
            "switchboard_runner_attempts_total{agent=\"Bot\",flow=\"Main\",result=\"retry\"}"
        ),
        "the runner's health shows the outage"
    );
    eprintln!(
        "chaos counts: runner down: {EVENTS} events acknowledged, {attempts_while_down} attempts answered 503, {EVENTS} completed once, 0 dead letters"
    );
}

#[actix_rt::test]
async fn the_daemon_killed_mid_stream_and_mid_replay_runs_every_event_once() {
    const EVENTS: usize = 30;
    let mut runner = slow_runner(50);
    let dir = temp_dir("chaos-kill-replay");
    let start = || DaemonProcess::builder(&dir).start();
    let d = start();
    chat_on(&d, &runner.base).await;
    for n in 0..EVENTS {
        accepted(&d, &format!("user-{}", n % 3), &format!("m-{n}")).await;
    }
    let mut seen = Deliveries::new();
    // Mid-stream: a few ran, most wait in their flow instances.
    for _ in 0..3 {
        record(&mut seen, &runner.next().await);
    }
    d.kill9();
    // Mid-replay: the restart replays what was left; it is killed again after a few more.
    let d = start();
    for _ in 0..3 {
        record(&mut seen, &runner.next().await);
    }
    d.kill9();
    let d = start();
    common::eventually("every event ran", WAIT, || {
        while let Ok(r) = runner.rx.try_recv() {
            record(&mut seen, &r);
        }
        std::future::ready((seen.len() == EVENTS).then_some(()))
    })
    .await;
    // The last run drains: nothing left in the inbox, nothing dead-lettered.
    common::eventually("the inbox drained", WAIT, || async {
        let db = rusqlite::Connection::open(dir.join("switchboard.db")).ok()?;
        db.query_row("SELECT count(*) FROM inbox", [], |r| r.get::<_, i64>(0))
            .ok()
            .filter(|n| *n == 0)
    })
    .await;
    while let Ok(r) = runner.rx.try_recv() {
        record(&mut seen, &r);
    }
    once_each(&seen, EVENTS);
    let (_, letters) = common::call(&d.client(), "GET", d.url("/v1/dead-letters"), None).await;
    assert_eq!(letters, json!([]), "nothing dead-lettered");
    let deliveries: usize = seen.values().map(Vec::len).sum();
    let marked = seen.values().flatten().filter(|(_, again)| *again).count();
    eprintln!(
        "chaos counts: daemon killed mid-stream and mid-replay: {EVENTS} events acknowledged, each one invocation; {deliveries} deliveries, {marked} of them marked redelivered; 0 dead letters"
    );
}
