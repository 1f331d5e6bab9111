//! A local fake of the Telegram Bot API endpoints the Telegram adapter uses, on 127.0.0.1:0:
//! `POST /bot<token>/getUpdates` (long polling: updates at or after `offset`, which confirms
//! and forgets those before it; waiting up to `timeout` seconds for one), `sendMessage` (a new
//! message id per message) and `deleteMessage`, each answered in Telegram's JSON shapes
//! (`{"ok": true, "result": …}`, `{"ok": false, "error_code", "description", "parameters"}`).
//! A test pushes updates, scripts refusals, and reads what was sent and deleted.
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

/// The bot token the fake accepts.
pub const TOKEN: &str = "123456:fake-bot-token";

#[derive(Default)]
struct State {
    /// Unconfirmed updates.
    updates: Vec<Value>,
    /// Every `offset` a `getUpdates` carried, in order (`None`: none).
    offsets: Vec<Option<i64>>,
    last_message_id: i64,
    /// Sent messages: (chat, message id).
    messages: HashSet<(i64, i64)>,
    /// Messages that cannot be deleted any more (older than 48 h, say).
    undeletable: HashSet<i64>,
    /// Answers the next `sendMessage` calls get instead of success: (HTTP status, body).
    send_refusals: VecDeque<(u16, Value)>,
    send_calls: usize,
    send_arrivals: usize,
}

/// The fake's state, shared with the test (and with other fakes' closures).
#[derive(Clone)]
pub struct BotApiState {
    state: Arc<Mutex<State>>,
    pushed: Arc<watch::Sender<u64>>,
    /// While true, `sendMessage` calls wait (a slow Telegram).
    held: Arc<watch::Sender<bool>>,
}

impl BotApiState {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Queues an update (`update_id` and its `message`).
    pub fn push(&self, update: Value) {
        self.with(|s| s.updates.push(update));
        self.pushed.send_modify(|n| *n += 1);
    }

    /// Every `offset` the adapter's `getUpdates` calls carried.
    pub fn offsets(&self) -> Vec<Option<i64>> {
        self.with(|s| s.offsets.clone())
    }

    /// `sendMessage` calls so far (refused ones included).
    pub fn send_calls(&self) -> usize {
        self.with(|s| s.send_calls)
    }

    /// The next `sendMessage` is refused with Telegram's error `code` (and `retry_after`).
    pub fn refuse_next_send(&self, code: u16, description: &str, retry_after: Option<u64>) {
        let mut body = json!({"ok": false, "error_code": code, "description": description});
        if let Some(r) = retry_after {
            body["parameters"] = json!({"retry_after": r});
        }
        self.with(|s| s.send_refusals.push_back((code, body)));
    }

    /// `sendMessage` calls wait from now until [`BotApiState::release_sends`].
    pub fn hold_sends(&self) {
        self.held.send_replace(true);
    }

    pub fn release_sends(&self) {
        self.held.send_replace(false);
    }

    /// `sendMessage` calls that arrived (held ones too).
    pub fn send_arrivals(&self) -> usize {
        self.with(|s| s.send_arrivals)
    }

    /// Message `message_id` can no longer be deleted.
    pub fn make_undeletable(&self, message_id: i64) {
        self.with(|s| s.undeletable.insert(message_id));
    }
}

/// A call that reached the fake: its method and JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
}

pub struct FakeBotApi {
    /// What the adapter's `--telegram-api-url` is.
    pub base: String,
    pub state: BotApiState,
    /// Every `sendMessage` and `deleteMessage` call that succeeded, in order.
    pub calls: mpsc::UnboundedReceiver<Call>,
    handle: actix_web::dev::ServerHandle,
}

/// A refusal as Telegram answers it: the HTTP status and the body.
type Refusal = (u16, Value);

fn refusal(status: u16, description: &str) -> Refusal {
    (
        status,
        json!({"ok": false, "error_code": status, "description": description}),
    )
}

fn answer((status, body): Refusal) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

fn refused(status: u16, description: &str) -> HttpResponse {
    answer(refusal(status, description))
}

fn ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

/// A chat id as the Bot API takes it: an integer or its text.
fn chat_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

async fn get_updates(state: &BotApiState, body: &Value) -> HttpResponse {
    let offset = body["offset"].as_i64();
    let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
    let mut pushed = state.pushed.subscribe();
    state.with(|s| {
        s.offsets.push(offset);
        if let Some(offset) = offset {
            s.updates
                .retain(|u| u["update_id"].as_i64().unwrap() >= offset);
        }
    });
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let ready: Vec<Value> = state.with(|s| s.updates.clone());
        if !ready.is_empty() {
            return ok(Value::Array(ready));
        }
        match tokio::time::timeout_at(deadline, pushed.changed()).await {
            Ok(Ok(())) => continue,
            _ => return ok(json!([])),
        }
    }
}

fn send_message(state: &BotApiState, body: &Value) -> Result<Value, Refusal> {
    let Some(chat) = chat_of(&body["chat_id"]) else {
        return Err(refusal(400, "Bad Request: chat_id is empty"));
    };
    let Some(text) = body["text"].as_str().filter(|t| !t.is_empty()) else {
        return Err(refusal(400, "Bad Request: message text is empty"));
    };
    state.with(|s| {
        s.send_calls += 1;
        if let Some(refused) = s.send_refusals.pop_front() {
            return Err(refused);
        }
        s.last_message_id += 1;
        let id = s.last_message_id;
        s.messages.insert((chat, id));
        Ok(
            json!({"message_id": id, "date": chrono::Utc::now().timestamp(),
            "chat": {"id": chat, "type": "private"}, "text": text}),
        )
    })
}

fn delete_message(state: &BotApiState, body: &Value) -> Result<Value, Refusal> {
    let (Some(chat), Some(id)) = (chat_of(&body["chat_id"]), body["message_id"].as_i64()) else {
        return Err(refusal(
            400,
            "Bad Request: message identifier is not specified",
        ));
    };
    state.with(|s| {
        if s.undeletable.contains(&id) {
            return Err(refusal(
                400,
                "Bad Request: message can't be deleted for everyone",
            ));
        }
        if !s.messages.remove(&(chat, id)) {
            return Err(refusal(400, "Bad Request: message to delete not found"));
        }
        Ok(json!(true))
    })
}

impl FakeBotApi {
    pub fn start() -> FakeBotApi {
        let (tx, calls) = mpsc::unbounded_channel();
        let state = BotApiState {
            state: Arc::default(),
            pushed: Arc::new(watch::channel(0).0),
            held: Arc::new(watch::channel(false).0),
        };
        let shared = state.clone();
        let server = HttpServer::new(move || {
            let state = shared.clone();
            let tx = tx.clone();
            App::new().route(
                "/{bot}/{method}",
                web::post().to(move |path: web::Path<(String, String)>, body: web::Bytes| {
                    let (state, tx) = (state.clone(), tx.clone());
                    async move {
                        let (bot, method) = path.into_inner();
                        if bot != format!("bot{TOKEN}") {
                            return refused(401, "Unauthorized");
                        }
                        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                            return refused(400, "Bad Request: the body is not JSON");
                        };
                        let outcome = match method.as_str() {
                            "getUpdates" => return get_updates(&state, &body).await,
                            "sendMessage" => {
                                state.with(|s| s.send_arrivals += 1);
                                let mut held = state.held.subscribe();
                                let _ = held.wait_for(|h| !*h).await;
                                send_message(&state, &body)
                            }
                            "deleteMessage" => delete_message(&state, &body),
                            _ => return refused(404, "Not Found"),
                        };
                        match outcome {
                            Ok(result) => {
                                let _ = tx.send(Call { method, body });
                                ok(result)
                            }
                            Err(refused) => answer(refused),
                        }
                    }
                }),
            )
        })
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeBotApi {
            base: format!("http://{addr}"),
            state,
            calls,
            handle,
        }
    }

    /// The next successful `sendMessage` or `deleteMessage`, waiting up to 30 s.
    pub async fn next_call(&mut self) -> Call {
        super::wait::within("a Bot API call", Duration::from_secs(30), self.calls.recv())
            .await
            .expect("the fake Bot API runs")
    }
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        let h = self.handle.clone();
        actix_rt::spawn(async move { h.stop(false).await });
    }
}

/// An update carrying a text message from `chat` (a private chat with the user of that id).
pub fn text_update(update_id: i64, chat: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id * 10, "date": 1_764_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Ada"},
        "from": {"id": chat, "is_bot": false, "first_name": "Ada", "username": "ada"},
        "text": text}})
}
