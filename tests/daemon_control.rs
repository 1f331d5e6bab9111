//! The real binary on 127.0.0.1:0, spoken to over HTTP: the connector lifecycle with every
//! refusal, secrets that never come back (not in responses, not in the file, not in logs),
//! state that survives a restart, flows over the API and from files with hot reload, private
//! files that stay private.

mod common;

use std::time::Duration;

use common::daemon::{check_with, temp_dir, DaemonProcess};
use common::{eventually, PATIENCE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const SECRET_TOKEN: &str = "tok-7f1d2c9a-never-shown";
const SECRET_AUTH: &str = "auth-54ab-never-shown";

/// [`common::call`], failing when a secret set in these tests comes back.
async fn call(c: &Client, method: &str, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let (status, text) = common::call_text(c, method, url, body).await;
    assert!(
        !text.contains(SECRET_TOKEN) && !text.contains(SECRET_AUTH),
        "a secret leaked: {text}"
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn err_field(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or_default(),
        v["error"]["field"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_lifecycle_refusals_secrets_and_restart() {
    let dir = temp_dir("control");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let connectors = |i: &str| d.url(&format!("/v1/integrations/{i}/connectors"));

    // Create: stopped, settings validated.
    let (s, tg) = call(&c, "POST", connectors("telegram"), Some(json!({
        "title": "Support bot", "connector_idn": "support_bot",
        "settings": [{"idn": "bot_token", "value": SECRET_TOKEN}, {"idn": "parse_mode", "value": "html"},
                     {"idn": "command_stream", "value": "true"}]
    }))).await;
    assert_eq!(s, StatusCode::CREATED, "{tg}");
    assert_eq!(tg["status"], "stopped");
    assert!(tg["settings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["idn"] != "bot_token"));
    let tg_id = tg["id"].as_str().unwrap().to_owned();

    let cases = [
        (
            json!({"title": "Dup", "connector_idn": "support_bot"}),
            StatusCode::CONFLICT,
            ("already_exists", "connector_idn"),
        ),
        (
            json!({"title": "Bad", "connector_idn": "Support-Bot"}),
            StatusCode::BAD_REQUEST,
            ("invalid", "connector_idn"),
        ),
        (
            json!({"title": "X", "connector_idn": "x1", "settings": [{"idn": "nope", "value": "1"}]}),
            StatusCode::BAD_REQUEST,
            ("invalid", "settings.nope"),
        ),
        (
            json!({"title": "X", "connector_idn": "x2", "settings": [{"idn": "allow_group_chats", "value": "maybe"}]}),
            StatusCode::BAD_REQUEST,
            ("invalid", "settings.allow_group_chats"),
        ),
        (
            json!({"title": "X", "connector_idn": "x3", "settings": [{"idn": "conversation_timeout_seconds", "value": "ten"}]}),
            StatusCode::BAD_REQUEST,
            ("invalid", "settings.conversation_timeout_seconds"),
        ),
        (
            json!({"title": "X", "connector_idn": "x4", "settings": [{"idn": "parse_mode", "value": "rtf"}]}),
            StatusCode::BAD_REQUEST,
            ("invalid", "settings.parse_mode"),
        ),
        (
            json!({"title": "X", "connector_idn": "x5", "settings": [{"idn": "bot_username", "value": "me"}]}),
            StatusCode::BAD_REQUEST,
            ("invalid", "settings.bot_username"),
        ),
        (
            json!({"title": "X", "connector_idn": "system"}),
            StatusCode::FORBIDDEN,
            ("internal_connector", ""),
        ),
        (
            json!({"title": "X"}),
            StatusCode::BAD_REQUEST,
            ("malformed", "body"),
        ),
    ];
    for (body, status, want) in cases {
        let (s, v) = call(&c, "POST", connectors("telegram"), Some(body.clone())).await;
        assert_eq!((s, err_field(&v)), (status, want), "{body}: {v}");
    }
    let (s, v) = call(
        &c,
        "POST",
        connectors("fax"),
        Some(json!({"title": "X", "connector_idn": "x"})),
    )
    .await;
    assert_eq!(
        (s, err_field(&v).0),
        (StatusCode::NOT_FOUND, "unknown_integration")
    );

    // Run refused while a required setting is missing: the connector's own, then its
    // integration's.
    let (_, http) = call(
        &c,
        "POST",
        connectors("http"),
        Some(json!({"title": "API", "connector_idn": "api"})),
    )
    .await;
    let http_id = http["id"].as_str().unwrap().to_owned();
    let run = |id: &str| d.url(&format!("/v1/integrations/connectors/{id}/run"));
    let (s, v) = call(&c, "POST", run(&http_id), None).await;
    assert_eq!(
        (s, err_field(&v)),
        (StatusCode::BAD_REQUEST, ("invalid", "settings.base_url"))
    );
    let (_, sms) = call(&c, "POST", connectors("twilio_messenger"), Some(json!({
        "title": "SMS", "connector_idn": "sms", "settings": [{"idn": "phone_number", "value": "+15550100"},
                                                             {"idn": "command_stream", "value": "true"}]
    }))).await;
    let sms_id = sms["id"].as_str().unwrap().to_owned();
    let (s, v) = call(&c, "POST", run(&sms_id), None).await;
    assert_eq!(
        (s, err_field(&v)),
        (
            StatusCode::BAD_REQUEST,
            ("invalid", "integration_settings.account_sid")
        )
    );
    let (s, shown) = call(
        &c,
        "POST",
        d.url("/v1/integrations/twilio_messenger/settings"),
        Some(json!([
            {"idn": "account_sid", "value": "AC123"}, {"idn": "auth_token", "value": SECRET_AUTH}
        ])),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown, json!([]), "both are secret: neither is shown");
    let (s, v) = call(&c, "POST", run(&sms_id), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("running")));
    let (s, v) = call(&c, "POST", run(&tg_id), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("running")));

    // Settings of a running connector: validated, required ones cannot be cleared.
    let settings = |id: &str| d.url(&format!("/v1/integrations/connectors/{id}/settings"));
    let (s, v) = call(
        &c,
        "POST",
        settings(&tg_id),
        Some(json!([{"idn": "bot_token", "value": ""}])),
    )
    .await;
    assert_eq!(
        (s, err_field(&v)),
        (StatusCode::BAD_REQUEST, ("invalid", "settings.bot_token"))
    );
    let (s, v) = call(
        &c,
        "POST",
        settings(&tg_id),
        Some(json!([{"idn": "greeting_phrase", "value": "Hi!"}])),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["settings"]
        .as_array()
        .unwrap()
        .contains(&json!({"idn": "greeting_phrase", "value": "Hi!"})));

    // Delete: refused while running, then allowed once stopped.
    let one = |id: &str| d.url(&format!("/v1/integrations/connectors/{id}"));
    let (s, v) = call(&c, "DELETE", one(&sms_id), None).await;
    assert_eq!(
        (s, err_field(&v).0),
        (StatusCode::CONFLICT, "connector_running")
    );
    let (s, _) = call(
        &c,
        "POST",
        d.url(&format!("/v1/integrations/connectors/{sms_id}/stop")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&c, "DELETE", one(&sms_id), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&c, "GET", one(&sms_id), None).await;
    assert_eq!((s, err_field(&v).0), (StatusCode::NOT_FOUND, "not_found"));

    // Internal connectors cannot be stopped.
    let (_, list) = call(&c, "GET", connectors("telegram"), None).await;
    let internal = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["internal"] == true)
        .unwrap();
    let (s, v) = call(
        &c,
        "POST",
        d.url(&format!(
            "/v1/integrations/connectors/{}/stop",
            internal["id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    assert_eq!(
        (s, err_field(&v).0),
        (StatusCode::FORBIDDEN, "internal_connector")
    );

    // The catalog, by idn and by id.
    let (s, all) = call(&c, "GET", d.url("/v1/integrations"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(all.as_array().unwrap().iter().all(|i| i["idn"] != "system"));
    let tg_integration = all
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["idn"] == "telegram")
        .unwrap();
    let (s, by_id) = call(
        &c,
        "GET",
        d.url(&format!(
            "/v1/integrations/{}",
            tg_integration["id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    assert_eq!(
        (s, by_id["idn"].as_str()),
        (StatusCode::OK, Some("telegram"))
    );
    assert!(by_id["connector_settings_descriptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["idn"] == "bot_token" && p["is_secret"] == true));

    // Restart: everything comes back, the telegram connector still running.
    let status = d.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    // The database must be where it is looked for: a moved file would pass vacuously. Its WAL
    // may be checkpointed away at shutdown.
    assert!(
        dir.join("switchboard.db").is_file(),
        "the database file is at {}",
        dir.join("switchboard.db").display()
    );
    for file in ["switchboard.db", "switchboard.db-wal"] {
        let path = dir.join(file);
        if file.ends_with("-wal") && !path.exists() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET_TOKEN) && !text.contains(SECRET_AUTH),
            "{file} holds a secret in clear"
        );
    }
    let d = DaemonProcess::start(&dir, &[]);
    let (s, v) = call(
        &c,
        "GET",
        d.url(&format!("/v1/integrations/connectors/{tg_id}")),
        None,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str(), v["title"].as_str()),
        (StatusCode::OK, Some("running"), Some("Support bot"))
    );
    let (s, v) = call(
        &c,
        "GET",
        d.url(&format!("/v1/integrations/connectors/{http_id}")),
        None,
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("stopped")));
    assert!(
        !d.logged(SECRET_TOKEN) && !d.logged(SECRET_AUTH),
        "a secret in the logs"
    );
    let _ = eventually("ready", Duration::from_secs(10), || async {
        let (s, _) = call(&c, "GET", d.url("/readyz"), None).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
}

const FLOW_FILE: &str = r#"
agent_idn: FileAgent
flow_idn: MainFlow
runner: {kind: webhook, url: "http://127.0.0.1:9/skills", max_attempts: 1}
events:
  - {idn: user_message, skill_idn: Reply, integration_idn: sandbox}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_over_the_api_and_from_files_with_hot_reload() {
    let dir = temp_dir("flows");
    std::fs::write(dir.join("flows/main.yaml"), FLOW_FILE).unwrap();
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let explain =
        d.url("/v1/routes/explain?integration_idn=sandbox&connector_idn=sb&event_idn=user_message");
    let (s, v) = call(&c, "GET", d.url("/v1/flows/FileAgent/MainFlow"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["events"][0]["skill_idn"], "Reply");
    let (_, x) = call(&c, "GET", explain.clone(), None).await;
    assert_eq!(x["matched"][0]["skill"], "Reply");
    assert_eq!(
        x["admitted"], false,
        "no sandbox/sb connector: explain says why"
    );
    assert!(x["refused"]
        .as_str()
        .unwrap()
        .contains("no connector sandbox/sb"));

    // A broken file is refused whole; routing stays as it was.
    std::fs::write(
        dir.join("flows/main.yaml"),
        FLOW_FILE.replace(
            "skill_idn: Reply",
            "skill_idn: Reply, interrupt_mode: whenever",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/second.yaml"),
        FLOW_FILE.replace("MainFlow", "SecondFlow"),
    )
    .unwrap();
    d.hup();
    eventually(
        "the refusal in the logs",
        Duration::from_secs(10),
        || async { d.logged("flow files refused").then_some(()) },
    )
    .await;
    assert!(d.logged("events[0].interrupt_mode"));
    let (_, x) = call(&c, "GET", explain.clone(), None).await;
    assert_eq!(x["matched"].as_array().unwrap().len(), 1);
    let (s, _) = call(&c, "GET", d.url("/v1/flows/FileAgent/SecondFlow"), None).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "nothing of the refused reload applied"
    );

    // Fixed: both files load at the next SIGHUP.
    std::fs::write(dir.join("flows/main.yaml"), FLOW_FILE).unwrap();
    d.hup();
    eventually("the second flow", Duration::from_secs(10), || async {
        let (s, _) = call(&c, "GET", d.url("/v1/flows/FileAgent/SecondFlow"), None).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    let (_, x) = call(&c, "GET", explain.clone(), None).await;
    assert_eq!(x["matched"].as_array().unwrap().len(), 2);

    // Over the API: JSON or YAML, validated with the field named.
    let (s, v) = call(&c, "PUT", d.url("/v1/flows/ApiAgent/ApiFlow"), Some(json!({
        "runner": {"kind": "webhook", "url": "http://127.0.0.1:9/x"},
        "events": [{"idn": "timer", "skill_idn": "OnTimer", "integration_idn": "program_timer", "interrupt_mode": "cancel"}]
    }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&c, "GET", d.url("/v1/flows/ApiAgent/ApiFlow"), None).await;
    assert_eq!(
        (s, &v["events"][0]["interrupt_mode"]),
        (StatusCode::OK, &json!("cancel"))
    );
    let (s, v) = call(
        &c,
        "PUT",
        d.url("/v1/flows/ApiAgent/ApiFlow"),
        Some(json!({
            "runner": {"kind": "webhook", "url": "http://127.0.0.1:9/x"},
            "events": [{"idn": "timer", "skill_idn": "OnTimer", "interrupt_mode": "soon"}]
        })),
    )
    .await;
    assert_eq!(
        (s, err_field(&v)),
        (
            StatusCode::BAD_REQUEST,
            ("invalid_flow", "events[0].interrupt_mode")
        )
    );
    let (s, v) = call(
        &c,
        "PUT",
        d.url("/v1/flows/ApiAgent/NoRunner"),
        Some(json!({
            "events": [{"idn": "timer", "skill_idn": "OnTimer"}]
        })),
    )
    .await;
    assert_eq!(
        (s, err_field(&v)),
        (StatusCode::BAD_REQUEST, ("invalid_flow", "runner"))
    );
    let yaml = c
        .put(d.url("/v1/flows/ApiAgent/YamlFlow"))
        .header("content-type", "application/yaml")
        .body("runner: {kind: webhook, url: 'http://127.0.0.1:9/x'}\nevents:\n  - {idn: timer, skill_idn: T}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.status(), StatusCode::OK);

    // API flows survive a restart; file flows are read again.
    assert!(d.terminate().await.success());
    let d = DaemonProcess::start(&dir, &[]);
    for path in [
        "/v1/flows/ApiAgent/ApiFlow",
        "/v1/flows/ApiAgent/YamlFlow",
        "/v1/flows/FileAgent/SecondFlow",
    ] {
        let (s, _) = call(&c, "GET", d.url(path), None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (s, _) = call(&c, "DELETE", d.url("/v1/flows/ApiAgent/ApiFlow"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&c, "GET", d.url("/v1/flows/ApiAgent/ApiFlow"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[test]
fn check_names_the_offending_key() {
    let dir = temp_dir("check");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[flows]\ndir = {:?}\n",
            dir.join("flows").display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten = \"nowhere\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http.listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad flow file fails the check too, naming file and field.
    std::fs::write(
        dir.join("flows/x.yaml"),
        "agent_idn: A\nflow_idn: F\nevents: [{idn: Bad}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x.yaml") && err.contains("events[0].idn"),
        "{err}"
    );
}

#[test]
fn the_example_flow_file_is_a_valid_flow() {
    let text = include_str!("../config/flows/example.yaml.sample");
    let flows =
        switchboard::daemon::flow_files::parse(&switchboard::domain::Idn::known("default"), text)
            .unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].0.subscriptions.len(), 5);
}

/// Every native integration the catalog declares now has a handler in the daemon: an engine
/// built without one (here: without `newo_chat`'s) refuses its commands at once, naming it, as
/// the daemon's `POST /v1/commands` answers such a refusal (409, `integration_idn`).
#[actix_rt::test]
async fn a_command_for_a_native_integration_without_a_handler_is_refused_at_once_naming_it() {
    use actix_web::ResponseError;
    let h = common::Harness::start();
    h.connector("newo_chat", "hooks");
    let command = switchboard::domain::Command::new(
        h.account.clone(),
        switchboard::domain::Idn::known("newo_chat"),
        switchboard::domain::Idn::known("hooks"),
        switchboard::domain::Idn::known("send_message"),
    )
    .with_argument("text", "hi");
    let refusal = h.engine.check_command(&command).unwrap_err();
    let e = switchboard::api::error::ApiError::from(refusal);
    assert_eq!(e.status_code().as_u16(), 409, "{e}");
    assert_eq!(e.field.as_deref(), Some("integration_idn"), "{e}");
    assert!(e.message.contains("newo_chat"), "{}", e.message);
    // Refused before anything was sent: no dead letter, no result event to wait for.
    assert!(h.dead_letter_codes().is_empty());
}

#[actix_rt::test]
async fn the_demo_flow_answers_its_own_connector_only() {
    let dir = temp_dir("demo-scope");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")]);
    let c = d.client();
    // README's walk-through: another sandbox connector with a flow of its own.
    d.run_connector(
        "sandbox",
        json!({"title": "My chat", "connector_idn": "my_chat", "settings": []}),
    )
    .await;
    d.put_flow(
        "HelloAgent",
        "MainFlow",
        &json!({"runner": {"kind": "demo"}, "events": [
            {"idn": "user_message", "skill_idn": "Echo", "integration_idn": "sandbox",
             "connector_idn": "my_chat", "interrupt_mode": "interrupt"}]}),
    )
    .await;
    let explain = |connector: &str| {
        d.url(&format!(
            "/v1/routes/explain?integration_idn=sandbox&connector_idn={connector}&event_idn=user_message"
        ))
    };
    let (s, mine) = call(&c, "GET", explain("my_chat"), None).await;
    assert_eq!(s, StatusCode::OK);
    let skills: Vec<&str> = mine["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["skill"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["Echo"], "one reply per message on my_chat: {mine}");
    let (_, demo) = call(&c, "GET", explain("demo"), None).await;
    let skills: Vec<&str> = demo["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["skill"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["DemoEcho"], "{demo}");
}

#[actix_rt::test]
async fn a_port_in_use_is_refused_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir("port-taken");
    let out = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_HTTP__LISTEN", addr.as_str())
        .run_to_exit();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http.listen") && stderr.contains(&addr),
        "the error names the key and the address: {stderr}"
    );
    assert!(
        !dir.join("switchboard.db").exists() && !dir.join("switchboard.key").exists(),
        "no store migrated, no key file written"
    );
}

/// The store, its `-wal` and `-shm`, the key file and the admin token file, found readable
/// beyond their owner (copied in, restored from a backup), are tightened to 0600 at start, each
/// with a warning naming it, and the daemon works on with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_private_files_are_tightened_to_0600_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("modes");
    let files = [
        "switchboard.db",
        "switchboard.db-wal",
        "switchboard.db-shm",
        "switchboard.key",
        "admin.token",
    ];
    // Killed, the first daemon leaves its write-ahead log and shared memory behind.
    DaemonProcess::start(&dir, &[]).kill9();
    let mode = |f: &str| {
        std::fs::metadata(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    for f in files {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(mode(f), 0o644, "{f}");
    }
    let d = DaemonProcess::start(&dir, &[]);
    for f in files {
        assert_eq!(mode(f), 0o600, "{f}");
    }
    let warnings: Vec<Value> = d
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "WARN" && v["fields"]["now"] == "0600")
        .collect();
    for f in files {
        let path = dir.join(f).display().to_string();
        assert_eq!(
            warnings
                .iter()
                .filter(|w| w["fields"]["path"] == path.as_str() && w["fields"]["was"] == "0644")
                .count(),
            1,
            "one warning for {f}: {warnings:#?}"
        );
    }
    let (s, _) = call(&d.client(), "GET", d.url("/v1/flows"), None).await;
    assert_eq!(s, StatusCode::OK, "the admin token still opens the API");
}

#[actix_rt::test]
async fn flow_reloads_are_counted_by_result_with_the_time_of_the_last_success() {
    let dir = temp_dir("reload-metrics");
    std::fs::write(dir.join("flows/main.yaml"), FLOW_FILE).unwrap();
    let d = DaemonProcess::start(&dir, &[]);
    std::fs::write(dir.join("flows/broken.yaml"), "events: [{idn: 42}]").unwrap();
    d.hup();
    let refused = "switchboard_flow_reloads_total{result=\"refused\"} 1";
    eventually(
        "the refused reload counted",
        Duration::from_secs(10),
        || async {
            d.metrics()
                .await
                .lines()
                .any(|l| l == refused)
                .then_some(())
        },
    )
    .await;
    std::fs::remove_file(dir.join("flows/broken.yaml")).unwrap();
    d.hup();
    let ok = "switchboard_flow_reloads_total{result=\"ok\"} 1";
    let metrics = eventually("the reload counted", Duration::from_secs(10), || async {
        let m = d.metrics().await;
        m.lines().any(|l| l == ok).then_some(m)
    })
    .await;
    let stamp: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_flow_reload_last_success_timestamp_seconds "))
        .expect("the time of the last success")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(now - stamp < 60.0 && stamp <= now, "{stamp} vs {now}");
}

#[actix_rt::test]
async fn deleting_a_flow_a_file_defines_is_refused_naming_the_file() {
    let dir = temp_dir("file-flow-delete");
    std::fs::write(dir.join("flows/main.yaml"), FLOW_FILE).unwrap();
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let (s, v) = call(&c, "DELETE", d.url("/v1/flows/FileAgent/MainFlow"), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "defined_by_file");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("main.yaml"),
        "{v}"
    );
    let (s, _) = call(&c, "GET", d.url("/v1/flows/FileAgent/MainFlow"), None).await;
    assert_eq!(s, StatusCode::OK, "the flow is still there");
}

#[actix_rt::test]
async fn a_required_integration_setting_cannot_be_cleared_while_a_connector_of_it_runs() {
    let dir = temp_dir("integration-required");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let settings = d.url("/v1/integrations/apify/settings");
    let (s, v) = call(
        &c,
        "POST",
        settings.clone(),
        Some(json!([{"idn": "api_token", "value": "tok"}])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    d.run_connector(
        "apify",
        json!({"title": "Scraper", "connector_idn": "scraper",
               "settings": [{"idn": "command_stream", "value": "true"}]}),
    )
    .await;
    let (s, v) = call(
        &c,
        "POST",
        settings.clone(),
        Some(json!([{"idn": "api_token", "value": ""}])),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "integration_settings.api_token");
}

#[actix_rt::test]
async fn filters_are_checked_and_dead_letters_filter_by_reason_and_time_and_read_one_by_one() {
    let dir = temp_dir("filters");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let (s, v) = call(&c, "GET", d.url("/v1/sessions?connectors=bogus"), None).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("connectors")),
        "{v}"
    );
    let (s, _) = call(&c, "GET", d.url("/v1/sessions?connectors=sandbox/*"), None).await;
    assert_eq!(s, StatusCode::OK);
    // Two refusals of different reasons, each kept as a dead letter.
    for (connector, event) in [("nope", "user_message"), ("nope", "no_such_event")] {
        let (s, _) = call(
            &c,
            "POST",
            d.url("/v1/events"),
            Some(
                json!({"v": 1, "integration_idn": "sandbox", "connector_idn": connector,
                        "event_idn": event, "actor": {"external_id": "a"},
                        "arguments": {"text": "hi"}}),
            ),
        )
        .await;
        assert!(s.is_client_error());
    }
    let list = |query: &'static str| {
        let (c, url) = (c.clone(), d.url(&format!("/v1/dead-letters{query}")));
        async move { call(&c, "GET", url, None).await }
    };
    let (s, all) = list("").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let (_, by_reason) = list("?reason=unknown_connector").await;
    let reasons: Vec<&str> = by_reason
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["unknown_connector"]);
    let (s, v) = list("?reason=nonsense").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reason"))
    );
    let (s, v) = list("?since=yesterday").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("since"))
    );
    let (s, later) = list("?since=2999-01-01T00:00:00Z").await;
    assert_eq!((s, later), (StatusCode::OK, json!([])));
    let id = all[0]["id"].as_str().unwrap();
    let (s, one) = call(&c, "GET", d.url(&format!("/v1/dead-letters/{id}")), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["id"], id);
    let (s, _) = call(
        &c,
        "GET",
        d.url(&format!("/v1/dead-letters/{}", uuid::Uuid::now_v7())),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn subscriptions_are_capability_checked_by_the_api_and_by_check() {
    let dir = temp_dir("capabilities");
    let flow = |events: &str, runner: &str| {
        format!("agent_idn: A\nflow_idn: F\nrunner: {runner}\nevents: [{events}]\n")
    };
    // A host name: `check` judges IP literals only (127.0.0.1 is denied without [egress] allow).
    let webhook = "{kind: webhook, url: \"http://runner.invalid:9/s\"}";
    for (events, runner, field) in [
        (
            "{idn: make_call, skill_idn: S, integration_idn: vapi}",
            webhook,
            "events[0].idn",
        ),
        (
            "{idn: user_message, skill_idn: S, integration_idn: nope}",
            webhook,
            "events[0].integration_idn",
        ),
        (
            "{idn: user_message, skill_idn: S, integration_idn: sandbox}",
            "{kind: demo}",
            "runner",
        ),
    ] {
        std::fs::write(dir.join("flows/x.yaml"), flow(events, runner)).unwrap();
        let (ok, err) = check_with(&dir, "");
        assert!(!ok && err.contains(field), "{field}: {err}");
    }
    // A connector that does not exist yet is fine: connectors may come later.
    std::fs::write(
        dir.join("flows/x.yaml"),
        flow(
            "{idn: user_message, skill_idn: S, integration_idn: sandbox, connector_idn: later}",
            webhook,
        ),
    )
    .unwrap();
    let (ok, err) = check_with(&dir, "");
    assert!(ok, "{err}");
    // An unparsable log level is refused, not read as a target that silences every line.
    let (ok, err) = check_with(&dir, "[log]\nlevel = \"warning\"\n");
    assert!(!ok && err.contains("log.level"), "{err}");
    let (ok, err) = check_with(&dir, "[log]\nlevel = \"switchboard=debug,warn\"\n");
    assert!(ok, "{err}");

    // The API refuses the same, naming the field.
    std::fs::remove_file(dir.join("flows/x.yaml")).unwrap();
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let (s, v) = call(
        &c,
        "PUT",
        d.url("/v1/flows/A/F"),
        Some(
            json!({"runner": {"kind": "webhook", "url": "http://127.0.0.1:9/s"},
                    "events": [{"idn": "make_call", "skill_idn": "S", "integration_idn": "vapi"}]}),
        ),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("events[0].idn")),
        "{v}"
    );

    // A connector that does not exist yet is accepted, with a warning in the answer and in
    // explain; once it exists, neither warns.
    let flow = json!({"runner": {"kind": "webhook", "url": "http://127.0.0.1:9/s"},
                      "events": [{"idn": "user_message", "skill_idn": "S",
                                  "integration_idn": "sandbox", "connector_idn": "later"}]});
    let (s, v) = call(&c, "PUT", d.url("/v1/flows/A/F"), Some(flow.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["warnings"][0]["field"], "events[0].connector_idn", "{v}");
    assert!(
        v["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("sandbox/later"),
        "{v}"
    );
    let explain = d.url(
        "/v1/routes/explain?integration_idn=sandbox&connector_idn=later&event_idn=user_message",
    );
    let (_, x) = call(&c, "GET", explain.clone(), None).await;
    let subscription = |x: &Value| -> Value {
        x["matched"]
            .as_array()
            .unwrap()
            .iter()
            .chain(x["not_matched"].as_array().unwrap())
            .find(|m| m["agent_idn"] == "A")
            .cloned()
            .unwrap()
    };
    assert!(
        subscription(&x)["warning"]
            .as_str()
            .is_some_and(|w| w.contains("sandbox/later")),
        "{x}"
    );
    d.run_connector(
        "sandbox",
        json!({"title": "Later", "connector_idn": "later", "settings": []}),
    )
    .await;
    let (s, v) = call(&c, "PUT", d.url("/v1/flows/A/F"), Some(flow)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let (_, x) = call(&c, "GET", explain, None).await;
    assert!(subscription(&x).get("warning").is_none(), "{x}");
}

#[actix_rt::test]
async fn the_access_log_is_off_by_default_and_writes_one_line_per_request_when_on() {
    let access_lines = |d: &DaemonProcess| -> Vec<Value> {
        d.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .collect()
    };
    let dir = temp_dir("access-off");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let (s, _) = call(&c, "GET", d.url("/v1/flows"), None).await;
    assert_eq!(s, StatusCode::OK);
    let dir = temp_dir("access-on");
    let on = DaemonProcess::start(&dir, &[("SWITCHBOARD_HTTP__ACCESS_LOG", "true")]);
    let (s, _) = call(
        &on.client(),
        "GET",
        on.url("/v1/flows/NoAgent/NoFlow?secret=x"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let line = eventually("the access line", Duration::from_secs(10), || async {
        access_lines(&on).into_iter().next()
    })
    .await;
    assert_eq!(
        line["fields"]["route"], "/v1/flows/{agent}/{flow}",
        "{line}"
    );
    assert_eq!(line["fields"]["status"], 404);
    assert_eq!(line["fields"]["method"], "GET");
    assert!(
        !line.to_string().contains("secret"),
        "no query string: {line}"
    );
    assert!(access_lines(&d).is_empty(), "off by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_reseals_every_secret_under_a_new_key_and_the_daemon_opens_them() {
    let dir = temp_dir("rekey");
    let d = DaemonProcess::start(&dir, &[]);
    let id = d
        .run_connector(
            "telegram",
            json!({"title": "Bot", "connector_idn": "bot",
                   "settings": [{"idn": "bot_token", "value": SECRET_TOKEN},
                                {"idn": "command_stream", "value": "true"}]}),
        )
        .await;
    d.terminate().await;
    let key_file = dir.join("switchboard.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    // The key ids named by sealed values in the database file and its WAL.
    let sealed_ids = || {
        let mut text = String::new();
        assert!(dir.join("switchboard.db").is_file(), "the database file");
        for f in ["switchboard.db", "switchboard.db-wal"] {
            let path = dir.join(f);
            if f.ends_with("-wal") && !path.exists() {
                continue;
            }
            let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
            text.push_str(&String::from_utf8_lossy(&b));
        }
        let mut ids: Vec<String> = text
            .split("sealed:v2:")
            .skip(1)
            .map(|rest| rest.chars().take(8).collect())
            .collect();
        ids.sort();
        ids.dedup();
        (ids, text.contains(SECRET_TOKEN))
    };
    let (before, plain) = sealed_ids();
    assert!(!before.is_empty() && !plain, "{before:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["rekey", "--drop-old"])
        .current_dir(&dir)
        .env("SWITCHBOARD_STORE__PATH", dir.join("switchboard.db"))
        .env("SWITCHBOARD_STORE__SECRET_KEY_FILE", &key_file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The connector's secrets (its bot token, its command delivery secret) and the persona key.
    assert!(said.contains("re-sealed 3 value(s)"), "{said}");
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new_key.trim(), old_key.trim());
    assert_eq!(new_key.trim().lines().count(), 1, "the old key dropped");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The daemon starts on the new key alone and the connector runs with its secret.
    let d = DaemonProcess::start(&dir, &[]);
    let (s, v) = call(
        &d.client(),
        "GET",
        d.url(&format!("/v1/integrations/connectors/{id}")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "running", "{v}");
    d.terminate().await;
    let (after, plain) = sealed_ids();
    assert!(!plain);
    // `re-sealed N value(s) under key <id>; ...`
    let new_id = said
        .split("under key ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("the new key's id")
        .to_owned();
    assert!(!before.contains(&new_id), "{before:?} {new_id}");
    assert!(
        after.contains(&new_id),
        "the value is sealed under the new key: {before:?} → {after:?}"
    );
}

#[actix_rt::test]
async fn a_deleted_flow_takes_its_metric_series_with_it() {
    let dir = temp_dir("series-gone");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")]);
    let c = d.client();
    d.run_connector(
        "sandbox",
        json!({"title": "My chat", "connector_idn": "my_chat", "settings": []}),
    )
    .await;
    let flow = json!({"runner": {"kind": "demo"}, "events": [
        {"idn": "user_message", "skill_idn": "Echo", "integration_idn": "sandbox",
         "connector_idn": "my_chat"}]});
    for name in ["Gone", "Kept"] {
        d.put_flow(name, "MainFlow", &flow).await;
    }
    let (s, v) = call(
        &c,
        "POST",
        d.url("/v1/events"),
        Some(
            json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "my_chat",
                    "event_idn": "user_message", "actor": {"external_id": "alice"},
                    "arguments": {"text": "hi"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let completed = |agent: &str| {
        format!(
            "switchboard_invocations_total{{agent=\"{agent}\",flow=\"MainFlow\",outcome=\"completed\"}} 1"
        )
    };
    eventually("both flows' invocations counted", PATIENCE, || async {
        let text = d.metrics().await;
        (text.contains(&completed("Gone")) && text.contains(&completed("Kept"))).then_some(())
    })
    .await;
    let (s, _) = call(&c, "DELETE", d.url("/v1/flows/Gone/MainFlow"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let text = d.metrics().await;
    assert!(!text.contains("agent=\"Gone\""), "{text}");
    assert!(text.contains(&completed("Kept")), "{text}");
    assert!(
        text.contains(
            "switchboard_invocation_duration_seconds_count{agent=\"Kept\",flow=\"MainFlow\"} 1"
        ),
        "{text}"
    );
}

/// What `switchboard <args> --help` prints.
fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rekey_help_describes_rekeying_sealed_secrets_and_token_help_api_tokens() {
    let rekey = help(&["rekey"]);
    assert!(rekey.starts_with("Rekeys the sealed secrets"), "{rekey}");
    assert!(!rekey.contains("API tokens in the store"), "{rekey}");
    let token = help(&["token"]);
    assert!(token.starts_with("API tokens in the store"), "{token}");
    let top = help(&[]);
    let line = |name: &str| {
        top.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {top}"))
            .to_owned()
    };
    assert!(line("rekey").contains("Rekeys the sealed secrets"), "{top}");
    assert!(line("token").contains("API tokens"), "{top}");
}
