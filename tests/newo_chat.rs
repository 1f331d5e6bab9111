//! The `newo_chat` web-chat API against the real binary, driven as the Agent Creator seed
//! describes: a connector created with its `domain` reveals its `client_secret` once;
//! `chat-settings`, `create-actor` (idempotent) and `send-actor-event` answer web clients, with
//! 401/403/400 naming the field and CORS for the connector's origins only; the official Node
//! `socket.io-client` (4.8.x, from npm) connects with `transports: ['websocket']` and with its
//! defaults (long-polling upgraded), receives what a webhook skill answers to
//! `onboarding_started` in order with the seed's payload, in every tab; wrong secrets and
//! origins are refused; commands for an actor with no socket are buffered and delivered when it
//! connects again, also after a daemon restart.
//!
//! Needs `node` and the client installed in `tests/fixtures/socketio/node_modules`:
//! `bash .ci/install-test-deps` does both.

mod common;

use std::path::Path;

use common::daemon::{temp_dir, DaemonBuilder, DaemonProcess};
use common::runner_server::{completed, Received, RunnerServer};
use common::socketio::Node;
use common::wait::{eventually, PATIENCE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const API: &str = "/api/internal/v1/talking-head";
const ORIGIN: &str = "https://app.example.com";

/// The socket.io listener's base URL, from the daemon's log.
async fn socket_base(d: &DaemonProcess) -> String {
    eventually("the socket.io listener's address", PATIENCE, || async {
        d.logs.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "socket.io listening")
                .then(|| format!("http://{}", v["fields"]["address"].as_str().unwrap()))
        })
    })
    .await
}

/// Creates and runs the `newo_chat` connector `web` with `domain`; answers the client secret
/// its creation revealed.
async fn chat_connector(d: &DaemonProcess, domain: &str) -> String {
    chat_connector_id(d, domain).await.1
}

/// [`chat_connector`], with the connector's id.
async fn chat_connector_id(d: &DaemonProcess, domain: &str) -> (String, String) {
    let http = d.client();
    let r = http
        .post(d.url("/v1/integrations/newo_chat/connectors"))
        .json(&json!({"title": "Web", "connector_idn": "web",
                      "settings": [{"idn": "domain", "value": domain}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let revealed = v["revealed"].as_array().expect("revealed settings");
    assert_eq!(revealed.len(), 1, "{v}");
    assert_eq!(revealed[0]["idn"], "client_secret");
    let secret = revealed[0]["value"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("ncs_"), "{secret}");
    let id = v["id"].as_str().unwrap();
    // Shown once: never in the connector's settings again.
    let again = http
        .get(d.url(&format!("/v1/integrations/connectors/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!again.contains(&secret), "{again}");
    let s = http
        .post(d.url(&format!("/v1/integrations/connectors/{id}/run")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    (id.to_owned(), secret)
}

/// A request to the web-chat API from a page at `origin` (none: not a browser).
async fn call(
    d: &DaemonProcess,
    method: &str,
    path: &str,
    origin: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut r =
        reqwest::Client::new().request(method.parse().unwrap(), d.url(&format!("{API}/{path}")));
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.json().await.unwrap_or(Value::Null))
}

fn cors(h: &reqwest::header::HeaderMap) -> Option<&str> {
    h.get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

fn assert_refused(
    got: &(StatusCode, reqwest::header::HeaderMap, Value),
    status: u16,
    code: &str,
    field: &str,
) {
    assert_eq!(got.0.as_u16(), status, "{}", got.2);
    assert_eq!(got.2["error"]["code"], code, "{}", got.2);
    assert_eq!(got.2["error"]["field"], field, "{}", got.2);
}

async fn create_actor(d: &DaemonProcess, secret: &str, external_id: &str) -> Value {
    let got = call(
        d,
        "POST",
        "create-actor",
        Some(ORIGIN),
        Some(
            json!({"name": "Ann", "external_id": external_id, "connector_idn": "web",
                    "client_secret": secret}),
        ),
    )
    .await;
    assert!(
        got.0 == StatusCode::CREATED || got.0 == StatusCode::OK,
        "{}",
        got.2
    );
    got.2
}

async fn onboarding_started(d: &DaemonProcess, secret: &str, external_id: &str, source: &str) {
    let got = call(
        d,
        "POST",
        "send-actor-event",
        Some(ORIGIN),
        Some(json!({"client_secret": secret, "connector_idn": "web",
                    "event_idn": "onboarding_started", "external_id": external_id,
                    "arguments": [{"name": "source", "value": source},
                                  {"name": "email", "value": "ann@example.com"}]})),
    )
    .await;
    assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.2);
    assert_eq!(cors(&got.1), Some(ORIGIN));
}

/// The skill: `onboarding_started` is answered with three `notify_scraping_step` and
/// `onboarding_finished` for the event's persona (its `user_actor_id`); results with nothing.
fn skill(r: &Received) -> (u16, String) {
    let event = r.json["event"]["event_idn"].as_str().unwrap_or_default();
    if event != "onboarding_started" {
        return (200, completed(json!([])));
    }
    let actor = r.json["flow_instance"]["persona_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let source = r.json["event"]["arguments"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "source"))
        .map_or("", |a| a["value"].as_str().unwrap())
        .to_owned();
    let command = |idn: &str, args: Value| {
        json!({"v": 1, "integration_idn": "newo_chat", "connector_idn": "web",
               "command_idn": idn, "arguments": args})
    };
    let mut commands: Vec<Value> = (1..=3)
        .map(|n| {
            command(
                "notify_scraping_step",
                json!({"user_actor_id": actor, "question": source, "step_number": n.to_string(),
                       "max_steps": "3", "stage": "stage"}),
            )
        })
        .collect();
    commands.push(command(
        "onboarding_finished",
        json!({"user_actor_id": actor, "business_name": "Ann's", "agent_name": "Max"}),
    ));
    (200, completed(Value::Array(commands)))
}

/// A daemon with a webhook flow running [`skill`] on `newo_chat`'s events.
async fn daemon(dir: &Path, runner: &RunnerServer) -> (DaemonBuilder, DaemonProcess) {
    let builder = DaemonProcess::builder(dir);
    let d = builder.start();
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "onboarding_started", "skill_idn": "Onboard", "integration_idn": "newo_chat"},
        {"idn": "result_success", "skill_idn": "Result", "integration_idn": "newo_chat"},
        {"idn": "result_error", "skill_idn": "Result", "integration_idn": "newo_chat"},
    ]});
    d.put_flow("Creator", "Onboarding", &flow).await;
    (builder, d)
}

/// Checks four received events against what [`skill`] sends for `source`.
fn check_onboarding(events: &[Value], actor: &str, source: &str) {
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "notify_scraping_step",
            "notify_scraping_step",
            "notify_scraping_step",
            "onboarding_finished"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        let data = &e["data"];
        assert_eq!(data["integration_idn"], "newo_chat", "{data}");
        assert_eq!(data["connector_idn"], "web", "{data}");
        assert_eq!(data["command_idn"], e["event"], "{data}");
        assert!(
            data["external_event_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{data}"
        );
        let args = data["arguments"].as_array().unwrap();
        let arg = |n: &str| {
            args.iter()
                .find(|a| a["name"] == n)
                .map(|a| a["value"].clone())
                .unwrap_or(Value::Null)
        };
        assert_eq!(arg("user_actor_id"), actor, "{data}");
        if i < 3 {
            assert_eq!(arg("step_number"), (i + 1).to_string(), "{data}");
            assert_eq!(arg("question"), source, "{data}");
        }
    }
}

/// The value of the metric series `name{labels}` (0 when absent).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{labels}");
    text.lines()
        .find(|l| l.starts_with(&format!("{prefix} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn the_rest_api_answers_web_clients_of_the_connector_s_origins() {
    let runner = RunnerServer::start(skill);
    let dir = temp_dir("newo-chat-rest");
    let (_, d) = daemon(&dir, &runner).await;
    let secret = chat_connector(&d, &format!("{ORIGIN}, http://localhost")).await;

    // chat-settings: the connector, CORS for its origins only.
    let path = format!("chat-settings?client_secret={secret}");
    let got = call(&d, "GET", &path, Some(ORIGIN), None).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    assert_eq!(got.2, json!({"connector_idn": "web"}));
    assert_eq!(cors(&got.1), Some(ORIGIN));
    let local = call(&d, "GET", &path, Some("http://localhost:5173"), None).await;
    assert_eq!(local.0, StatusCode::OK);
    assert_eq!(cors(&local.1), Some("http://localhost:5173"));
    let server = call(&d, "GET", &path, None, None).await;
    assert_eq!(server.0, StatusCode::OK, "no Origin: not a browser");
    assert_eq!(cors(&server.1), None);
    let evil = call(&d, "GET", &path, Some("https://evil.example.net"), None).await;
    assert_refused(&evil, 403, "origin_not_allowed", "origin");
    assert_eq!(cors(&evil.1), None);
    let wrong = call(
        &d,
        "GET",
        "chat-settings?client_secret=ncs_nope",
        Some(ORIGIN),
        None,
    )
    .await;
    assert_refused(&wrong, 401, "unknown_client_secret", "client_secret");
    let none = call(&d, "GET", "chat-settings", Some(ORIGIN), None).await;
    assert_refused(&none, 400, "invalid", "client_secret");

    // The preflight of a POST: for a listed origin only.
    let pre = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            d.url(&format!("{API}/create-actor")),
        )
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert_eq!(cors(pre.headers()), Some(ORIGIN));
    let pre = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            d.url(&format!("{API}/create-actor")),
        )
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::FORBIDDEN);
    assert_eq!(cors(pre.headers()), None);

    // create-actor: created once, the same actor again; 400 naming the field.
    let first = create_actor(&d, &secret, "cust-1").await;
    assert_eq!(first["external_id"], "cust-1");
    assert_eq!(first["connector_idn"], "web");
    let again = call(
        &d,
        "POST",
        "create-actor",
        Some(ORIGIN),
        Some(
            json!({"name": "Other", "external_id": "cust-1", "connector_idn": "web",
                    "client_secret": secret}),
        ),
    )
    .await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.2);
    assert_eq!(again.2, first, "idempotent per external_id");
    let missing = call(
        &d,
        "POST",
        "create-actor",
        Some(ORIGIN),
        Some(json!({"name": "Ann", "connector_idn": "web", "client_secret": secret})),
    )
    .await;
    assert_refused(&missing, 400, "invalid", "external_id");
    assert_eq!(
        cors(&missing.1),
        Some(ORIGIN),
        "an error is readable by the page"
    );
    let other = call(
        &d,
        "POST",
        "create-actor",
        Some(ORIGIN),
        Some(
            json!({"name": "Ann", "external_id": "x", "connector_idn": "other",
                    "client_secret": secret}),
        ),
    )
    .await;
    assert_refused(&other, 400, "connector_mismatch", "connector_idn");

    // send-actor-event: durable (202), refused before for an unknown actor, a daemon event,
    // a bad argument.
    let send = |body: Value| call(&d, "POST", "send-actor-event", Some(ORIGIN), Some(body));
    let event = |external_id: &str, event_idn: &str, arguments: Value| {
        json!({"client_secret": secret, "connector_idn": "web", "event_idn": event_idn,
               "external_id": external_id, "arguments": arguments})
    };
    assert_refused(
        &send(event("nobody", "agent_request", json!([]))).await,
        404,
        "unknown_actor",
        "external_id",
    );
    assert_refused(
        &send(event("cust-1", "result_success", json!([]))).await,
        403,
        "event_not_allowed",
        "event_idn",
    );
    assert_refused(
        &send(event(
            "cust-1",
            "agent_request",
            json!([{"name": "a", "value": {"x": 1}}]),
        ))
        .await,
        400,
        "invalid",
        "arguments[0].value",
    );
    let ok = send(event("cust-1", "agent_request", json!([]))).await;
    assert_eq!(ok.0, StatusCode::ACCEPTED, "{}", ok.2);
    assert_eq!(ok.2["status"], "accepted");

    // Refusals are counted.
    let m = d.metrics().await;
    assert!(
        metric(
            &m,
            "switchboard_events_rejected_total",
            "{reason=\"origin_not_allowed\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[actix_rt::test]
async fn commands_reach_every_tab_in_order_with_the_seed_s_payload() {
    let mut runner = RunnerServer::start(skill);
    let dir = temp_dir("newo-chat-socket");
    let (_, d) = daemon(&dir, &runner).await;
    let secret = chat_connector(&d, ORIGIN).await;
    let base = socket_base(&d).await;
    let actor = create_actor(&d, &secret, "cust-1").await;
    let actor_id = actor["id"].as_str().unwrap().to_owned();
    let mut node = Node::start();
    let query = json!({"client_secret": secret, "origin": ORIGIN, "external_id": "cust-1"});

    // One tab over WebSocket only, one with the client's defaults (polling, then upgraded).
    node.connect(
        "ws",
        &base,
        json!({"transports": ["websocket"], "query": query}),
    );
    let r = node.next("ws").await;
    assert_eq!(
        (r["type"].as_str(), r["transport"].as_str()),
        (Some("connect"), Some("websocket")),
        "{r}"
    );
    node.connect("default", &base, json!({"query": query}));
    let r = node.next("default").await;
    assert_eq!(r["type"], "connect", "{r}");
    let up = node
        .next_where("default", "the default tab's upgrade", |r| {
            r["type"] == "upgrade"
        })
        .await;
    assert_eq!(up["transport"], "websocket", "{up}");

    onboarding_started(&d, &secret, "cust-1", "https://ann.example.com").await;
    for tab in ["ws", "default"] {
        let events = node.events(tab, 4).await;
        check_onboarding(&events, &actor_id, "https://ann.example.com");
    }

    // The skill hears that each command reached a socket.
    let mut results = Vec::new();
    while results.len() < 4 {
        let r = runner.next().await;
        let e = &r.json["event"];
        if e["event_idn"] == "result_success" {
            results.push(e.clone());
        }
        assert_ne!(e["event_idn"], "result_error", "{e}");
    }

    let m = d.metrics().await;
    assert_eq!(
        metric(
            &m,
            "switchboard_newo_chat_sockets",
            "{connector=\"default/web\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "switchboard_newo_chat_messages_pushed_total",
            "{source=\"live\"}"
        ),
        4.0,
        "{m}"
    );
}

#[actix_rt::test]
async fn a_wrong_secret_or_origin_is_refused_at_connect() {
    let runner = RunnerServer::start(skill);
    let dir = temp_dir("newo-chat-refused");
    let (_, d) = daemon(&dir, &runner).await;
    let (id, secret) = chat_connector_id(&d, ORIGIN).await;
    let base = socket_base(&d).await;
    create_actor(&d, &secret, "cust-1").await;
    let mut node = Node::start();
    let cases = [
        (
            "secret",
            json!({"client_secret": "ncs_wrong", "origin": ORIGIN, "external_id": "cust-1"}),
            "unknown_client_secret",
        ),
        (
            "origin",
            json!({"client_secret": secret, "origin": "https://evil.example.net", "external_id": "cust-1"}),
            "origin_not_allowed",
        ),
        (
            "actor",
            json!({"client_secret": secret, "origin": ORIGIN, "external_id": "nobody"}),
            "unknown_actor",
        ),
    ];
    for (tab, query, code) in &cases {
        node.connect(
            tab,
            &base,
            json!({"transports": ["websocket"], "query": query}),
        );
        let r = node.next(tab).await;
        assert_eq!(r["type"], "connect_error", "{tab}: {r}");
        assert!(
            r["message"].as_str().unwrap().starts_with(code),
            "{tab}: {r}"
        );
    }
    // An Origin header of another site is refused even with an allowed origin query value.
    node.connect(
        "header",
        &base,
        json!({"transports": ["websocket"], "extraHeaders": {"origin": "https://evil.example.net"},
               "query": {"client_secret": secret, "origin": ORIGIN, "external_id": "cust-1"}}),
    );
    let r = node.next("header").await;
    assert_eq!(r["type"], "connect_error", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("origin_not_allowed"),
        "{r}"
    );

    // Long-polling answers are readable by the connector's pages only (CORS).
    let handshake = format!("{base}/socket.io/?EIO=4&transport=polling");
    for (origin, allowed) in [(ORIGIN, Some(ORIGIN)), ("https://evil.example.net", None)] {
        let r = reqwest::Client::new()
            .get(&handshake)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(cors(r.headers()), allowed, "{origin}");
    }

    // A stopped connector closes its sockets and admits none.
    let query = json!({"client_secret": secret, "origin": ORIGIN, "external_id": "cust-1"});
    node.connect(
        "open",
        &base,
        json!({"transports": ["websocket"], "query": query}),
    );
    assert_eq!(node.next("open").await["type"], "connect");
    let s = d
        .client()
        .post(d.url(&format!("/v1/integrations/connectors/{id}/stop")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    let r = node.next("open").await;
    assert_eq!(r["type"], "disconnect", "{r}");
    node.connect(
        "stopped",
        &base,
        json!({"transports": ["websocket"], "query": query}),
    );
    let r = node.next("stopped").await;
    assert_eq!(r["type"], "connect_error", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("connector_stopped"),
        "{r}"
    );
}

#[actix_rt::test]
async fn what_was_buffered_reaches_a_reconnecting_client_also_after_a_restart() {
    let mut runner = RunnerServer::start(skill);
    let dir = temp_dir("newo-chat-buffer");
    let (builder, d) = daemon(&dir, &runner).await;
    let secret = chat_connector(&d, ORIGIN).await;
    let base = socket_base(&d).await;
    let actor = create_actor(&d, &secret, "cust-1").await;
    let actor_id = actor["id"].as_str().unwrap().to_owned();
    let query = json!({"client_secret": secret, "origin": ORIGIN, "external_id": "cust-1"});
    let mut node = Node::start();

    // No socket: buffered, and the skill hears it did not reach one (yet).
    onboarding_started(&d, &secret, "cust-1", "https://one.example.com").await;
    let mut errors = 0;
    while errors < 4 {
        let r = runner.next().await;
        let e = &r.json["event"];
        if e["event_idn"] == "result_error" {
            let buffered = e["arguments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "buffered" && a["value"] == "true");
            assert!(buffered, "{e}");
            errors += 1;
        }
    }
    node.connect(
        "tab",
        &base,
        json!({"transports": ["websocket"], "query": query}),
    );
    assert_eq!(node.next("tab").await["type"], "connect");
    check_onboarding(
        &node.events("tab", 4).await,
        &actor_id,
        "https://one.example.com",
    );
    let m = d.metrics().await;
    assert_eq!(
        metric(&m, "switchboard_newo_chat_messages_buffered_total", ""),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "switchboard_newo_chat_messages_pushed_total",
            "{source=\"buffer\"}"
        ),
        4.0,
        "{m}"
    );

    // Away again; buffered; the daemon restarts; the client comes back to it.
    node.close("tab");
    node.next_where("tab", "the tab closed", |r| r["type"] == "closed")
        .await;
    eventually("the socket gone", PATIENCE, || async {
        let m = d.metrics().await;
        (metric(
            &m,
            "switchboard_newo_chat_sockets",
            "{connector=\"default/web\"}",
        ) == 0.0)
            .then_some(())
    })
    .await;
    onboarding_started(&d, &secret, "cust-1", "https://two.example.com").await;
    eventually("four more buffered", PATIENCE, || async {
        let m = d.metrics().await;
        (metric(&m, "switchboard_newo_chat_messages_buffered_total", "") == 8.0).then_some(())
    })
    .await;
    d.terminate().await;
    let d = builder.start();
    let base = socket_base(&d).await;
    node.connect(
        "back",
        &base,
        json!({"transports": ["websocket"], "query": query}),
    );
    let r = node.next("back").await;
    assert_eq!(r["type"], "connect", "{r}");
    check_onboarding(
        &node.events("back", 4).await,
        &actor_id,
        "https://two.example.com",
    );
    // Delivered once: a new tab gets nothing buffered.
    node.connect(
        "later",
        &base,
        json!({"transports": ["websocket"], "query": query}),
    );
    assert_eq!(node.next("later").await["type"], "connect");
    onboarding_started(&d, &secret, "cust-1", "https://three.example.com").await;
    check_onboarding(
        &node.events("later", 4).await,
        &actor_id,
        "https://three.example.com",
    );
    check_onboarding(
        &node.events("back", 4).await,
        &actor_id,
        "https://three.example.com",
    );
}

/// Rotates connector `id`'s client secret with `overlap` seconds: (new secret, answer).
async fn rotate(d: &DaemonProcess, id: &str, overlap: u64) -> (String, Value) {
    let r = d
        .client()
        .post(d.url(&format!("/v1/integrations/connectors/{id}/rotate-secret")))
        .json(&json!({"overlap_seconds": overlap}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["setting"], "client_secret", "{v}");
    (v["secret"].as_str().unwrap().to_owned(), v)
}

/// The status `chat-settings` answers for `secret` from the connector's origin.
async fn opens(d: &DaemonProcess, secret: &str) -> StatusCode {
    let path = format!("chat-settings?client_secret={secret}");
    call(d, "GET", &path, Some(ORIGIN), None).await.0
}

#[actix_rt::test]
async fn a_rotated_client_secret_replaces_the_old_one_after_its_overlap() {
    let runner = RunnerServer::start(skill);
    let dir = temp_dir("newo-chat-rotate");
    let (builder, d) = daemon(&dir, &runner).await;
    let (id, first) = chat_connector_id(&d, ORIGIN).await;

    // With an overlap, both open the connector, also after a restart.
    let (second, answer) = rotate(&d, &id, 3600).await;
    assert!(
        second.starts_with("ncs_"),
        "the native's own form: {second}"
    );
    assert_ne!(second, first);
    assert!(answer["previous_valid_until"].is_string(), "{answer}");
    assert_eq!(opens(&d, &second).await, StatusCode::OK);
    assert_eq!(
        opens(&d, &first).await,
        StatusCode::OK,
        "the old one during the overlap"
    );
    d.terminate().await;
    let d = builder.start();
    assert_eq!(opens(&d, &second).await, StatusCode::OK);
    assert_eq!(
        opens(&d, &first).await,
        StatusCode::OK,
        "the overlap outlives a restart"
    );

    // Without one, only the newest opens it.
    let (third, answer) = rotate(&d, &id, 0).await;
    assert!(answer["previous_valid_until"].is_null(), "{answer}");
    assert_eq!(opens(&d, &third).await, StatusCode::OK);
    assert_eq!(opens(&d, &second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(opens(&d, &first).await, StatusCode::UNAUTHORIZED);
    // The secret is never shown by a read.
    let view = d
        .client()
        .get(d.url(&format!("/v1/integrations/connectors/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!view.contains(&third) && !view.contains(&second), "{view}");
}

/// A daemon whose web clients get 2 requests at once and 1 a second per IP address, trusting
/// `trusted` (a TOML list) as reverse proxies.
fn rate_limited_daemon(name: &str, trusted: &str) -> DaemonProcess {
    DaemonProcess::builder(&temp_dir(name))
        .env("SWITCHBOARD_NEWO_CHAT__IP_PER_SECOND", "1")
        .env("SWITCHBOARD_NEWO_CHAT__IP_BURST", "2")
        .env("SWITCHBOARD_NEWO_CHAT__TRUSTED_PROXIES", trusted)
        .start()
}

/// `chat-settings` from the connector's origin, sent with `X-Forwarded-For: forwarded`.
async fn settings_for(d: &DaemonProcess, secret: &str, forwarded: &str) -> StatusCode {
    reqwest::Client::new()
        .get(d.url(&format!("{API}/chat-settings?client_secret={secret}")))
        .header("origin", ORIGIN)
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
}

/// Spends the per-IP budget of requests forwarded for `client`: answers how many passed
/// before the first 429.
async fn spend(d: &DaemonProcess, secret: &str, client: &str) -> usize {
    for passed in 0..20 {
        match settings_for(d, secret, client).await {
            StatusCode::TOO_MANY_REQUESTS => return passed,
            s => assert_eq!(s, StatusCode::OK, "{client}"),
        }
    }
    panic!("requests forwarded for {client} were never rate-limited")
}

#[actix_rt::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_ip_budget() {
    let query =
        |secret: &str| json!({"client_secret": secret, "origin": ORIGIN, "external_id": "cust-1"});
    let connect = |node: &mut Node, tab: &str, base: &str, secret: &str, forwarded: &str| {
        node.connect(
            tab,
            base,
            json!({"transports": ["websocket"], "query": query(secret),
                   "extraHeaders": {"x-forwarded-for": forwarded}}),
        )
    };
    let mut node = Node::start();

    // The loopback proxy is trusted: each forwarded client has its own budget, on the REST
    // routes and at the socket.io handshake alike.
    let d = rate_limited_daemon("newo-chat-proxy", r#"["127.0.0.1", "10.0.0.0/8"]"#);
    let secret = chat_connector(&d, ORIGIN).await;
    let base = socket_base(&d).await;
    create_actor(&d, &secret, "cust-1").await;
    assert!(spend(&d, &secret, "198.51.100.1").await >= 1);
    assert_eq!(
        settings_for(&d, &secret, "198.51.100.2").await,
        StatusCode::OK,
        "another forwarded client, its own budget"
    );
    assert_eq!(
        settings_for(&d, &secret, "198.51.100.2, 10.1.2.3").await,
        StatusCode::OK,
        "a trusted hop is walked past"
    );
    connect(&mut node, "spent", &base, &secret, "198.51.100.1");
    let r = node.next("spent").await;
    assert_eq!(r["type"], "connect_error", "{r}");
    assert!(
        r["message"].as_str().unwrap().starts_with("rate_limited"),
        "{r}"
    );
    connect(&mut node, "fresh", &base, &secret, "198.51.100.3");
    let r = node.next("fresh").await;
    assert_eq!(r["type"], "connect", "{r}");

    // Trusting no proxy: the header changes nothing, every request is the peer's.
    let d = rate_limited_daemon("newo-chat-no-proxy", "[]");
    let secret = chat_connector(&d, ORIGIN).await;
    let base = socket_base(&d).await;
    assert!(spend(&d, &secret, "198.51.100.1").await >= 1);
    assert_eq!(
        settings_for(&d, &secret, "198.51.100.2").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a forwarded address from an untrusted peer is ignored"
    );
    connect(&mut node, "untrusted", &base, &secret, "198.51.100.3");
    let r = node.next("untrusted").await;
    assert_eq!(r["type"], "connect_error", "{r}");
    assert!(
        r["message"].as_str().unwrap().starts_with("rate_limited"),
        "{r}"
    );
}
