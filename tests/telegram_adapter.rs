//! The reference Telegram adapter (`switchboard-telegram`), the real binary over loopback,
//! against a local fake of the Bot API (`common/bot_api.rs`). The way in against a recording
//! stand-in for the daemon's `POST /v1/events`: text messages become `user_message` events,
//! the offset confirms only what the daemon took. The way out with deliveries signed by the
//! test exactly as the daemon signs them (the crate's `Signer`): `send_message` is sent once
//! and reported, a recall deletes the message or is too late, refusals are answered. And the
//! loop on the real daemon: a Telegram user message in, the runner's `send_message` out to
//! the Bot API, its `result_success` back to the skill.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bot_api::{text_update, FakeBotApi, TOKEN};
use common::call;
use common::daemon::{temp_dir, DaemonProcess};
use common::runner_server::{completed, Received, RunnerServer};
use common::wait::{eventually, PATIENCE};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::outbound::{Signer, SigningKey};
use uuid::Uuid;

/// The delivery secret the way-out tests sign with.
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The daemon token the adapter is given.
const DAEMON_TOKEN: &str = "sbt_test-token";

/// The adapter binary, running until dropped.
struct Adapter {
    child: Child,
    /// Its delivery endpoint.
    commands: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Adapter {
    /// Starts the adapter for connector `bot`, the daemon at `daemon`, the Bot API at `bot_api`.
    fn start(daemon: &str, token: &str, secret: &str, bot_api: &str) -> Adapter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-telegram"))
            .env_clear()
            .env("SWITCHBOARD_URL", daemon)
            .env("SWITCHBOARD_TOKEN", token)
            .env("SWITCHBOARD_CONNECTOR", "bot")
            .env("SWITCHBOARD_DELIVERY_SECRET", secret)
            .env("TELEGRAM_BOT_TOKEN", TOKEN)
            .env("TELEGRAM_API_URL", bot_api)
            .env("TELEGRAM_POLL_TIMEOUT", "5")
            .env("TELEGRAM_ADAPTER_LISTEN", "127.0.0.1:0")
            .env("TELEGRAM_ADAPTER_LOG_JSON", "true")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the adapter starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ = tx.send(v["fields"]["address"].as_str().unwrap().to_owned());
                    }
                }
                l.lock().unwrap().push(line);
            }
        });
        let Ok(address) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("the adapter did not start: {:#?}", logs.lock().unwrap());
        };
        Adapter {
            child,
            commands: format!("http://{address}/commands"),
            logs,
        }
    }

    /// Every log line so far, as one text.
    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the adapter with `vars` over a valid configuration, expecting it to refuse to start;
/// answers what it wrote to stderr.
fn refused_start(vars: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard-telegram"))
        .env_clear()
        .env("SWITCHBOARD_TOKEN", DAEMON_TOKEN)
        .env("SWITCHBOARD_CONNECTOR", "bot")
        .env("SWITCHBOARD_DELIVERY_SECRET", SECRET)
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_ADAPTER_LISTEN", "127.0.0.1:0")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the adapter runs");
    assert!(!out.status.success(), "{vars:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_option_stops_the_start_naming_it() {
    let check = |vars: &[(&str, &str)], named: &str| {
        let stderr = refused_start(vars);
        assert!(stderr.contains(named), "{vars:?}: {stderr}");
        for secret in [SECRET, TOKEN, DAEMON_TOKEN] {
            assert!(
                !stderr.contains(secret),
                "{vars:?} shows a secret: {stderr}"
            );
        }
    };
    check(&[("SWITCHBOARD_CONNECTOR", "Support-Bot")], "--connector");
    check(
        &[("SWITCHBOARD_DELIVERY_SECRET", "not base64!")],
        "--delivery-secret",
    );
    check(&[("TELEGRAM_POLL_TIMEOUT", "3600")], "--poll-timeout");
    check(&[("SWITCHBOARD_URL", "not a url")], "--daemon-url");
}

/// A stand-in for the daemon's `POST /v1/events`: records each event, answers 202.
fn events_sink() -> RunnerServer {
    RunnerServer::start(|_| {
        (
            202,
            json!({"id": Uuid::now_v7(), "status": "accepted"}).to_string(),
        )
    })
}

/// The next event the stand-in received (with the adapter's token).
async fn next_event(daemon: &mut RunnerServer) -> Received {
    let r = daemon.next().await;
    assert_eq!(r.path, "/v1/events");
    assert_eq!(
        r.headers["authorization"].to_str().unwrap(),
        format!("Bearer {DAEMON_TOKEN}")
    );
    r
}

/// A delivery as the daemon makes it (body and Standard Webhooks headers, signed with
/// `secret`; `webhook-id` the act).
fn delivery(secret: &str, kind: &str, act: Uuid, arguments: Value) -> (HeaderMap, Vec<u8>) {
    let body = json!({"type": kind, "timestamp": chrono::Utc::now().to_rfc3339(),
        "data": {"command_act_id": act, "command_id": Uuid::now_v7(), "persona_id": Uuid::now_v7(),
                 "connector_idn": "bot", "arguments": arguments}});
    let body = serde_json::to_vec(&body).unwrap();
    let mut headers = HeaderMap::new();
    Signer::new(SigningKey::parse(secret).unwrap())
        .sign(
            &mut headers,
            &act.to_string(),
            chrono::Utc::now().timestamp(),
            &body,
        )
        .unwrap();
    headers.insert("content-type", "application/json".parse().unwrap());
    (headers, body)
}

/// POSTs a delivery to the adapter; its status and JSON answer.
async fn deliver(
    adapter: &Adapter,
    (headers, body): (HeaderMap, Vec<u8>),
) -> (StatusCode, HeaderMap, Value) {
    let r = reqwest::Client::new()
        .post(&adapter.commands)
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the adapter answers");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn send_message(act: Uuid, text: &str) -> (HeaderMap, Vec<u8>) {
    delivery(
        SECRET,
        "send_message",
        act,
        json!({"text": text, "chatId": "5551234"}),
    )
}

fn recall(act: Uuid) -> (HeaderMap, Vec<u8>) {
    delivery(SECRET, "recall", act, json!({}))
}

#[actix_rt::test]
async fn text_messages_become_user_messages_and_the_offset_confirms_them() {
    let bot = FakeBotApi::start();
    let mut daemon = events_sink();
    let _adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);
    bot.state
        .push(text_update(10, 5551234, "Do you open on Sunday?"));
    bot.state.push(
        json!({"update_id": 11, "message": {"message_id": 2, "date": 1,
        "chat": {"id": 5551234, "type": "private"}, "sticker": {"file_id": "x"}}}),
    );
    bot.state.push(text_update(12, 777, "hello"));

    let first = next_event(&mut daemon).await.json;
    assert_eq!(first["integration_idn"], "telegram");
    assert_eq!(first["connector_idn"], "bot");
    assert_eq!(first["event_idn"], "user_message");
    assert_eq!(
        first["external_event_id"], "10",
        "the update id: a redelivery is a duplicate"
    );
    assert_eq!(first["actor"]["external_id"], "5551234", "the chat id");
    assert_eq!(first["arguments"]["text"], "Do you open on Sunday?");
    assert_eq!(first["arguments"]["chatId"], "5551234");
    assert_eq!(first["arguments"]["username"], "ada");
    let second = next_event(&mut daemon).await.json;
    assert_eq!(second["external_event_id"], "12", "the sticker is no event");
    assert_eq!(second["actor"]["external_id"], "777");

    // The next poll confirms all three; the first had no offset.
    eventually("a getUpdates confirming update 12", PATIENCE, || async {
        bot.state.offsets().contains(&Some(13)).then_some(())
    })
    .await;
    assert_eq!(bot.state.offsets()[0], None);
}

#[actix_rt::test]
async fn a_message_the_daemon_cannot_take_yet_is_sent_again_before_the_offset_moves() {
    let bot = FakeBotApi::start();
    let state = bot.state.clone();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = posts.clone();
    // Busy once (503 with Retry-After), then taken.
    let mut daemon = RunnerServer::start(move |_| {
        let mut posts = seen.lock().unwrap();
        posts.push(state.offsets());
        if posts.len() == 1 {
            (
                503,
                json!({"error": {"code": "busy", "message": "busy"}}).to_string(),
            )
        } else {
            (
                202,
                json!({"id": Uuid::now_v7(), "status": "accepted"}).to_string(),
            )
        }
    });
    let _adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);
    bot.state.push(text_update(40, 5551234, "anyone there?"));
    let a = next_event(&mut daemon).await.json;
    let b = next_event(&mut daemon).await.json;
    assert_eq!(a, b, "the same event again");
    assert!(
        posts
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .all(|o| *o != Some(41)),
        "the offset did not pass the update before the daemon took it"
    );
    eventually("a getUpdates confirming update 40", PATIENCE, || async {
        bot.state.offsets().contains(&Some(41)).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_signed_send_message_is_sent_once_and_reported() {
    let mut bot = FakeBotApi::start();
    let mut daemon = events_sink();
    let adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);
    let act = Uuid::now_v7();
    let (status, _, answer) = deliver(&adapter, send_message(act, "Yes, from 10:00.")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "sent");
    let call = bot.next_call().await;
    assert_eq!(call.method, "sendMessage");
    assert_eq!(call.body["chat_id"], "5551234");
    assert_eq!(call.body["text"], "Yes, from 10:00.");
    let result = next_event(&mut daemon).await.json;
    assert_eq!(result["event_idn"], "result_success");
    assert_eq!(result["command_act_id"], act.to_string());
    assert_eq!(result["external_event_id"], format!("result-{act}"));
    assert_eq!(result["arguments"]["result"], "1", "Telegram's message id");
    assert!(result.get("actor").is_none(), "the act routes it");

    // The daemon sends it again (its answer lost, say): taken, not sent twice.
    let (status, _, answer) = deliver(&adapter, send_message(act, "Yes, from 10:00.")).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("done"))
    );
    assert_eq!(bot.state.send_calls(), 1);
    assert!(
        !adapter.log_text().contains(TOKEN),
        "the bot token shows in no log line"
    );
}

#[actix_rt::test]
async fn an_unsigned_or_forged_delivery_is_refused() {
    let bot = FakeBotApi::start();
    let daemon = events_sink();
    let adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);
    let check = |case: &'static str, field: &'static str| {
        move |(status, _, answer): (StatusCode, HeaderMap, Value)| {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid_signature", "{case}");
            assert_eq!(answer["error"]["field"], field, "{case}");
        }
    };
    let act = Uuid::now_v7();
    let (_, body) = send_message(act, "hi");
    check("unsigned", "webhook-id")(deliver(&adapter, (HeaderMap::new(), body)).await);
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let forged = delivery(
        other,
        "send_message",
        act,
        json!({"text": "hi", "chatId": "1"}),
    );
    check("another secret", "webhook-signature")(deliver(&adapter, forged).await);
    let (mut headers, body) = send_message(act, "hi");
    headers.insert("webhook-timestamp", "1000000000".parse().unwrap());
    check("stale", "webhook-timestamp")(deliver(&adapter, (headers, body)).await);
    assert_eq!(bot.state.send_calls(), 0);
    assert_eq!(daemon.arrived(), 0);
}

#[actix_rt::test]
async fn a_recall_deletes_the_sent_message_or_is_too_late() {
    let mut bot = FakeBotApi::start();
    let mut daemon = events_sink();
    let adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);

    // Sent, then recalled: deleted.
    let act = Uuid::now_v7();
    deliver(&adapter, send_message(act, "a draft")).await;
    assert_eq!(bot.next_call().await.method, "sendMessage");
    assert_eq!(
        next_event(&mut daemon).await.json["event_idn"],
        "result_success"
    );
    let (status, _, answer) = deliver(&adapter, recall(act)).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("recalled"))
    );
    let call = bot.next_call().await;
    assert_eq!(call.method, "deleteMessage");
    assert_eq!(call.body, json!({"chat_id": 5551234, "message_id": 1}));
    let recalled = next_event(&mut daemon).await.json;
    assert_eq!(recalled["event_idn"], "recalled");
    assert_eq!(recalled["command_act_id"], act.to_string());
    assert_eq!(recalled["external_event_id"], format!("recall-{act}"));

    // Sent, no longer deletable: too late.
    let late = Uuid::now_v7();
    deliver(&adapter, send_message(late, "said already")).await;
    bot.next_call().await;
    next_event(&mut daemon).await;
    bot.state.make_undeletable(2);
    let (status, _, answer) = deliver(&adapter, recall(late)).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("too_late"))
    );
    let too_late = next_event(&mut daemon).await.json;
    assert_eq!(too_late["event_idn"], "too_late");
    assert_eq!(too_late["command_act_id"], late.to_string());
    assert!(
        too_late["arguments"]["error"]
            .as_str()
            .unwrap()
            .contains("can't be deleted"),
        "{too_late}"
    );

    // Recalled before it arrived: recalled, and never sent.
    let early = Uuid::now_v7();
    let (_, _, answer) = deliver(&adapter, recall(early)).await;
    assert_eq!(answer["status"], "recalled");
    assert_eq!(next_event(&mut daemon).await.json["event_idn"], "recalled");
    let (status, _, _) = deliver(&adapter, send_message(early, "stale")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bot.state.send_calls(),
        2,
        "the recalled command was not sent"
    );
}

#[actix_rt::test]
async fn a_recall_of_a_message_being_sent_waits_for_it_then_deletes_it() {
    let mut bot = FakeBotApi::start();
    let mut daemon = events_sink();
    let adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);
    let commands = adapter.commands.clone();
    bot.state.hold_sends();
    let act = Uuid::now_v7();
    let (headers, body) = send_message(act, "a slow reply");
    let sending = actix_rt::spawn(async move {
        let r = reqwest::Client::new()
            .post(commands)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        r.status()
    });
    eventually("the sendMessage under way", PATIENCE, || async {
        (bot.state.send_arrivals() == 1).then_some(())
    })
    .await;
    // Recalled while Telegram has not answered: the daemon is asked to send the recall again.
    let (status, headers, answer) = deliver(&adapter, recall(act)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(headers.contains_key("retry-after"));
    bot.state.release_sends();
    assert_eq!(sending.await.unwrap(), StatusCode::OK);
    assert_eq!(bot.next_call().await.method, "sendMessage");
    assert_eq!(
        next_event(&mut daemon).await.json["event_idn"],
        "result_success"
    );
    // Sent again, it deletes what was sent.
    let (status, _, answer) = deliver(&adapter, recall(act)).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("recalled"))
    );
    assert_eq!(bot.next_call().await.method, "deleteMessage");
    assert_eq!(next_event(&mut daemon).await.json["event_idn"], "recalled");
}

#[actix_rt::test]
async fn telegram_throttling_is_retried_by_the_daemon_and_a_refusal_reported() {
    let mut bot = FakeBotApi::start();
    let mut daemon = events_sink();
    let adapter = Adapter::start(&daemon.base, DAEMON_TOKEN, SECRET, &bot.base);

    // 429: the daemon is asked to send it again when Telegram said; nothing reported.
    bot.state
        .refuse_next_send(429, "Too Many Requests: retry after 7", Some(7));
    let act = Uuid::now_v7();
    let (status, headers, answer) = deliver(&adapter, send_message(act, "hi")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(headers["retry-after"], "7");
    let (status, _, _) = deliver(&adapter, send_message(act, "hi")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bot.next_call().await.body["text"], "hi");
    assert_eq!(
        next_event(&mut daemon).await.json["event_idn"],
        "result_success"
    );

    // Refused for good: result_error, the caller's fault; the delivery itself is done.
    bot.state
        .refuse_next_send(400, "Bad Request: chat not found", None);
    let act = Uuid::now_v7();
    let (status, _, answer) = deliver(&adapter, send_message(act, "hi")).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("failed"))
    );
    let failed = next_event(&mut daemon).await.json;
    assert_eq!(failed["event_idn"], "result_error");
    assert_eq!(failed["command_act_id"], act.to_string());
    assert_eq!(failed["arguments"]["fault"], "caller");
    assert!(failed["arguments"]["error"]
        .as_str()
        .unwrap()
        .contains("chat not found"));

    // Without a chat: result_error naming the argument, nothing sent.
    let act = Uuid::now_v7();
    let no_chat = delivery(SECRET, "send_message", act, json!({"text": "hi"}));
    deliver(&adapter, no_chat).await;
    let failed = next_event(&mut daemon).await.json;
    assert!(
        failed["arguments"]["error"]
            .as_str()
            .unwrap()
            .contains("chatId"),
        "{failed}"
    );
    assert_eq!(bot.state.send_calls(), 3);
}

/// The flow's runner: a Telegram user message is answered with `send_message` to its chat.
fn echo(r: &Received) -> (u16, String) {
    let e = &r.json["event"];
    if e["event_idn"] != "user_message" {
        return (200, completed(json!([])));
    }
    let argument = |name: &str| {
        e["arguments"]
            .as_array()
            .and_then(|l| l.iter().find(|a| a["name"] == name))
            .map(|a| a["value"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| e["arguments"][name].as_str().unwrap().to_owned())
    };
    let reply = format!("You said: {}", argument("text"));
    let command = json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
        "command_idn": "send_message", "arguments": {"text": reply, "chatId": argument("chatId")}});
    (200, completed(json!([command])))
}

#[actix_rt::test]
async fn a_telegram_message_is_answered_through_the_daemon() {
    let mut bot = FakeBotApi::start();
    let mut runner = RunnerServer::start(echo);
    let dir = temp_dir("telegram-adapter");
    let d = DaemonProcess::start(&dir, &[]);
    let http = d.client();

    // The adapter's token may only send events.
    let (s, token) = call(
        &http,
        "POST",
        d.url("/v1/tokens"),
        Some(json!({"account": "default", "name": "telegram adapter", "scopes": ["events:write"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{token}");
    let token = token["token"].as_str().unwrap().to_owned();
    // The connector (created stopped) reveals its delivery secret once...
    let (s, created) = call(
        &http,
        "POST",
        d.url("/v1/integrations/telegram/connectors"),
        Some(json!({"title": "Support bot", "connector_idn": "bot",
                    "settings": [{"idn": "bot_token", "value": TOKEN}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["revealed"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["idn"] == "command_delivery_secret"))
        .and_then(|x| x["value"].as_str())
        .expect("the delivery secret, revealed once")
        .to_owned();
    // ...which the adapter starts with; the connector then names its endpoint and runs.
    let adapter = Adapter::start(&d.base, &token, &secret, &bot.base);
    let (s, v) = call(
        &http,
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/settings")),
        Some(json!([{"idn": "command_delivery_url", "value": adapter.commands}])),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = call(
        &http,
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/run")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [
            {"idn": "user_message", "skill_idn": "Answer", "integration_idn": "telegram", "connector_idn": "bot"},
            {"idn": "result_success", "skill_idn": "Sent", "integration_idn": "telegram", "connector_idn": "bot"}]});
    d.put_flow("SupportAgent", "Main", &flow).await;

    // A Telegram user writes.
    bot.state
        .push(text_update(7731, 5551234, "Do you open on Sunday?"));
    let asked = runner.next().await.json;
    assert_eq!(asked["event"]["event_idn"], "user_message", "{asked}");
    assert_eq!(asked["event"]["actor"]["external_id"], "5551234");
    let persona = asked["flow_instance"]["persona_id"].clone();

    // The runner's send_message reaches the Bot API...
    let sent = bot.next_call().await;
    assert_eq!(sent.method, "sendMessage");
    assert_eq!(sent.body["text"], "You said: Do you open on Sunday?");
    assert_eq!(sent.body["chat_id"], "5551234");
    // ...and the skill hears it was sent, for the same person.
    let done = runner.next().await.json;
    assert_eq!(done["event"]["event_idn"], "result_success", "{done}");
    assert_eq!(done["skill_idn"], "Sent");
    assert_eq!(done["flow_instance"]["persona_id"], persona);
    let act = done["event"]["command_act_id"]
        .as_str()
        .expect("the command's act");
    assert!(Uuid::parse_str(act).is_ok());
    assert!(
        !adapter.log_text().contains(&secret),
        "no secret in the adapter's logs"
    );
    assert!(!adapter.log_text().contains(&token));

    // Restarted before it confirmed the update, the adapter gets it again from Telegram: the
    // daemon drops it as a duplicate of its update id, and no skill runs again.
    drop(adapter);
    bot.state
        .push(text_update(7731, 5551234, "Do you open on Sunday?"));
    let _again = Adapter::start(&d.base, &token, &secret, &bot.base);
    eventually(
        "the repeated update counted as a duplicate",
        PATIENCE,
        || async {
            d.metrics()
                .await
                .contains("switchboard_events_deduplicated_total 1")
                .then_some(())
        },
    )
    .await;
    assert_eq!(runner.arrived(), 2, "no second invocation");
}
