//! Commands to external adapters in the embedded mode (no NATS), on the real daemon over
//! loopback: a telegram connector with a delivery endpoint gets its commands there signed per
//! Standard Webhooks (verified with the `standardwebhooks` crate and the secret its creation
//! showed once); one with a command stream gets them as server-sent events, each sent again
//! until acknowledged: after a reconnect and after kill -9 and a restart, the stream resumes
//! from the last acknowledged command; one with neither cannot run (400 naming the setting).
//! The delivery secret rotates with an overlap (both signatures meanwhile).

mod common;

use std::time::Duration;

use common::call;
use common::daemon::{temp_dir, DaemonProcess};
use common::runner_server::{completed, Received, RunnerServer};
use common::wait::{within, PATIENCE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The flow runner: a telegram user message is answered with `send_message` echoing it.
fn echo(r: &Received) -> (u16, String) {
    let e = &r.json["event"];
    if e["event_idn"] != "user_message" {
        return (200, completed(json!([])));
    }
    let text = match &e["arguments"] {
        Value::Array(list) => list
            .iter()
            .find(|a| a["name"] == "text")
            .map(|a| a["value"].clone())
            .unwrap(),
        other => other["text"].clone(),
    };
    let command = json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
        "command_idn": "send_message", "arguments": {"text": text}});
    (200, completed(json!([command])))
}

/// Creates the telegram connector `bot` with `settings` (and a bot token); answers its id and
/// the creation answer's revealed delivery secret.
async fn telegram(d: &DaemonProcess, settings: Value) -> (String, String) {
    let mut all = vec![json!({"idn": "bot_token", "value": "123:abc"})];
    all.extend(settings.as_array().unwrap().iter().cloned());
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url("/v1/integrations/telegram/connectors"),
        Some(json!({"title": "Bot", "connector_idn": "bot", "settings": all})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["revealed"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["idn"] == "command_delivery_secret"))
        .and_then(|x| x["value"].as_str())
        .expect("the delivery secret, revealed once")
        .to_owned();
    (v["id"].as_str().unwrap().to_owned(), secret)
}

async fn run(d: &DaemonProcess, id: &str) -> (StatusCode, Value) {
    call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/run")),
        None,
    )
    .await
}

async fn flow(d: &DaemonProcess, runner: &RunnerServer) {
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram"}]});
    d.put_flow("Bot", "Main", &flow).await;
}

/// The adapter pushes the user message `text` from alice.
async fn say(d: &DaemonProcess, text: &str) {
    let e = json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
        "event_idn": "user_message", "actor": {"external_id": "alice"},
        "arguments": {"text": text, "chatId": "42"}});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(e)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

#[actix_rt::test]
async fn a_connector_with_no_way_for_its_commands_does_not_run() {
    let dir = temp_dir("adapter-none");
    let d = DaemonProcess::start(&dir, &[]);
    let (id, _) = telegram(&d, json!([])).await;
    let (s, v) = run(&d, &id).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "settings.command_delivery_url", "{v}");
    // Either way makes it runnable.
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/settings")),
        Some(json!([{"idn": "command_stream", "value": "true"}])),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = run(&d, &id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[actix_rt::test]
async fn commands_reach_the_delivery_endpoint_signed() {
    let _runner = RunnerServer::start(echo);
    let mut adapter = RunnerServer::start(|_| (204, String::new()));
    let dir = temp_dir("adapter-endpoint");
    let d = DaemonProcess::start(&dir, &[]);
    let (id, secret) = telegram(
        &d,
        json!([{"idn": "command_delivery_url", "value": format!("{}/commands", adapter.base)}]),
    )
    .await;
    let (s, v) = run(&d, &id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    flow(&d, &_runner).await;

    say(&d, "one").await;
    say(&d, "two").await;
    let (a, b) = (adapter.next().await, adapter.next().await);
    for r in [&a, &b] {
        assert!(r.signed_with(&secret), "not verified: {:?}", r.headers);
        assert_eq!(r.path, "/commands");
        assert_eq!(r.json["type"], "send_message");
        assert_eq!(
            r.json["data"]["command_act_id"].as_str().unwrap(),
            r.headers["webhook-id"].to_str().unwrap()
        );
    }
    let texts = [&a, &b].map(|r| r.json["data"]["arguments"]["text"].clone());
    assert_eq!(
        texts,
        [json!("one"), json!("two")],
        "in order per conversation"
    );

    // The delivery secret rotates: during the overlap a delivery verifies with either.
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/rotate-secret")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["setting"], "command_delivery_secret");
    let new = v["secret"].as_str().unwrap().to_owned();
    say(&d, "three").await;
    let c = adapter.next().await;
    assert!(
        c.signed_with(&new) && c.signed_with(&secret),
        "{:?}",
        c.headers
    );
}

/// One server-sent event.
#[derive(Debug)]
struct Frame {
    id: String,
    event: String,
    data: Value,
}

/// A connector's command stream, read frame by frame.
struct CommandStream {
    body: reqwest::Response,
    buf: String,
}

impl CommandStream {
    async fn open(d: &DaemonProcess, id: &str) -> CommandStream {
        let r = d
            .client()
            .get(d.url(&format!("/v1/integrations/connectors/{id}/commands")))
            .send()
            .await
            .expect("open the stream");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        CommandStream {
            body: r,
            buf: String::new(),
        }
    }

    /// The next frame with an event (comments skipped).
    async fn next(&mut self) -> Frame {
        within("the next command frame", PATIENCE, async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) = (String::new(), String::new(), None);
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            id = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            event = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = Some(serde_json::from_str(v).expect("data is JSON"));
                        }
                    }
                    if let Some(data) = data {
                        return Frame { id, event, data };
                    }
                }
                let chunk = self
                    .body
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream stays open");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
    }
}

async fn ack(d: &DaemonProcess, id: &str, frame: &Frame) -> u64 {
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/commands/ack")),
        Some(json!({"ids": [frame.id]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["acknowledged"].as_u64().unwrap()
}

fn text(f: &Frame) -> &str {
    f.data["data"]["arguments"]["text"].as_str().unwrap()
}

#[actix_rt::test]
async fn the_command_stream_resumes_from_the_last_acknowledged_command() {
    let runner = RunnerServer::start(echo);
    let dir = temp_dir("adapter-stream");
    let builder = DaemonProcess::builder(&dir);
    let d = builder.start();
    let (id, _) = telegram(&d, json!([{"idn": "command_stream", "value": "true"}])).await;
    let (s, v) = run(&d, &id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    flow(&d, &runner).await;

    let mut stream = CommandStream::open(&d, &id).await;
    say(&d, "one").await;
    let one = stream.next().await;
    assert_eq!((one.event.as_str(), text(&one)), ("command", "one"));
    assert_eq!(one.data["data"]["command_act_id"], json!(one.id));
    assert_eq!(ack(&d, &id, &one).await, 1);

    // Not acknowledged: sent again, same id, on the next stream.
    say(&d, "two").await;
    let two = stream.next().await;
    assert_eq!(text(&two), "two");
    drop(stream);
    let mut stream = CommandStream::open(&d, &id).await;
    let again = stream.next().await;
    assert_eq!((again.id.as_str(), text(&again)), (two.id.as_str(), "two"));
    assert_eq!(ack(&d, &id, &again).await, 1);

    // Not acknowledged when the daemon dies: sent again after the restart, the rest never.
    say(&d, "three").await;
    let three = stream.next().await;
    assert_eq!(text(&three), "three");
    drop(stream);
    d.kill9();
    let d = builder.start();
    let mut stream = CommandStream::open(&d, &id).await;
    let again = stream.next().await;
    assert_eq!(
        (again.id.as_str(), text(&again)),
        (three.id.as_str(), "three")
    );
    assert_eq!(ack(&d, &id, &again).await, 1);
    say(&d, "four").await;
    let four = stream.next().await;
    assert_eq!(text(&four), "four", "nothing acknowledged came back");
    assert_eq!(ack(&d, &id, &four).await, 1);

    // A stream is the connector's, in its account, with the scope an adapter's token has.
    let (s, _) = call(
        &d.client(),
        "GET",
        d.url(&format!(
            "/v1/integrations/connectors/{}/commands",
            uuid::Uuid::nil()
        )),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let reader = common::daemon::bearer_client(&d.account_token("default", &["read"]).await);
    let s = reader
        .get(d.url(&format!("/v1/integrations/connectors/{id}/commands")))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// A skill that holds its turn: "hold" sends two commands and keeps running (`pending`);
/// anything else completes with one.
fn holding(r: &Received) -> (u16, String) {
    let e = &r.json["event"];
    if e["event_idn"] != "user_message" {
        return (200, completed(json!([])));
    }
    let say = |text: &str| {
        json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
               "command_idn": "send_message", "arguments": {"text": text}})
    };
    if e.to_string().contains("\"hold\"") {
        let body = json!({"v": 1, "outcome": "pending", "commands": [say("first"), say("second")]});
        return (200, body.to_string());
    }
    (200, completed(json!([say("third")])))
}

/// The value of the series `name{labels}` in the daemon's metrics (0 when absent).
async fn metric(d: &DaemonProcess, series: &str) -> f64 {
    let text = d.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn a_newer_message_recalls_what_the_adapter_holds_and_withdraws_the_rest() {
    let runner = RunnerServer::start(holding);
    let dir = temp_dir("adapter-recall");
    let d = DaemonProcess::start(&dir, &[]);
    let (id, _) = telegram(&d, json!([{"idn": "command_stream", "value": "true"}])).await;
    let (s, v) = run(&d, &id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram",
                    "interrupt_mode": "interrupt"}]});
    d.put_flow("Bot", "Main", &flow).await;

    // The adapter holds "first" (no acknowledgement); "second" waits behind it.
    let mut stream = CommandStream::open(&d, &id).await;
    say(&d, "hold").await;
    let first = stream.next().await;
    assert_eq!(text(&first), "first");

    // A newer message interrupts the turn: the held command is recalled on the stream.
    say(&d, "stop").await;
    let recall = stream.next().await;
    assert_eq!(recall.event, "recall", "{recall:?}");
    assert_eq!(recall.data["type"], "recall");
    assert_eq!(recall.data["data"]["command_act_id"], json!(first.id));
    assert_eq!(recall.data["data"]["command_idn"], "send_message");

    // The adapter took it back and says so; the withdrawn "second" never comes.
    assert_eq!(ack(&d, &id, &first).await, 1);
    let answer = json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
        "event_idn": "recalled", "command_act_id": first.id, "arguments": {}});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(answer)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let next = stream.next().await;
    assert_eq!(
        text(&next),
        "third",
        "the newer turn's command, not the withdrawn one"
    );
    assert_eq!(ack(&d, &id, &next).await, 1);

    let recalls = "switchboard_command_recalls_total{outcome=";
    common::wait::eventually("the recall counted", PATIENCE, || async {
        let got = (
            metric(&d, &format!("{recalls}\"withdrawn\"}}")).await,
            metric(&d, &format!("{recalls}\"notified\"}}")).await,
            metric(&d, &format!("{recalls}\"recalled\"}}")).await,
        );
        (got == (1.0, 1.0, 1.0)).then_some(())
    })
    .await;
    let withdrawn = metric(
        &d,
        "switchboard_outbox_deliveries_total{destination_kind=\"adapter\",outcome=\"withdrawn\"}",
    )
    .await;
    assert_eq!(withdrawn, 1.0);
}
