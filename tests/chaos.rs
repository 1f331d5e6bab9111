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

/// A runner answering every `user_message` with [`PER_EVENT`] telegram messages.
fn talking_runner() -> RunnerServer {
    RunnerServer::start(|r| {
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
    let d = DaemonProcess::builder(&dir)
        .envs(nats.daemon_env())
        .env("SWITCHBOARD_TRANSPORT__NATS__PUBLISH_ACK_TIMEOUT_MS", "200")
        .start();
    let mut runner = talking_runner();
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

    // The server goes away; events keep coming over HTTP, and the skill answers each.
    nats.kill();
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
    // A slow skill: each invocation takes 100 ms (the fault), one at a time.
    let mut runner = RunnerServer::start(|_| {
        std::thread::sleep(Duration::from_millis(100));
        (200, completed(json!([])))
    });
    let dir = temp_dir("chaos-overload");
    let d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_ENGINE__MAX_PENDING_PER_FLOW_INSTANCE", "3")
        .start();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.put_flow(
        "Bot",
        "Main",
        &json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
                "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]}),
    )
    .await;
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
    let done = format!(
        "switchboard_invocations_total{{agent=\"Bot\",flow=\"Main\",outcome=\"completed\"}} {SENT}"
    );
    common::eventually("every invocation completed", WAIT, || async {
        d.metrics().await.contains(&done).then_some(())
    })
    .await;
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
