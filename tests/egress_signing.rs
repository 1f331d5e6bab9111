//! The egress policy and Standard Webhooks signing through the real binary: a flow whose
//! webhook runner URL is a denied IP literal is refused at PUT naming `runner.url`; a name
//! resolving to loopback is refused at connect time under the default policy, counted and
//! dead-lettered; a flow's secret is shown once by the PUT that created it and by each
//! rotation, verifies with the `standardwebhooks` crate, overlaps with the previous one after
//! a rotation (or not, with no overlap configured, or none left with `?previous=revoke`),
//! survives a restart, and appears in no GET answer, dead letter, metric or log line. A runner
//! URL with credentials is refused (API, flow files, `check`); one with a query is logged
//! masked.

mod common;

use std::time::Duration;

use common::daemon::{check_with, temp_dir, DaemonProcess};
use common::eventually;
use common::runner_server::{completed, RunnerServer};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn event(who: &str) -> Value {
    json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
           "actor": {"external_id": who}, "arguments": [{"name": "text", "value": "hi"}]})
}

fn flow(url: &str) -> Value {
    json!({
        "runner": {"kind": "webhook", "url": url, "timeout_ms": 2000, "max_attempts": 1},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]
    })
}

async fn put(c: &Client, d: &DaemonProcess, agent: &str, body: &Value) -> (StatusCode, Value) {
    let r = c
        .put(d.url(&format!("/v1/flows/{agent}/Main")))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn rotate(c: &Client, d: &DaemonProcess, agent: &str, flow: &str) -> (StatusCode, Value) {
    rotate_with(c, d, &format!("/v1/flows/{agent}/{flow}/runner-secret")).await
}

/// A rotation at `path` (with its query).
async fn rotate_with(c: &Client, d: &DaemonProcess, path: &str) -> (StatusCode, Value) {
    let r = c.post(d.url(path)).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn get_text(c: &Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

async fn send_event(c: &Client, d: &DaemonProcess, who: &str) {
    let r = c
        .post(d.url("/v1/events"))
        .json(&event(who))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[actix_rt::test]
async fn denied_addresses_are_refused_at_put_and_at_connect_time_by_default() {
    let dir = temp_dir("egress-default");
    // The default policy: the harness' 127.0.0.1/32 taken back.
    let d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_EGRESS__ALLOW", "[]")
        .env("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")
        .start();
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;

    for (url, says) in [
        (
            "http://169.254.169.254/latest/meta-data",
            "egress_denied: 169.254.169.254 is link-local",
        ),
        (
            "http://127.0.0.1:9/",
            "egress_denied: 127.0.0.1 is loopback",
        ),
        ("http://[::1]:9/", "egress_denied: ::1 is loopback"),
        (
            "http://[::ffff:169.254.169.254]/",
            "egress_denied: ::ffff:169.254.169.254 is link-local",
        ),
        ("http://10.0.0.7/", "egress_denied: 10.0.0.7 is private"),
    ] {
        let (s, v) = put(&c, &d, "Ssrf", &flow(url)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(v["error"]["field"], "runner.url", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(says), "{url}: {message}");
    }
    let r = c.get(d.url("/v1/flows/Ssrf/Main")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was stored");

    // A host name passes at PUT and is judged when the runner connects: `localhost` resolves
    // to loopback, refused, not retried, dead-lettered and counted.
    let (s, v) = put(&c, &d, "Local", &flow("http://localhost:9/skill")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    send_event(&c, &d, "alice").await;
    let letter = eventually("the dead letter", WAIT, || async {
        let list: Vec<Value> = c
            .get(d.url("/v1/dead-letters"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.into_iter().find(|l| l["reason"] == "runner_failed")
    })
    .await;
    let detail = letter["detail"].as_str().unwrap();
    assert!(detail.contains("egress_denied: "), "{detail}");
    assert!(detail.contains(" is loopback"), "{detail}");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("switchboard_egress_denied_total{reason=\"loopback\"} 1"),
        "{metrics}"
    );

    // Rotation: a flow that is not run by a webhook has no secret; an unknown flow is 404.
    let (s, v) = rotate(&c, &d, "DemoAgent", "SandboxEchoFlow").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "not_a_webhook_runner");
    let (s, _) = rotate(&c, &d, "Nobody", "Main").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn runner_secrets_are_shown_once_verify_and_overlap_after_a_rotation() {
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("signing");
    let builder = DaemonProcess::builder(&dir);
    let d = builder.start();
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let body = flow(&format!("{}/skills", runner.base));

    let (s, v) = put(&c, &d, "Bot", &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let first = v["runner_secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"), "{first}");
    let (s, v) = put(&c, &d, "Bot", &body).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("runner_secret").is_none(), "shown once: {v}");

    send_event(&c, &d, "alice").await;
    let talk = runner.next().await;
    assert!(talk.signed_with(&first), "{:?}", talk.signature());
    assert_eq!(
        talk.headers["webhook-id"].to_str().unwrap(),
        talk.json["invocation_id"].as_str().unwrap()
    );

    let (s, v) = rotate(&c, &d, "Bot", "Main").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let second = v["runner_secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(v["previous_valid_until"].is_string(), "{v}");

    send_event(&c, &d, "bob").await;
    let talk = runner.next().await;
    assert_eq!(talk.signature().unwrap().split(' ').count(), 2);
    assert!(talk.signed_with(&second), "the new secret verifies");
    assert!(
        talk.signed_with(&first),
        "the old one too, during the overlap"
    );

    // Never shown again: not by a GET, a dead letter, a metric or a log line.
    for path in [
        "/v1/flows",
        "/v1/flows/Bot/Main",
        "/v1/dead-letters",
        "/metrics",
    ] {
        let text = get_text(&c, d.url(path)).await;
        for secret in [&first, &second] {
            assert!(!text.contains(&secret["whsec_".len()..]), "{path}: {text}");
        }
    }
    for secret in [&first, &second] {
        assert!(!d.logged(&secret["whsec_".len()..]), "logged");
    }

    // Sealed in the store, back after a restart.
    d.kill9();
    let d = builder.start();
    send_event(&c, &d, "carol").await;
    let talk = runner.next().await;
    assert!(talk.signed_with(&second));
    assert!(talk.signed_with(&first), "the overlap survives the restart");
    let db = std::fs::read(dir.join("switchboard.db")).unwrap();
    let wal = std::fs::read(dir.join("switchboard.db-wal")).unwrap_or_default();
    for secret in [&first, &second] {
        let key = &secret.as_bytes()["whsec_".len()..];
        assert!(!db.windows(key.len()).any(|w| w == key), "sealed");
        assert!(!wal.windows(key.len()).any(|w| w == key), "sealed");
    }
}

#[actix_rt::test]
async fn without_an_overlap_only_the_new_secret_signs_after_a_rotation() {
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("signing-no-overlap");
    let d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_RUNNERS__SECRET_OVERLAP_MS", "0")
        .start();
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let first = d
        .put_flow("Bot", "Main", &flow(&format!("{}/skills", runner.base)))
        .await
        .unwrap();

    let (s, v) = rotate(&c, &d, "Bot", "Main").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["previous_valid_until"], Value::Null);
    let second = v["runner_secret"].as_str().unwrap().to_owned();

    send_event(&c, &d, "alice").await;
    let talk = runner.next().await;
    assert_eq!(talk.signature().unwrap().split(' ').count(), 1);
    assert!(talk.signed_with(&second));
    assert!(!talk.signed_with(&first), "the overlap is over at once");

    // Deleting the flow deletes its secret: stored again, it gets (and shows) a new one.
    let r = c.delete(d.url("/v1/flows/Bot/Main")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let third = d
        .put_flow("Bot", "Main", &flow(&format!("{}/skills", runner.base)))
        .await
        .expect("a new secret");
    assert_ne!(third, second);
}

#[actix_rt::test]
async fn previous_revoke_ends_the_overlap_of_the_replaced_secrets_at_once() {
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("signing-revoke");
    let builder = DaemonProcess::builder(&dir);
    let d = builder.start();
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let first = d
        .put_flow("Bot", "Main", &flow(&format!("{}/skills", runner.base)))
        .await
        .unwrap();
    // A plain rotation: the first secret signs on, for the overlap (a day by default).
    let (s, v) = rotate(&c, &d, "Bot", "Main").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let second = v["runner_secret"].as_str().unwrap().to_owned();
    send_event(&c, &d, "alice").await;
    let talk = runner.next().await;
    assert!(talk.signed_with(&first) && talk.signed_with(&second));

    // The first one leaked: rotate again and end every overlap now.
    let path = "/v1/flows/Bot/Main/runner-secret";
    let (s, v) = rotate_with(&c, &d, &format!("{path}?previous=keep&previous=revoke")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "one value: {v}");
    let (s, v) = rotate_with(&c, &d, &format!("{path}?previous=forget")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = rotate_with(&c, &d, &format!("{path}?previous=revoke")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["previous_valid_until"], Value::Null, "{v}");
    let third = v["runner_secret"].as_str().unwrap().to_owned();
    send_event(&c, &d, "bob").await;
    let talk = runner.next().await;
    assert_eq!(talk.signature().unwrap().split(' ').count(), 1);
    assert!(talk.signed_with(&third));
    assert!(
        !talk.signed_with(&second),
        "the replaced secret no longer signs"
    );
    assert!(!talk.signed_with(&first), "nor the one before it");

    // As stored: after a restart too.
    d.kill9();
    let d = builder.start();
    send_event(&c, &d, "carol").await;
    let talk = runner.next().await;
    assert!(talk.signed_with(&third));
    assert!(!talk.signed_with(&second) && !talk.signed_with(&first));
}

#[actix_rt::test]
async fn runner_urls_with_credentials_are_refused_and_logs_mask_their_query_values() {
    const KEY: &str = "q-key-5d0c7e-never-logged";
    let dir = temp_dir("runner-url-credentials");
    let d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_LOG__LEVEL", "debug")
        .start();
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    for url in [
        "https://user:pa55word@runner.example/skills",
        "https://user@runner.example/skills",
        "https://:pa55word@runner.example/skills",
        "http:///user:pa55word@runner.example/skills",
    ] {
        let (s, v) = put(&c, &d, "Creds", &flow(url)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(v["error"]["field"], "runner.url", "{url}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("credentials"), "{url}: {message}");
    }
    assert!(!get_text(&c, d.url("/v1/flows")).await.contains("pa55word"));

    // A key in the query is the runner's business, but no log line shows it: the runner is
    // unreachable (a port nothing listens on) and the DEBUG line of the failure masks it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/skills?key={KEY}&v=2");
    let (s, v) = put(&c, &d, "Keyed", &flow(&url)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    send_event(&c, &d, "alice").await;
    eventually("the runner's failure in the debug log", WAIT, || async {
        d.logged("webhook request failed").then_some(())
    })
    .await;
    assert!(
        d.logged(&format!("127.0.0.1:{port}/skills?key=***&v=***")),
        "{:#?}",
        d.logs.lock().unwrap()
    );
    assert!(!d.logged(KEY), "{:#?}", d.logs.lock().unwrap());
}

#[test]
fn check_and_serve_refuse_a_flow_file_whose_runner_url_has_credentials() {
    let dir = temp_dir("check-credentials");
    std::fs::write(
        dir.join("flows/creds.yaml"),
        "agent_idn: A\nflow_idn: F\n\
         runner: {kind: webhook, url: 'https://bot:pa55word@runner.example/x'}\n\
         events: [{idn: user_message, skill_idn: S, integration_idn: sandbox}]\n",
    )
    .unwrap();
    let (ok, err) = check_with(&dir, "");
    assert!(!ok);
    assert!(
        err.contains("creds.yaml") && err.contains("runner.url: must not carry credentials"),
        "{err}"
    );
    let out = DaemonProcess::builder(&dir).run_to_exit();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("A/F: runner.url") && err.contains("must not carry credentials"),
        "{err}"
    );
    assert!(!err.contains("pa55word"), "{err}");
}

#[test]
fn check_refuses_a_flow_file_whose_runner_url_is_denied() {
    let dir = temp_dir("check-egress");
    std::fs::write(
        dir.join("flows/ssrf.yaml"),
        "agent_idn: A\nflow_idn: F\n\
         runner: {kind: webhook, url: 'http://169.254.169.254/latest'}\n\
         events: [{idn: user_message, skill_idn: S, integration_idn: sandbox}]\n",
    )
    .unwrap();
    let flows = format!(
        "[flows]\ndir = {:?}\n",
        dir.join("flows").display().to_string()
    );
    let check = |config: &str| {
        let path = dir.join("check.toml");
        std::fs::write(&path, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(&flows);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ssrf.yaml")
            && err.contains("runner.url: egress_denied: 169.254.169.254 is link-local"),
        "{err}"
    );
    let out = check(&format!(
        "{flows}[egress]\nallow = [\"169.254.169.254/32\"]\n"
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
