//! Accounts side by side on one daemon: each keeps its flows across a restart, and each is
//! held to its own limits (connectors, flows, tokens, timers), refused naming the limit.

mod common;

use std::collections::BTreeSet;

use common::call;
use common::daemon::{bearer_client, temp_dir, DaemonProcess};
use common::runner_server::{completed, RunnerServer};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// Creates account `idn` (unless it is the home account) and a token of it with every
/// tenant scope; answers a client bearing it.
async fn tenant(d: &DaemonProcess, idn: &str) -> Client {
    let admin = d.client();
    if idn != "default" {
        let (s, v) = call(
            &admin,
            "POST",
            d.url("/v1/accounts"),
            Some(json!({"idn": idn})),
        )
        .await;
        assert!(
            s == StatusCode::CREATED || s == StatusCode::CONFLICT,
            "{s} {v}"
        );
    }
    let scopes = [
        "read",
        "events:write",
        "commands:write",
        "flows:write",
        "connectors:write",
    ];
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/tokens"),
        Some(json!({"account": idn, "name": format!("{idn} tenant"), "scopes": scopes})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    bearer_client(v["token"].as_str().unwrap())
}

/// Creates and runs a sandbox connector `chat` as `c`.
async fn chat_connector(d: &DaemonProcess, c: &Client) {
    let (s, v) = call(
        c,
        "POST",
        d.url("/v1/integrations/sandbox/connectors"),
        Some(json!({"title": "Chat", "connector_idn": "chat"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap();
    let (s, v) = call(
        c,
        "POST",
        d.url(&format!("/v1/integrations/connectors/{id}/run")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn user_message(who: &str) -> Value {
    json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
        "actor": {"external_id": who}, "arguments": {"text": "hello"}})
}

/// The audit's case: only the home account's flows were loaded at start, so every other
/// account answered an empty flow list after a restart and its events matched nothing.
#[actix_rt::test]
async fn every_account_keeps_its_flows_across_a_restart() {
    const ACCOUNTS: [&str; 3] = ["default", "acme", "globex"];
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("tenants-restart");
    let d = DaemonProcess::start(&dir, &[]);
    for account in ACCOUNTS {
        let c = tenant(&d, account).await;
        chat_connector(&d, &c).await;
        let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
            "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]});
        let (s, v) = call(&c, "PUT", d.url("/v1/flows/Bot/Main"), Some(flow)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let builder = DaemonProcess::builder(&dir);
    d.terminate().await;

    let d = builder.start();
    let mut invoked = BTreeSet::new();
    for account in ACCOUNTS {
        let c = tenant(&d, account).await;
        let (s, v) = call(&c, "GET", d.url("/v1/flows"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let names: Vec<&str> = v
            .as_array()
            .expect("a list of flows")
            .iter()
            .filter_map(|f| f["flow_idn"].as_str())
            .collect();
        assert_eq!(names, ["Main"], "{account}'s flows after the restart: {v}");
        let (s, v) = call(&c, "POST", d.url("/v1/events"), Some(user_message("alice"))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    while invoked.len() < ACCOUNTS.len() {
        let r = runner.next().await;
        invoked.insert(
            r.json["flow_instance"]["account"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        invoked,
        ACCOUNTS
            .iter()
            .map(|a| a.to_string())
            .collect::<BTreeSet<_>>()
    );
    d.terminate().await;
}

/// `(code, field)` of an error answer.
fn refusal(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or_default(),
        v["error"]["field"].as_str().unwrap_or_default(),
    )
}

/// The audit's case: one account created 300 connectors, flows and tokens, and each flow added
/// series labelled with its names. Every create past a limit is refused naming the limit, one
/// account's limit is not another's, and flows past `limits.flow_series` share `_other`.
#[actix_rt::test]
async fn an_account_is_held_to_its_limits_and_refusals_name_them() {
    let dir = temp_dir("tenants-limits");
    let d = DaemonProcess::start(
        &dir,
        &[
            ("SWITCHBOARD_LIMITS__CONNECTORS_PER_ACCOUNT", "2"),
            ("SWITCHBOARD_LIMITS__FLOWS_PER_ACCOUNT", "2"),
            ("SWITCHBOARD_LIMITS__TOKENS_PER_ACCOUNT", "2"),
            ("SWITCHBOARD_LIMITS__FLOW_SERIES", "3"),
        ],
    );
    let acme = tenant(&d, "acme").await;
    let globex = tenant(&d, "globex").await;
    let connector = |idn: &str| json!({"title": "Chat", "connector_idn": idn});
    let connectors = d.url("/v1/integrations/sandbox/connectors");
    for idn in ["c1", "c2"] {
        let (s, v) = call(&acme, "POST", connectors.clone(), Some(connector(idn))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = call(&acme, "POST", connectors.clone(), Some(connector("c3"))).await;
    assert_eq!(
        (s, refusal(&v)),
        (
            StatusCode::FORBIDDEN,
            ("limit_reached", "limits.connectors_per_account")
        ),
        "{v}"
    );
    let (s, v) = call(&globex, "POST", connectors.clone(), Some(connector("c3"))).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "another account's limit is its own: {v}"
    );

    let flow = json!({"runner": {"kind": "webhook", "url": "https://runner.example.com/skills"},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]});
    for name in ["F1", "F2"] {
        let (s, v) = call(
            &acme,
            "PUT",
            d.url(&format!("/v1/flows/Bot/{name}")),
            Some(flow.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = call(&acme, "PUT", d.url("/v1/flows/Bot/F3"), Some(flow.clone())).await;
    assert_eq!(
        (s, refusal(&v)),
        (
            StatusCode::FORBIDDEN,
            ("limit_reached", "limits.flows_per_account")
        ),
        "{v}"
    );
    let (s, v) = call(&acme, "PUT", d.url("/v1/flows/Bot/F1"), Some(flow.clone())).await;
    assert_eq!(s, StatusCode::OK, "a replacement takes no more room: {v}");
    for name in ["G1", "G2"] {
        let (s, v) = call(
            &globex,
            "PUT",
            d.url(&format!("/v1/flows/Other/{name}")),
            Some(flow.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    // acme holds one token (its tenant's); one more fits, the next does not.
    let token =
        |n: u32| json!({"account": "acme", "name": format!("extra {n}"), "scopes": ["read"]});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/tokens"), Some(token(1))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&d.client(), "POST", d.url("/v1/tokens"), Some(token(2))).await;
    assert_eq!(
        (s, refusal(&v)),
        (
            StatusCode::FORBIDDEN,
            ("limit_reached", "limits.tokens_per_account")
        ),
        "{v}"
    );

    // Four flows loaded, three labelled: the fourth's series are `_other`'s.
    let (s, text) = common::call_text(&d.client(), "GET", d.url("/metrics"), None).await;
    assert_eq!(s, StatusCode::OK);
    let flows: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("switchboard_invocations_total{"))
        .filter_map(|l| l.split("flow=\"").nth(1)?.split('"').next())
        .collect();
    assert!(flows.contains("_other"), "{flows:?}");
    assert_eq!(
        flows.len(),
        4,
        "three flows of their own and _other: {flows:?}"
    );
    for limit in [
        "connectors_per_account",
        "flows_per_account",
        "tokens_per_account",
    ] {
        assert!(
            text.contains(&format!(
                "switchboard_limits_reached_total{{limit=\"limits.{limit}\"}} 1"
            )),
            "{limit} counted"
        );
    }
    d.terminate().await;
}

/// Connector settings are checked against the catalog's type, range and format when written:
/// the audit's accepted values are refused naming the setting.
#[actix_rt::test]
async fn settings_out_of_range_or_format_are_refused_naming_them() {
    let dir = temp_dir("tenants-settings");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let cases = [
        ("min_interval_seconds", "-5"),
        ("min_interval_seconds", "0"),
        ("max_timers_per_persona", "-1"),
        ("max_timers_per_persona", "2.5"),
        ("time_zone", "../../etc/localtime"),
    ];
    for (n, (setting, value)) in cases.iter().enumerate() {
        let body = json!({"title": "Timers", "connector_idn": format!("t{n}"),
            "settings": [{"idn": setting, "value": value}]});
        let (s, v) = call(
            &c,
            "POST",
            d.url("/v1/integrations/program_timer/connectors"),
            Some(body),
        )
        .await;
        let field = format!("settings.{setting}");
        assert_eq!(
            (s, refusal(&v)),
            (StatusCode::BAD_REQUEST, ("invalid", field.as_str())),
            "{setting}={value}: {v}"
        );
    }
    let body = json!({"title": "Timers", "connector_idn": "ok",
        "settings": [{"idn": "time_zone", "value": "Europe/Berlin"}, {"idn": "min_interval_seconds", "value": "5"}]});
    let (s, v) = call(
        &c,
        "POST",
        d.url("/v1/integrations/program_timer/connectors"),
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    d.terminate().await;
}
