//! The native `api` integration's webhooks on the real daemon, over loopback: a connector's
//! creation assigns its incoming URL and shows its signing secret once; a request signed with
//! the `standardwebhooks` crate is accepted and routed to a webhook runner with the body's
//! arguments; a bad signature, a stale timestamp, an event outside the allow-list, a wrong URL
//! are refused with 4xx naming the reason, counted and (but the URL's) dead-lettered; a
//! replayed `webhook-id` is a duplicate, not routed again; a sender that cannot sign uses the
//! connector's token once `verify_signature=false` is set.

mod common;

use common::call;
use common::daemon::{temp_dir, DaemonProcess};
use common::runner_server::{completed, Received, RunnerServer};
use common::wait::{eventually, PATIENCE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Creates an `api` connector with `settings` and runs it; answers (id, incoming URL path,
/// the creation answer's revealed secret).
async fn api_connector(d: &DaemonProcess, idn: &str, settings: Value) -> (String, String, String) {
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url("/v1/integrations/api/connectors"),
        Some(json!({"title": "Hooks", "connector_idn": idn, "settings": settings})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let setting = |list: &Value, name: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|x| x["idn"] == name))
            .and_then(|x| x["value"].as_str())
            .map(str::to_owned)
    };
    let url = setting(&v["settings"], "incoming_webhook_url").expect("an incoming URL");
    let secret = setting(&v["revealed"], "signing_secret").expect("the secret, revealed");
    assert!(
        setting(&v["settings"], "signing_secret").is_none(),
        "the secret shows among the settings: {v}"
    );
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/run")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Never shown again.
    let (_, again) = call(
        &d.client(),
        "GET",
        d.url(&format!("/v1/integrations/connectors/{id}")),
        None,
    )
    .await;
    assert!(!again.to_string().contains(&secret), "{again}");
    (id, url, secret)
}

/// POSTs `body` to `path` with `headers`; answers the status and JSON body.
async fn post(
    d: &DaemonProcess,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .post(d.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let r = r.send().await.expect("POST the webhook");
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The Standard Webhooks headers of `body` as message `id` at `ts`, signed with `secret`.
fn signed(secret: &str, id: &str, ts: i64, body: &str) -> Vec<(&'static str, String)> {
    let signature = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(id, ts, body.as_bytes())
        .unwrap();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ]
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An invocation's event idn, actor and arguments by name.
fn event_of(r: &Received) -> (String, String, serde_json::Map<String, Value>) {
    let e = &r.json["event"];
    let mut args = serde_json::Map::new();
    match &e["arguments"] {
        Value::Array(list) => {
            for a in list {
                args.insert(a["name"].as_str().unwrap().to_owned(), a["value"].clone());
            }
        }
        Value::Object(map) => args = map.clone(),
        _ => {}
    }
    let actor = e["actor"]["external_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (e["event_idn"].as_str().unwrap().to_owned(), actor, args)
}

fn assert_refused(got: (StatusCode, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, v) = got;
    assert_eq!(s.as_u16(), status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    if let Some(f) = field {
        assert_eq!(v["error"]["field"], f, "{v}");
    }
}

#[actix_rt::test]
async fn a_signed_webhook_is_routed_and_bad_ones_are_refused_with_the_reason() {
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("api-incoming");
    let d = DaemonProcess::start(&dir, &[]);
    let (_, url, secret) = api_connector(
        &d,
        "hooks",
        json!([{"idn": "incoming_events", "value": "[\"user_message\", \"order_paid\"]"}]),
    )
    .await;
    assert!(url.starts_with("/hooks/api/"), "{url}");
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "api"},
        {"idn": "order_paid", "skill_idn": "Paid", "integration_idn": "api"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;

    // Signed: accepted, routed with the body's data as arguments, the actor from user_id.
    let body = r#"{"type":"order_paid","data":{"user_id":"cust-7","amount":12.5,"paid":true,"items":[{"sku":"a"}],"note":null}}"#;
    let got = post(&d, &url, &signed(&secret, "msg_1", now(), body), body).await;
    assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.1);
    assert_eq!(got.1["status"], "accepted");
    let (event, actor, args) = event_of(&runner.next().await);
    assert_eq!((event.as_str(), actor.as_str()), ("order_paid", "cust-7"));
    assert_eq!(args["amount"], "12.5");
    assert_eq!(args["paid"], "true");
    assert_eq!(args["items"], r#"[{"sku":"a"}]"#);
    assert!(!args.contains_key("note"));

    // The same webhook-id again (a sender's retry): a duplicate, not routed again.
    let got = post(&d, &url, &signed(&secret, "msg_1", now(), body), body).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["status"], "duplicate");

    // Refusals, each naming its reason.
    let hi = r#"{"type":"user_message","data":{"user_id":"cust-7","text":"hi"}}"#;
    let mut bad = signed(&secret, "msg_2", now(), hi);
    bad[2].1 = signed(&secret, "msg_2", now(), "{}")[2].1.clone();
    assert_refused(
        post(&d, &url, &bad, hi).await,
        401,
        "invalid_signature",
        Some("webhook-signature"),
    );
    let stale = now() - 3600;
    assert_refused(
        post(&d, &url, &signed(&secret, "msg_3", stale, hi), hi).await,
        401,
        "stale_timestamp",
        Some("webhook-timestamp"),
    );
    assert_refused(
        post(&d, &url, &[], hi).await,
        401,
        "missing_signature",
        Some("webhook-id"),
    );
    let other = r#"{"type":"refund","data":{"user_id":"cust-7"}}"#;
    assert_refused(
        post(&d, &url, &signed(&secret, "msg_4", now(), other), other).await,
        403,
        "event_not_allowed",
        Some("type"),
    );
    let anonymous = r#"{"type":"user_message","data":{"text":"hi"}}"#;
    assert_refused(
        post(
            &d,
            &url,
            &signed(&secret, "msg_5", now(), anonymous),
            anonymous,
        )
        .await,
        400,
        "missing_actor",
        Some("data.user_id"),
    );
    let guessed = format!("{}x", &url[..url.len() - 1]);
    assert_refused(
        post(&d, &guessed, &signed(&secret, "msg_6", now(), hi), hi).await,
        404,
        "unknown_webhook",
        None,
    );
    // Admission's own refusals come through as any event's: user_message needs text.
    let textless = r#"{"type":"user_message","data":{"user_id":"cust-7"}}"#;
    let (s, v) = post(
        &d,
        &url,
        &signed(&secret, "msg_7", now(), textless),
        textless,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // A good one after all that is the next the runner sees: no refused one was routed.
    let got = post(&d, &url, &signed(&secret, "msg_8", now(), hi), hi).await;
    assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.1);
    let (event, _, args) = event_of(&runner.next().await);
    assert_eq!(
        (event.as_str(), args["text"].as_str()),
        ("user_message", Some("hi"))
    );

    // Counted by reason, and dead-lettered (but the guessed URL's).
    let metrics = d.metrics().await;
    for reason in [
        "invalid_signature",
        "stale_timestamp",
        "missing_signature",
        "event_not_allowed",
        "missing_actor",
        "unknown_webhook",
    ] {
        let line = format!("switchboard_events_rejected_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "no {line}");
    }
    let letters = eventually("the refusals' dead letters", PATIENCE, || async {
        let (_, v) = call(&d.client(), "GET", d.url("/v1/dead-letters"), None).await;
        let list = v["dead_letters"]
            .as_array()
            .or(v.as_array())
            .cloned()
            .unwrap_or_default();
        let refused: Vec<Value> = list
            .into_iter()
            .filter(|l| l["reason"] == "webhook_refused")
            .collect();
        (refused.len() >= 5).then_some(refused)
    })
    .await;
    assert_eq!(letters.len(), 5, "{letters:?}");
    assert!(
        !serde_json::to_string(&letters).unwrap().contains(&secret),
        "a dead letter shows the secret"
    );
}

#[actix_rt::test]
async fn a_sender_that_cannot_sign_uses_the_connector_s_token_when_verification_is_off() {
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("api-token");
    let d = DaemonProcess::start(&dir, &[]);
    let (_, url, secret) = api_connector(
        &d,
        "plain",
        json!([
            {"idn": "verify_signature", "value": "false"},
            {"idn": "incoming_actor", "value": "header:X-Customer"},
        ]),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "api"}]});
    d.put_flow("Bot", "Main", &flow).await;
    let hi = r#"{"type":"user_message","data":{"text":"hello"}}"#;
    let customer = ("x-customer", "c-42".to_owned());

    assert_refused(
        post(&d, &url, std::slice::from_ref(&customer), hi).await,
        401,
        "invalid_token",
        Some("authorization"),
    );
    assert_refused(
        post(
            &d,
            &url,
            &[customer.clone(), ("authorization", "Bearer nope".into())],
            hi,
        )
        .await,
        401,
        "invalid_token",
        None,
    );
    let auth = ("authorization", format!("Bearer {secret}"));
    let got = post(&d, &url, &[customer, auth.clone()], hi).await;
    assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.1);
    let (event, actor, args) = event_of(&runner.next().await);
    assert_eq!((event.as_str(), actor.as_str()), ("user_message", "c-42"));
    assert_eq!(args["text"], "hello");
    assert_refused(
        post(&d, &url, &[auth], hi).await,
        400,
        "missing_actor",
        Some("x-customer"),
    );
}

/// A skill command for the `api` connector `hooks`.
fn to_hooks(command: &str, args: Value) -> Value {
    json!({"v": 1, "integration_idn": "api", "connector_idn": "hooks", "command_idn": command,
           "arguments": args})
}

/// The flow runner: a sandbox user message's text names the case's commands; the rest (the
/// results) complete with none.
fn skill(r: &Received) -> (u16, String) {
    let (event, _, args) = event_of(r);
    if event != "user_message" {
        return (200, completed(json!([])));
    }
    let commands = match args["text"].as_str().unwrap() {
        "two" => json!([
            to_hooks(
                "send_email",
                json!({"toEmail": "a@example.com", "subject": "first"})
            ),
            to_hooks("onboarding_setup", json!({"customerIdn": "c1"})),
        ]),
        "one" => json!([to_hooks("send_email", json!({"toEmail": "b@example.com"}))]),
        "other" => json!([to_hooks("delete_everything", json!({}))]),
        other => panic!("no case {other}"),
    };
    (200, completed(commands))
}

/// Sends the sandbox user message `text` as alice.
async fn say(d: &DaemonProcess, text: &str) {
    let e = json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
        "actor": {"external_id": "alice"}, "arguments": {"text": text}});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(e)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

/// The next event the runner gets that is not a user message: (idn, arguments).
async fn next_answer(runner: &mut RunnerServer) -> (String, serde_json::Map<String, Value>) {
    loop {
        let (event, _, args) = event_of(&runner.next().await);
        if event != "user_message" {
            return (event, args);
        }
    }
}

/// A sandbox chat and an `api` connector `hooks` delivering to `receiver`, a flow whose skill
/// sends to it and hears the results (and `webhook_disabled`); answers the secret.
async fn outgoing_setup(
    d: &DaemonProcess,
    runner: &RunnerServer,
    receiver: &RunnerServer,
) -> String {
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let (_, _, secret) = api_connector(
        d,
        "hooks",
        json!([
            {"idn": "outgoing_webhook_url", "value": format!("{}/out", receiver.base)},
            {"idn": "outgoing_commands", "value": "[\"send_email\", \"onboarding_setup\"]"},
            {"idn": "outgoing_headers", "value": "{\"X-Tenant\": \"t1\"}"},
            {"idn": "max_retries", "value": "5"},
        ]),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "result_success", "skill_idn": "Done", "integration_idn": "api"},
        {"idn": "result_error", "skill_idn": "Done", "integration_idn": "api"},
        {"idn": "webhook_disabled", "skill_idn": "Gone", "integration_idn": "system"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;
    secret
}

#[actix_rt::test]
async fn commands_go_out_signed_retried_in_order_and_answer_once() {
    let mut runner = RunnerServer::start(skill);
    // The first command fails twice (503), then is taken with a JSON answer; the rest at once.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = seen.clone();
    let mut receiver =
        RunnerServer::start(
            move |_| match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 | 1 => (503, "{}".into()),
                _ => (200, r#"{"messageId": "m-1", "queued": true}"#.into()),
            },
        );
    let dir = temp_dir("api-outgoing");
    let d = DaemonProcess::start(&dir, &[]);
    let secret = outgoing_setup(&d, &runner, &receiver).await;

    say(&d, "two").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(receiver.next().await);
    }
    // Three tries of the first, the same webhook-id, then the second: order held.
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3]);
    let types: Vec<&str> = got
        .iter()
        .map(|r| r.json["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["send_email", "send_email", "send_email", "onboarding_setup"]
    );
    for r in &got {
        assert!(r.signed_with(&secret), "not verified: {:?}", r.headers);
        assert_eq!(r.headers["x-tenant"], "t1");
        assert_eq!(r.path, "/out");
    }
    let first = &got[0].json["data"];
    assert_eq!(first["arguments"]["toEmail"], "a@example.com");
    assert_eq!(first["command_act_id"].as_str().unwrap(), ids[0]);

    // One result_success per command, with the receiver's answer.
    let (event, args) = next_answer(&mut runner).await;
    assert_eq!(event, "result_success");
    assert_eq!(args["command_act_id"].as_str().unwrap(), ids[0]);
    assert_eq!(args["messageId"], "m-1");
    assert_eq!(args["queued"], "true");
    assert_eq!(args["statusCode"], "200");
    let (event, args) = next_answer(&mut runner).await;
    assert_eq!(event, "result_success");
    assert_eq!(args["command_act_id"].as_str().unwrap(), ids[3]);

    // A command outgoing_commands does not name: result_error, nothing sent.
    say(&d, "other").await;
    let (event, args) = next_answer(&mut runner).await;
    assert_eq!(event, "result_error", "{args:?}");
    assert!(
        args["error"]
            .as_str()
            .unwrap()
            .contains("delete_everything"),
        "{args:?}"
    );
    say(&d, "one").await;
    let r = receiver.next().await;
    assert_eq!(r.json["data"]["arguments"]["toEmail"], "b@example.com");
}

#[actix_rt::test]
async fn a_gone_receiver_disables_the_webhook_until_the_connector_runs_again() {
    let mut runner = RunnerServer::start(skill);
    let mut receiver = RunnerServer::start(|_| (410, "{}".into()));
    let dir = temp_dir("api-gone");
    let d = DaemonProcess::start(&dir, &[]);
    outgoing_setup(&d, &runner, &receiver).await;

    say(&d, "one").await;
    receiver.next().await;
    let mut answers = vec![
        next_answer(&mut runner).await,
        next_answer(&mut runner).await,
    ];
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(answers[0].0, "result_error", "{answers:?}");
    assert!(
        answers[0].1["error"].as_str().unwrap().contains("410"),
        "{answers:?}"
    );
    assert_eq!(answers[1].0, "webhook_disabled", "{answers:?}");
    assert_eq!(answers[1].1["connectorIdn"], "hooks");

    // Disabled: refused without an attempt.
    say(&d, "one").await;
    let (event, args) = next_answer(&mut runner).await;
    assert_eq!(event, "result_error");
    assert!(
        args["error"].as_str().unwrap().contains("disabled"),
        "{args:?}"
    );
    assert!(
        receiver.rx.try_recv().is_err(),
        "a disabled webhook was sent to"
    );
}

#[actix_rt::test]
async fn commands_in_the_outbox_survive_kill_9() {
    let mut runner = RunnerServer::start(skill);
    let mut receiver = RunnerServer::start(|_| (503, "{}".into()));
    let dir = temp_dir("api-crash");
    let builder = DaemonProcess::builder(&dir);
    let d = builder.start();
    outgoing_setup(&d, &runner, &receiver).await;

    say(&d, "two").await;
    let before = receiver.next().await;
    let id = before.headers["webhook-id"].to_str().unwrap().to_owned();
    d.kill9();
    receiver.answer_with(|_| (200, "{}".into()));
    let d = builder.start();
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = receiver.next().await;
        let rid = r.headers["webhook-id"].to_str().unwrap().to_owned();
        if got.last() != Some(&rid) {
            got.push(rid);
        }
    }
    assert_eq!(
        got[0], id,
        "the first command is sent again with its id, first"
    );
    let mut acts = Vec::new();
    while acts.len() < 2 {
        let (event, args) = next_answer(&mut runner).await;
        assert_eq!(event, "result_success", "{args:?}");
        acts.push(args["command_act_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(acts, got);
    drop(d);
}

#[actix_rt::test]
async fn a_refused_delivery_answers_result_error_and_dead_letters_the_command() {
    let mut runner = RunnerServer::start(skill);
    let mut receiver = RunnerServer::start(|_| (400, "{}".into()));
    let dir = temp_dir("api-refused");
    let d = DaemonProcess::start(&dir, &[]);
    let secret = outgoing_setup(&d, &runner, &receiver).await;

    say(&d, "one").await;
    receiver.next().await;
    let (event, args) = next_answer(&mut runner).await;
    assert_eq!(event, "result_error");
    assert!(
        args["error"].as_str().unwrap().contains("HTTP 400"),
        "{args:?}"
    );
    let letters = eventually("the dead letter", PATIENCE, || async {
        let url = d.url("/v1/dead-letters?reason=delivery_failed");
        let (_, v) = call(&d.client(), "GET", url, None).await;
        v.as_array().is_some_and(|l| !l.is_empty()).then_some(v)
    })
    .await;
    let letter = &letters[0];
    assert_eq!(letter["command"]["command_idn"], "send_email", "{letters}");
    assert_eq!(letter["command"]["connector_idn"], "hooks", "{letters}");
    assert!(!letters.to_string().contains(&secret));
}

/// Rotates connector `id`'s secret with `overlap` seconds; answers the new secret.
async fn rotate(d: &DaemonProcess, id: &str, overlap: u64) -> String {
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/rotate-secret")),
        Some(json!({"overlap_seconds": overlap})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["setting"], "signing_secret");
    assert_eq!(v["previous_valid_until"].is_string(), overlap > 0, "{v}");
    v["secret"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn a_rotated_secret_is_shown_once_and_the_old_one_counts_for_the_overlap() {
    let mut runner = RunnerServer::start(skill);
    let mut receiver = RunnerServer::start(|_| (200, "{}".into()));
    let dir = temp_dir("api-rotate");
    let d = DaemonProcess::start(&dir, &[]);
    let old = outgoing_setup(&d, &runner, &receiver).await;
    let (_, list) = call(
        &d.client(),
        "GET",
        d.url("/v1/integrations/api/connectors"),
        None,
    )
    .await;
    let id = list.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = list.as_array().unwrap()[0]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["idn"] == "incoming_webhook_url")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/rotate-secret")),
        Some(json!({"overlap_seconds": 604801})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("overlap_seconds"))
    );

    let new = rotate(&d, &id, 3600).await;
    assert_ne!(new, old);
    let (_, shown) = call(
        &d.client(),
        "GET",
        d.url(&format!("/v1/integrations/connectors/{id}")),
        None,
    )
    .await;
    assert!(
        !shown.to_string().contains(&new) && !shown.to_string().contains(&old),
        "{shown}"
    );

    // Outgoing: signed with both, so a receiver holding either verifies it.
    say(&d, "one").await;
    let r = receiver.next().await;
    assert!(
        r.signed_with(&new) && r.signed_with(&old),
        "{:?}",
        r.headers
    );
    next_answer(&mut runner).await;
    // Incoming: either verifies during the overlap.
    let hi = r#"{"type": "user_message", "data": {"text": "hi", "user_id": "u1"}}"#;
    for (n, secret) in [&old, &new].into_iter().enumerate() {
        let got = post(
            &d,
            &url,
            &signed(secret, &format!("msg_rot{n}"), now(), hi),
            hi,
        )
        .await;
        assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.1);
    }

    // Rotated again without an overlap: the one replaced counts no more.
    let newest = rotate(&d, &id, 0).await;
    assert_refused(
        post(&d, &url, &signed(&new, "msg_rot2", now(), hi), hi).await,
        401,
        "invalid_signature",
        None,
    );
    let got = post(&d, &url, &signed(&newest, "msg_rot3", now(), hi), hi).await;
    assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.1);
    say(&d, "one").await;
    let r = receiver.next().await;
    assert!(
        r.signed_with(&newest) && !r.signed_with(&new),
        "{:?}",
        r.headers
    );
}

/// The runner of the recall case: "hold" answers `pending` with two webhooks (the turn stays
/// open), any other message completes with a third.
fn holding(r: &Received) -> (u16, String) {
    let (event, _, args) = event_of(r);
    if event != "user_message" {
        return (200, completed(json!([])));
    }
    let mail = |s: &str| {
        to_hooks(
            "send_email",
            json!({"toEmail": "a@example.com", "subject": s}),
        )
    };
    if args["text"] == "hold" {
        let body =
            json!({"v": 1, "outcome": "pending", "commands": [mail("first"), mail("second")]});
        return (200, body.to_string());
    }
    (200, completed(json!([mail("third")])))
}

#[actix_rt::test]
async fn a_newer_message_withdraws_the_interrupted_turn_s_webhooks_not_sent_yet() {
    let runner = RunnerServer::start(holding);
    // The receiver answers each webhook after a pause: "first" is in flight, "second" waits
    // behind it (one conversation, in order) when the newer message comes.
    let mut receiver =
        RunnerServer::start_slow(std::time::Duration::from_secs(3), |_| (200, "{}".into()));
    let dir = temp_dir("api-recall");
    let d = DaemonProcess::start(&dir, &[]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    api_connector(
        &d,
        "hooks",
        json!([
            {"idn": "outgoing_webhook_url", "value": format!("{}/out", receiver.base)},
            {"idn": "outgoing_commands", "value": "[\"send_email\"]"},
        ]),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox",
                    "interrupt_mode": "interrupt"}]});
    d.put_flow("Bot", "Main", &flow).await;

    say(&d, "hold").await;
    eventually("the first webhook in flight", PATIENCE, || async {
        (receiver.arrived() == 1).then_some(())
    })
    .await;
    say(&d, "stop").await;
    let subjects: Vec<String> = [receiver.next().await, receiver.next().await]
        .iter()
        .map(|r| r.json["data"]["arguments"]["subject"].to_string())
        .collect();
    assert_eq!(
        subjects,
        ["\"first\"", "\"third\""],
        "the webhook in flight arrives, the waiting one is withdrawn, the newer turn's follows"
    );
    eventually("the withdrawal counted", PATIENCE, || async {
        d.metrics()
            .await
            .contains("switchboard_command_recalls_total{outcome=\"withdrawn\"} 1")
            .then_some(())
    })
    .await;
}
