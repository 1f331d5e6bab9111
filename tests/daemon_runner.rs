//! Events through the real binary to a webhook skill runner and back: signed invocations,
//! commands routed to a native connector, result events with `command_act_id`; a runner that
//! fails is retried, then the invocation is dead-lettered, and replayed once the runner works.

mod common;

use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};
use common::eventually;
use common::runner_server::{completed, RunnerServer};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// A secret the flow's runner never had.
const OTHER_SECRET: &str = "whsec_YW5vdGhlciBzZWNyZXQsIGFsc28gMzIgYnl0ZXMgbG9uZw==";

async fn post(c: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A JSON list from `url`; `None` while the daemon cannot answer (for `eventually`).
async fn get_list(c: &Client, url: String) -> Option<Vec<Value>> {
    c.get(url).send().await.ok()?.json().await.ok()
}

fn event(connector: &str, who: &str, text: &str) -> Value {
    json!({"v": 1, "integration_idn": "sandbox", "connector_idn": connector, "event_idn": "user_message",
           "actor": {"external_id": who}, "arguments": [{"name": "text", "value": text}]})
}

/// The running connector `sandbox/chat` and the flow `Bot/Main` on the webhook runner at
/// `runner`; answers the flow's signing secret, shown by the PUT that created the flow.
async fn setup(d: &DaemonProcess, runner: &str, max_attempts: u32) -> String {
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let flow = json!({
        "runner": {"kind": "webhook", "url": format!("{runner}/skills"), "timeout_ms": 2000, "max_attempts": max_attempts},
        "events": [
            {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
            {"idn": "result_success", "skill_idn": "OnSent", "integration_idn": "sandbox"}
        ]
    });
    d.put_flow("Bot", "Main", &flow)
        .await
        .expect("the first PUT shows the runner secret")
}

#[actix_rt::test]
async fn an_event_reaches_the_webhook_runner_and_its_commands_come_back_as_results() {
    let mut runner = RunnerServer::start(|r| {
        let inv = &r.json;
        if inv["skill_idn"] == "Talk" {
            let text = inv["event"]["arguments"][0]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                200,
                completed(
                    json!([{"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                "command_idn": "send_message", "arguments": {"text": format!("echo: {text}")}}]),
                ),
            )
        } else {
            (200, completed(json!([])))
        }
    });
    let dir = temp_dir("runner");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let secret = setup(&d, &runner.base, 3).await;

    let (s, v) = post(&c, d.url("/v1/events"), event("chat", "alice", "hello")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let event_id = v["id"].as_str().unwrap().to_owned();

    let talk = runner.next().await;
    assert_eq!(talk.path, "/skills");
    assert!(talk.signed_with(&secret), "signed: {:?}", talk.signature());
    assert!(!talk.signed_with(OTHER_SECRET));
    let inv = &talk.json;
    assert_eq!(inv["skill_idn"], "Talk");
    assert_eq!(inv["event"]["id"], event_id.as_str());
    assert_eq!(inv["flow_instance"]["agent_idn"], "Bot");
    assert_eq!(
        inv["session"]["connector_idn"], "chat",
        "the live session is sent along"
    );
    let persona = inv["flow_instance"]["persona_id"].clone();

    // The send_message went to the sandbox (native), which reports result_success.
    let result = runner.next().await;
    assert_eq!(result.json["skill_idn"], "OnSent");
    assert_eq!(result.json["event"]["event_idn"], "result_success");
    assert!(result.json["event"]["command_act_id"].is_string());
    assert_eq!(
        result.json["flow_instance"]["persona_id"], persona,
        "the same user persona"
    );

    // A repeated external_event_id is acknowledged and not routed again.
    let mut with_id = event("chat", "alice", "once");
    with_id["external_event_id"] = json!("ext-1");
    let (s, _) = post(&c, d.url("/v1/events"), with_id.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = post(&c, d.url("/v1/events"), with_id).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(runner.next().await.json["skill_idn"], "Talk");
    assert_eq!(runner.next().await.json["skill_idn"], "OnSent");
    assert!(runner.rx.try_recv().is_err());

    // Refusals at the door: 4xx naming the field, each counted and dead-lettered.
    let cases = [
        (
            event("nope", "alice", "x"),
            StatusCode::NOT_FOUND,
            "connector_idn",
        ),
        (
            json!({"v": 2, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message", "actor": {"external_id": "a"}}),
            StatusCode::BAD_REQUEST,
            "v",
        ),
        (
            json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "timer", "actor": {"external_id": "a"}}),
            StatusCode::BAD_REQUEST,
            "event_idn",
        ),
        (
            json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message", "actor": {"external_id": "a"}}),
            StatusCode::BAD_REQUEST,
            "arguments.text",
        ),
    ];
    for (body, status, field) in cases {
        let (s, v) = post(&c, d.url("/v1/events"), body).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (status, Some(field)),
            "{v}"
        );
    }
    let big = event("chat", "alice", &"x".repeat(70_000));
    let (s, v) = post(&c, d.url("/v1/events"), big).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("arguments[0].value"))
    );
    let letters: Vec<Value> = get_list(&c, d.url("/v1/dead-letters")).await.unwrap();
    let reasons: Vec<_> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_owned())
        .collect();
    for want in ["unknown_connector", "malformed", "undeclared_event"] {
        assert!(reasons.iter().any(|r| r == want), "{want} in {reasons:?}");
    }
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("switchboard_events_rejected_total{reason=\"unknown_connector\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "switchboard_invocations_total{agent=\"Bot\",flow=\"Main\",outcome=\"completed\"} 4"
    ));
    // Durations are Prometheus histograms, one sample per invocation.
    for line in [
        "# TYPE switchboard_invocation_duration_seconds histogram",
        "# TYPE switchboard_dispatch_latency_seconds histogram",
        "switchboard_invocation_duration_seconds_count{agent=\"Bot\",flow=\"Main\"} 4",
        "switchboard_invocation_duration_seconds_bucket{agent=\"Bot\",flow=\"Main\",le=\"+Inf\"} 4",
        "switchboard_dispatch_latency_seconds_count 4",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    assert!(!metrics.contains("quantile="), "no summaries: {metrics}");
    // The in-flight gauge is read at the scrape: once every event is handed on, it is 0.
    eventually(
        "switchboard_inflight_events 0",
        Duration::from_secs(2),
        || async {
            let metrics = d.metrics().await;
            metrics
                .lines()
                .any(|l| l == "switchboard_inflight_events 0")
                .then_some(())
        },
    )
    .await;
    // Every queue between stages is observable by name: depth and capacity at the scrape.
    let metrics = d.metrics().await;
    for queue in [
        "connector_inbox",
        "flow_shard_inbox",
        "shard_replies",
        "internal_events",
        "store_writer",
        "session_ends",
        "timer_commands",
    ] {
        for family in ["switchboard_queue_depth", "switchboard_queue_capacity"] {
            let series = format!("{family}{{queue=\"{queue}\"}}");
            assert!(
                metrics.lines().any(|l| l.starts_with(&series)),
                "{series}\n{metrics}"
            );
        }
    }
    let capacity = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_queue_capacity{queue=\"internal_events\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the internal-events queue reports its capacity");
    assert!(capacity > 0.0, "{capacity}");
}

#[actix_rt::test]
async fn a_failing_runner_is_retried_then_dead_lettered_then_replayed() {
    let mut runner = RunnerServer::start(|_| (500, r#"{"oops":"database down"}"#.into()));
    let dir = temp_dir("retry");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_RUNNERS__BACKOFF_INITIAL_MS", "10")]);
    let c = d.client();
    setup(&d, &runner.base, 3).await;
    let (s, v) = post(&c, d.url("/v1/events"), event("chat", "bob", "hi")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let event_id = v["id"].as_str().unwrap().to_owned();
    let mut invocation_ids = Vec::new();
    for _ in 0..3 {
        let r = runner.next().await;
        invocation_ids.push(r.json["invocation_id"].clone());
    }
    assert!(
        invocation_ids.windows(2).all(|w| w[0] == w[1]),
        "retries keep the invocation id"
    );
    let letter = eventually("the dead letter", Duration::from_secs(20), || async {
        let list = get_list(&c, d.url("/v1/dead-letters")).await?;
        list.into_iter().find(|l| l["reason"] == "runner_failed")
    })
    .await;
    let detail = letter["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 attempts; last: HTTP 500 Internal Server Error"),
        "{detail}"
    );
    assert!(
        !detail.contains("database down"),
        "GET /v1/dead-letters shows no text of the runner's body: {detail}"
    );
    assert_eq!(letter["event"]["id"], event_id.as_str());
    assert!(runner.rx.try_recv().is_err(), "no fourth attempt");

    // The runner recovers; the dead letter is replayed, marked as a redelivery.
    runner.answer_with(|_| (200, completed(json!([]))));
    let (s, v) = post(
        &c,
        d.url(&format!(
            "/v1/dead-letters/{}/replay",
            letter["id"].as_str().unwrap()
        )),
        json!(null),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let again = runner.next().await;
    assert_eq!(again.json["event"]["id"], event_id.as_str());
    assert_eq!(again.json["redelivered"], true);
    assert_eq!(
        again.json["invocation_id"], invocation_ids[0],
        "the same invocation id: the runner can tell"
    );
    let list: Vec<Value> = get_list(&c, d.url("/v1/dead-letters")).await.unwrap();
    assert!(
        list.iter().all(|l| l["id"] != letter["id"]),
        "replayed letters leave the store"
    );
}

#[actix_rt::test]
async fn a_runner_may_answer_later_through_the_result_endpoint() {
    // Talk answers later; OnSent at once (a pending OnSent would hold the queue until its
    // deadline, as it should).
    let mut runner = RunnerServer::start(|r| {
        if r.json["skill_idn"] == "Talk" {
            (202, String::new())
        } else {
            (200, completed(json!([])))
        }
    });
    let dir = temp_dir("later");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    setup(&d, &runner.base, 1).await;
    post(&c, d.url("/v1/events"), event("chat", "carol", "hi")).await;
    let talk = runner.next().await;
    let id = talk.json["invocation_id"].as_str().unwrap().to_owned();
    let (s, v) = post(&c, d.url(&format!("/v1/invocations/{id}/result")), json!({"v": 1, "outcome": "completed",
        "commands": [{"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "command_idn": "send_message", "arguments": {"text": "later"}}]})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(runner.next().await.json["skill_idn"], "OnSent");
    let (s, v) = post(
        &c,
        d.url(&format!("/v1/invocations/{id}/result")),
        json!({"v": 1, "outcome": "completed"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_invocation"))
    );
    let (s, v) = post(&c, d.url("/v1/commands"), json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "command_idn": "make_call"})).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("persona_id"))
    );
    let persona = talk.json["flow_instance"]["persona_id"].clone();
    let (s, v) = post(&c, d.url("/v1/commands"), json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "command_idn": "make_call", "persona_id": persona})).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("command_idn"))
    );
    let (s, v) = post(&c, d.url("/v1/commands"), json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "command_idn": "send_message", "arguments": {"text": "hi"}, "persona_id": persona})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(runner.next().await.json["skill_idn"], "OnSent");

    // Sessions: carol's is live; once her conversation ends it is listed as ended, with why.
    let live: Vec<Value> = get_list(
        &c,
        d.url("/v1/sessions?connectors=sandbox/*&is_active=true"),
    )
    .await
    .unwrap();
    assert!(live.iter().any(|s| s["persona_id"] == persona), "{live:?}");
    let mut end = event("chat", "carol", "bye");
    end["event_idn"] = json!("conversation_ended");
    let (s, _) = post(&c, d.url("/v1/events"), end).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let ended = eventually("the ended session", Duration::from_secs(10), || async {
        let list = get_list(
            &c,
            d.url("/v1/sessions?connectors=sandbox/chat&is_active=false"),
        )
        .await?;
        list.into_iter().find(|s| s["persona_id"] == persona)
    })
    .await;
    assert_eq!(ended["end_reason"], "conversation_ended");
    let live: Vec<Value> = get_list(&c, d.url("/v1/sessions?connectors=sandbox/*"))
        .await
        .unwrap();
    assert!(live.iter().all(|s| s["persona_id"] != persona));
    let none: Vec<Value> = get_list(
        &c,
        d.url("/v1/sessions?connectors=telegram/*&is_active=false"),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
}

#[actix_rt::test]
async fn a_replayed_event_is_routed_again_while_its_external_id_is_in_the_dedupe_window() {
    let mut runner = RunnerServer::start(|_| (500, r#"{"oops":"down"}"#.into()));
    let dir = temp_dir("replay-dedupe");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_RUNNERS__BACKOFF_INITIAL_MS", "10")]);
    let c = d.client();
    setup(&d, &runner.base, 1).await;
    let mut e = event("chat", "bob", "hi");
    e["external_event_id"] = json!("adapter-msg-1");
    let (s, v) = post(&c, d.url("/v1/events"), e).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let event_id = v["id"].as_str().unwrap().to_owned();
    runner.next().await;
    let letter = eventually("the dead letter", Duration::from_secs(20), || async {
        let list = get_list(&c, d.url("/v1/dead-letters")).await?;
        list.into_iter().find(|l| l["reason"] == "runner_failed")
    })
    .await;
    runner.answer_with(|_| (200, completed(json!([]))));
    let (s, v) = post(
        &c,
        d.url(&format!(
            "/v1/dead-letters/{}/replay",
            letter["id"].as_str().unwrap()
        )),
        json!(null),
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("replayed")),
        "{v}"
    );
    // A deliberate redelivery, not a duplicate: the runner gets it again.
    let again = runner.next().await;
    assert_eq!(again.json["event"]["id"], event_id.as_str());
    assert_eq!(again.json["redelivered"], true);
}

#[actix_rt::test]
async fn flow_state_set_by_a_skill_survives_a_kill() {
    // The default skill sets the state field that picks the skill; the chosen one does nothing.
    let mut runner = RunnerServer::start(|r| {
        if r.json["skill_idn"] == "DefaultReply" {
            (
                200,
                completed(
                    json!([{"v": 1, "integration_idn": "system", "connector_idn": "system",
                    "command_idn": "set_state", "arguments": {"idn": "reply_skill", "value": "CustomReply"}}]),
                ),
            )
        } else {
            (200, completed(json!([])))
        }
    });
    let dir = temp_dir("state-kill");
    let d = DaemonProcess::start(&dir, &[]);
    let flow = json!({
        "runner": {"kind": "webhook", "url": format!("{}/skills", runner.base), "timeout_ms": 2000},
        "state_fields": [{"idn": "reply_skill", "scope": "user", "default_value": "DefaultReply"}],
        "events": [{"idn": "ping", "skill_selector": "skill_idn_from_state", "state_idn": "reply_skill",
                    "integration_idn": "system"}]
    });
    d.put_flow("Bot", "Main", &flow).await;
    let ping = json!({"v": 1, "integration_idn": "system", "connector_idn": "system",
                      "event_idn": "ping", "actor": {"external_id": "bob"}});
    let (s, v) = post(&d.client(), d.url("/v1/events"), ping.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(runner.next().await.json["skill_idn"], "DefaultReply");
    // Written behind: wait for the row, then kill.
    eventually("the state recorded", Duration::from_secs(10), || async {
        let db = rusqlite::Connection::open(dir.join("switchboard.db")).ok()?;
        db.query_row(
            "SELECT value FROM flow_state WHERE field = 'reply_skill'",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .filter(|v| v == "CustomReply")
    })
    .await;
    d.kill9();
    let d = DaemonProcess::start(&dir, &[]);
    let (s, v) = post(&d.client(), d.url("/v1/events"), ping).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        runner.next().await.json["skill_idn"],
        "CustomReply",
        "the value set before the kill picks the skill"
    );
}
