//! The native `http` integration on the real daemon: a webhook runner answers a user message
//! with `send_request` commands, the daemon calls a local API (real HTTP on loopback) with the
//! connector's base URL and credentials, and `magic_http_response` plus `result_success` or
//! `result_error` come back to the runner. A planted credential appears in none of what the
//! daemon shows: invocations, dead letters, metrics, logs.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::daemon::{temp_dir, DaemonProcess};
use common::runner_server::{argument, completed, Received, RunnerServer};
use common::{call, call_text};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "planted-secret-7f3a9c";

/// What the API saw: `(method, path, authorization)`.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A local API on 127.0.0.1:0; answers its base URL and what it saw.
fn api() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let flaky = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let (seen, flaky) = (s.clone(), flaky.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (seen, flaky) = (seen.clone(), flaky.clone());
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                seen.lock()
                    .unwrap()
                    .push((req.method().to_string(), req.uri().to_string(), auth));
                match req.path() {
                    "/v1/users/1" => HttpResponse::Ok().json(json!({"id": 1, "name": "Ada"})),
                    "/v1/echo" => HttpResponse::Created()
                        .insert_header(("x-answer", "echo"))
                        .body(body),
                    "/v1/flaky" => {
                        if flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                            HttpResponse::ServiceUnavailable()
                                .insert_header(("retry-after", "0"))
                                .finish()
                        } else {
                            HttpResponse::Ok().body("third time")
                        }
                    }
                    "/v1/slow" => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        HttpResponse::Ok().body("slow")
                    }
                    "/v1/fast" => HttpResponse::Ok().body("fast"),
                    "/v1/slower" => {
                        tokio::time::sleep(Duration::from_millis(2500)).await;
                        HttpResponse::Ok().body("too late")
                    }
                    "/v1/big" => HttpResponse::Ok().body("x".repeat(200)),
                    "/v1/away" => {
                        let to = req
                            .query_string()
                            .strip_prefix("to=")
                            .unwrap_or("")
                            .to_owned();
                        HttpResponse::Found()
                            .insert_header(("location", to))
                            .finish()
                    }
                    _ => HttpResponse::NotFound().body("no such thing"),
                }
            }
        }))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (format!("http://{addr}"), seen)
}

fn send_request(args: Value) -> Value {
    json!({"v": 1, "integration_idn": "http", "connector_idn": "api", "command_idn": "send_request",
           "arguments": args})
}

/// The runner: a user message's text names a case, answered with its commands; every other
/// invocation (the http answers) completes with none.
fn answer(r: &Received) -> (u16, String) {
    let e = &r.json["event"];
    if e["event_idn"] != "user_message" {
        return (200, completed(json!([])));
    }
    let commands = match argument(e, "text").unwrap().as_str() {
        "get" => json!([send_request(
            json!({"method": "GET", "url": "users/1", "targetAction": "profile"})
        )]),
        "post" => json!([send_request(
            json!({"method": "POST", "url": "/echo", "body": "{\"a\":1}",
            "headers": "{\"X-Trace\": \"t1\"}"})
        )]),
        "flaky" => json!([send_request(json!({"method": "GET", "url": "flaky"}))]),
        "missing" => json!([send_request(
            json!({"method": "GET", "url": "nothing-here"})
        )]),
        "denied" => json!([send_request(
            json!({"method": "GET", "url": "http://169.254.169.254/latest"})
        )]),
        "order" => json!([
            send_request(json!({"method": "GET", "url": "slow", "targetAction": "first"})),
            send_request(json!({"method": "GET", "url": "fast", "targetAction": "second"})),
        ]),
        other => panic!("no case {other}"),
    };
    (200, completed(commands))
}

/// An event the runner received, as `(event idn, arguments by name)`.
fn event_of(r: &Received) -> (String, serde_json::Map<String, Value>) {
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
    (e["event_idn"].as_str().unwrap().to_owned(), args)
}

/// Sends user message `text` and collects the http answers until `n` arrived.
async fn case(
    d: &DaemonProcess,
    runner: &mut RunnerServer,
    text: &str,
    n: usize,
) -> Vec<(String, serde_json::Map<String, Value>)> {
    let e = json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
        "actor": {"external_id": "alice"}, "arguments": {"text": text}});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(e)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut got = Vec::new();
    while got.len() < n {
        let r = runner.next().await;
        assert!(
            !String::from_utf8_lossy(&r.body).contains(SECRET),
            "an invocation shows the credential"
        );
        let (event, args) = event_of(&r);
        if event != "user_message" {
            got.push((event, args));
        }
    }
    got
}

#[actix_rt::test]
async fn skills_call_an_api_with_the_connector_s_credentials_and_get_the_answer() {
    let (api, seen) = api();
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-native");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_LOG__LEVEL", "debug")]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "http",
        json!({"title": "API", "connector_idn": "api", "settings": [
            {"idn": "base_url", "value": format!("{api}/v1")},
            {"idn": "auth_type", "value": "bearer"},
            {"idn": "auth_token", "value": SECRET},
            {"idn": "allowed_hosts", "value": "[\"169.254.169.254\"]"},
        ]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_success", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;

    // GET with the bearer injected; the answer as magic_http_response, then result_success.
    let got = case(&d, &mut runner, "get", 2).await;
    assert_eq!(got[0].0, "magic_http_response");
    let a = &got[0].1;
    assert_eq!(a["statusCode"], "200");
    assert_eq!(a["targetAction"], "profile");
    assert_eq!(a["truncated"], "false");
    assert!(a["command_act_id"].as_str().is_some());
    let body: Value = serde_json::from_str(a["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["name"], "Ada");
    let headers: Value = serde_json::from_str(a["headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["content-type"], "application/json");
    assert!(a["durationMs"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(got[1].0, "result_success");
    assert_eq!(got[1].1["statusCode"], "200");
    assert_eq!(
        seen.lock().unwrap().last().cloned().unwrap(),
        (
            "GET".into(),
            "/v1/users/1".into(),
            format!("Bearer {SECRET}")
        )
    );

    // POST with a body and the skill's header.
    let got = case(&d, &mut runner, "post", 2).await;
    assert_eq!(got[0].1["statusCode"], "201");
    assert_eq!(got[0].1["body"], "{\"a\":1}");
    assert_eq!(got[1].0, "result_success");

    // An idempotent request retried past two 503s (Retry-After: 0).
    let before = seen.lock().unwrap().len();
    let got = case(&d, &mut runner, "flaky", 2).await;
    assert_eq!(got[0].1["statusCode"], "200");
    assert_eq!(got[0].1["body"], "third time");
    assert_eq!(seen.lock().unwrap().len() - before, 3, "three attempts");

    // A 404 comes back, then result_error: the caller's fault, not retried.
    let got = case(&d, &mut runner, "missing", 2).await;
    assert_eq!(got[0].1["statusCode"], "404");
    assert_eq!(got[1].0, "result_error");
    assert_eq!(got[1].1["fault"], "caller");
    assert_eq!(got[1].1["statusCode"], "404");

    // The egress policy refuses a link-local address even on an allowed host: no answer, a
    // result_error with the reason, and a dead letter.
    let got = case(&d, &mut runner, "denied", 1).await;
    assert_eq!(got[0].0, "result_error");
    assert!(
        got[0].1["error"]
            .as_str()
            .unwrap()
            .contains("egress_denied"),
        "{:?}",
        got[0].1
    );

    // One conversation's requests answer in the order sent, the slow one first.
    let got = case(&d, &mut runner, "order", 4).await;
    let order: Vec<&str> = got
        .iter()
        .filter(|(e, _)| e == "magic_http_response")
        .map(|(_, a)| a["targetAction"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["first", "second"]);

    // The planted credential shows nowhere: not to the runner, not in dead letters, metrics
    // or logs (at DEBUG).
    let (s, letters) = call_text(&d.client(), "GET", d.url("/v1/dead-letters"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(letters.contains("command_failed"), "{letters}");
    assert!(!letters.contains(SECRET));
    let (_, metrics) = call_text(&d.client(), "GET", d.url("/metrics"), None).await;
    assert!(!metrics.contains(SECRET));
    assert!(
        metrics.contains(
            "switchboard_send_requests_total{account=\"default\",connector=\"api\",status_class=\"2xx\",outcome=\"success\"}"
        ),
        "requests are counted by connector"
    );
    assert!(!d.logged(SECRET), "a log line shows the credential");
    while let Ok(r) = runner.rx.try_recv() {
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    }
    d.terminate().await;
}

/// What another host saw: `(path, authorization)`.
type Caught = Arc<Mutex<Vec<(String, String)>>>;

/// Another host (another port of loopback) and what it saw.
fn elsewhere() -> (String, Caught) {
    let seen: Caught = Arc::default();
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let seen = s.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let seen = seen.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                seen.lock().unwrap().push((req.path().to_owned(), auth));
                HttpResponse::Ok().body("caught")
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (format!("http://{addr}"), seen)
}

#[actix_rt::test]
async fn requests_time_out_bodies_are_capped_and_credentials_never_follow_a_redirect_away() {
    let (api, seen) = api();
    let (other, caught) = elsewhere();
    let away = format!("away?to={other}/catch");
    let mut runner = RunnerServer::start(move |r: &Received| {
        let e = &r.json["event"];
        if e["event_idn"] != "user_message" {
            return (200, completed(json!([])));
        }
        let command = match argument(e, "text").unwrap().as_str() {
            "timeout" => {
                let mut c = send_request(json!({"method": "GET", "url": "slower"}));
                c["connector_idn"] = json!("tight");
                c
            }
            "big" => send_request(json!({"method": "GET", "url": "big"})),
            "away" => send_request(json!({"method": "GET", "url": away.clone()})),
            other => panic!("no case {other}"),
        };
        (200, completed(json!([command])))
    });
    let dir = temp_dir("http-native-limits");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_LOG__LEVEL", "debug")]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    for (idn, timeout) in [("api", "30"), ("tight", "1")] {
        d.run_connector(
            "http",
            json!({"title": idn, "connector_idn": idn, "settings": [
                {"idn": "base_url", "value": format!("{api}/v1")},
                {"idn": "auth_type", "value": "bearer"},
                {"idn": "auth_token", "value": SECRET},
                {"idn": "timeout_seconds", "value": timeout},
                {"idn": "allowed_hosts", "value": "127.0.0.1"},
            ]}),
        )
        .await;
    }
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url("/v1/integrations/http/settings"),
        Some(json!([{"idn": "max_response_bytes", "value": "16"}])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;

    // No answer within the connector's timeout: result_error saying so, the peer's fault.
    let got = case(&d, &mut runner, "timeout", 1).await;
    assert_eq!(got[0].0, "result_error", "{got:?}");
    assert!(
        got[0].1["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1000 ms"),
        "{got:?}"
    );
    assert_eq!(got[0].1["fault"], "peer");

    // A body longer than max_response_bytes comes cut, and says so.
    let got = case(&d, &mut runner, "big", 1).await;
    assert_eq!(got[0].0, "magic_http_response", "{got:?}");
    assert_eq!(got[0].1["body"], "x".repeat(16));
    assert_eq!(got[0].1["truncated"], "true");

    // A redirect to another host is not followed with the credential: the 302 comes back and
    // the other host saw nothing.
    let got = case(&d, &mut runner, "away", 2).await;
    assert_eq!(got[0].0, "magic_http_response", "{got:?}");
    assert_eq!(got[0].1["statusCode"], "302");
    assert!(
        caught.lock().unwrap().is_empty(),
        "{:?}",
        caught.lock().unwrap()
    );
    assert_eq!(
        seen.lock().unwrap().last().cloned().unwrap().2,
        format!("Bearer {SECRET}"),
        "the API itself got it"
    );
    assert!(!d.logged(SECRET));
    d.terminate().await;
}
