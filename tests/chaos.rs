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
