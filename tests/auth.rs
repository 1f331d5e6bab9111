//! The trust boundary against the real binary: every route but the probes needs a bearer
//! token; a token acts in its own account only (another account's things are 404, never 403);
//! a token without a scope gets 403 naming it; tokens are shown once, kept as hashes, and stop
//! working when revoked or expired; the first start writes the admin token file (0600); the
//! sandbox socket opens with a single-use ticket, or without a token only from the daemon's own
//! page, which no page may frame.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::daemon::{bearer_client, temp_dir, DaemonProcess};
use common::routes::every_route;
use common::{call, eventually};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const ALL: &[&str] = &[
    "read",
    "events:write",
    "commands:write",
    "results:write",
    "flows:write",
    "connectors:write",
    "credentials:write",
];

/// One request of the matrix and the status it must get.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    want: StatusCode,
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
    want: StatusCode,
) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        want,
    }
}

/// Runs every case with `client`, and reports all that got another status at once.
async fn check(d: &DaemonProcess, client: &Client, cases: &[Case]) {
    let mut wrong = Vec::new();
    for c in cases {
        let (s, v) = call(client, c.method, d.url(&c.path), c.body.clone()).await;
        if s != c.want {
            wrong.push(format!(
                "{} {} → {s} (want {}): {v}",
                c.method, c.path, c.want
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_the_probes_needs_a_token() {
    let dir = temp_dir("auth-none");
    let d = DaemonProcess::start(&dir, &[]);
    let anonymous = Client::new();
    let cases: Vec<Case> = every_route(
        &uuid::Uuid::nil().to_string(),
        &uuid::Uuid::nil().to_string(),
    )
    .into_iter()
    .map(|(m, p, b)| case(m, p, b, StatusCode::UNAUTHORIZED))
    .chain([
        case("GET", "/healthz", None, StatusCode::OK),
        case("GET", "/readyz", None, StatusCode::OK),
    ])
    .collect();
    check(&d, &anonymous, &cases).await;
    // A made-up token of the right shape, a garbled one, and another scheme: 401 all.
    for bad in [
        "sbt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
    ] {
        check(
            &d,
            &bearer_client(bad),
            &[case("GET", "/v1/flows", None, StatusCode::UNAUTHORIZED)],
        )
        .await;
    }
    let r = anonymous
        .get(d.url("/v1/flows"))
        .header("Authorization", format!("Basic {}", d.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_request_without_a_token_changes_nothing() {
    let dir = temp_dir("auth-csrf");
    let d = DaemonProcess::start(&dir, &[]);
    // What a page at attacker.example can send: a simple POST, no Content-Type, its Origin,
    // and (after DNS rebinding) its Host.
    let r = Client::new()
        .post(d.url("/v1/integrations/sandbox/connectors"))
        .header("Origin", "http://attacker.example")
        .header("Host", "attacker.example")
        .body(r#"{"title": "pwned", "connector_idn": "pwned"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, list) = call(
        &d.client(),
        "GET",
        d.url("/v1/integrations/sandbox/connectors"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c["connector_idn"] != "pwned"),
        "{list}"
    );
    // The sandbox socket without a token: only the daemon's own page gets in, not a page of
    // another site nor of another local server (another loopback port or address).
    let socket = |origin: String| {
        Client::new()
            .get(d.url("/sandbox/ws?connector_idn=chat&external_id=x"))
            .header("Origin", origin)
            .send()
    };
    let port = d.base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    for foreign in [
        "http://127.0.0.1:1".to_owned(),
        "http://attacker.example".to_owned(),
        format!("http://localhost:{}", port + 1),
        format!("http://127.0.0.2:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let r = socket(foreign.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{foreign}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "foreign_origin", "{foreign}: {v}");
        assert_eq!(v["error"]["field"], "Origin", "{foreign}: {v}");
    }
    // The daemon's own page passes the token check (and then finds no connector `chat`).
    for own in [d.base.clone(), format!("http://localhost:{port}")] {
        let r = socket(own.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{own}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unknown_connector", "{own}: {v}");
    }
}

/// A WebSocket handshake of the sandbox socket at `path_and_query`, with `auth` as its
/// `Authorization` header when given: the status and the error body, if any.
async fn sandbox_handshake(
    d: &DaemonProcess,
    path_and_query: &str,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = Client::new()
        .get(d.url(path_and_query))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(a) = auth {
        r = r.header("Authorization", format!("Bearer {a}"));
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return (status, Value::Null);
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_socket_opens_with_a_single_use_ticket_never_a_token_in_its_url() {
    let dir = temp_dir("auth-ticket");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__WITHOUT_TOKEN", "false")]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let ws = "/sandbox/ws?connector_idn=chat&external_id=x";
    let (s, _) = sandbox_handshake(&d, ws, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "no token, no ticket");

    // A token in the URL is refused, not used.
    let (s, v) = sandbox_handshake(&d, &format!("{ws}&token={}", d.token), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("token"),
        "{v}"
    );

    // A ticket, for the token in the header: valid once.
    let writer = bearer_client(&d.account_token("default", &["events:write"]).await);
    let r = writer.post(d.url("/sandbox/ticket")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in_ms"], 30_000, "{v}");
    let ticket = v["ticket"].as_str().unwrap().to_owned();
    let with_ticket = format!("{ws}&ticket={ticket}");
    let (s, v) = sandbox_handshake(&d, &with_ticket, None).await;
    assert_eq!(s, StatusCode::SWITCHING_PROTOCOLS, "{v}");
    let (s, v) = sandbox_handshake(&d, &with_ticket, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "used: {v}");
    assert_eq!(v["error"]["code"], "invalid_ticket", "{v}");
    assert_eq!(v["error"]["field"], "ticket", "{v}");
    let (s, v) = sandbox_handshake(&d, &format!("{ws}&ticket={}", "0".repeat(64)), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "made up: {v}");

    // A ticket needs events:write; a client that can send headers may send its token instead.
    let reader = bearer_client(&d.account_token("default", &["read"]).await);
    let r = reader.post(d.url("/sandbox/ticket")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (s, v) = sandbox_handshake(&d, ws, Some(&d.token)).await;
    assert_eq!(s, StatusCode::SWITCHING_PROTOCOLS, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_page_may_not_be_framed() {
    let dir = temp_dir("auth-frame");
    let d = DaemonProcess::start(&dir, &[]);
    let r = Client::new().get(d.url("/sandbox")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(
        r.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_sees_and_changes_only_its_own_things() {
    let dir = temp_dir("auth-matrix");
    let d = DaemonProcess::start(&dir, &[]);
    let a = bearer_client(&d.account_token("acct_a", ALL).await);
    let b = bearer_client(&d.account_token("acct_b", ALL).await);

    // B's things: a connector, a flow, a dead letter.
    let (s, v) = call(
        &b,
        "POST",
        d.url("/v1/integrations/sandbox/connectors"),
        Some(json!({"title": "B chat", "connector_idn": "chat"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let connector = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(&b, "PUT", d.url("/v1/flows/Bagent/Bflow"), Some(json!({"runner": {"kind": "webhook", "url": "https://runner.example/skills"}, "events": [{"idn": "user_message", "skill_idn": "S", "integration_idn": "sandbox"}]}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = b
        .post(d.url("/v1/events"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (_, letters) = call(&b, "GET", d.url("/v1/dead-letters"), None).await;
    let letter = letters[0]["id"]
        .as_str()
        .expect("B's dead letter")
        .to_owned();

    // B's user talks: a live session in B.
    let (s, _) = call(
        &b,
        "POST",
        d.url(&format!("/v1/integrations/connectors/{connector}/run")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &b,
        "POST",
        d.url("/v1/events"),
        Some(
            json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                    "event_idn": "user_message", "actor": {"external_id": "b-user"}, "arguments": {"text": "hi"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Durable at the 202; the session starts once the engine routed the event.
    let sessions = common::eventually("B's session", Duration::from_secs(20), || async {
        let (_, sessions) = call(&b, "GET", d.url("/v1/sessions"), None).await;
        (sessions.as_array().map(Vec::len) == Some(1)).then_some(sessions)
    })
    .await;
    assert_eq!(sessions[0]["connector_idn"], "chat", "{sessions}");
    let (_, sessions) = call(&a, "GET", d.url("/v1/sessions"), None).await;
    assert_eq!(sessions, json!([]), "A sees none of B's sessions");
    let (_, why) = call(
        &a,
        "GET",
        d.url(
            "/v1/routes/explain?integration_idn=sandbox&connector_idn=chat&event_idn=user_message",
        ),
        None,
    )
    .await;
    assert!(!why.to_string().contains("Bagent"), "{why}");

    // A, with every scope, reaches none of it: 404 for what names B's things, and lists
    // without them.
    // Every route that names one of B's things (a PUT of B's flow name would create A's own).
    let by_id = every_route(&connector, &letter)
        .into_iter()
        .filter(|(m, p, _)| {
            p.contains(&connector)
                || p.contains(&letter)
                || (p.starts_with("/v1/flows/Bagent/Bflow") && *m != "PUT")
        });
    let cases: Vec<Case> = by_id
        .into_iter()
        .map(|(m, p, body)| case(m, p, body, StatusCode::NOT_FOUND))
        .collect();
    // The connector's nine routes (its secret's rotation, its command stream and acknowledgements
    // among them), the flow's three, the dead letter's two, and the four credential routes
    // (named by the same id).
    assert_eq!(cases.len(), 18);
    check(&d, &a, &cases).await;
    for list in [
        "/v1/flows",
        "/v1/dead-letters",
        "/v1/integrations/sandbox/connectors",
    ] {
        let (s, v) = call(&a, "GET", d.url(list), None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            !v.to_string().contains("Bagent")
                && !v.to_string().contains("B chat")
                && !v.to_string().contains(&letter),
            "{list}: {v}"
        );
    }
    // An event naming B's account, with A's token: refused naming the field.
    let (s, v) = call(&a, "POST", d.url("/v1/events"), Some(json!({"v": 1, "account": "acct_b", "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message", "actor": {"external_id": "u"}, "arguments": {"text": "hi"}}))).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("account")),
        "{v}"
    );
    // B still has all of it.
    let (s, _) = call(
        &b,
        "GET",
        d.url(&format!("/v1/integrations/connectors/{connector}")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&b, "GET", d.url("/v1/flows/Bagent/Bflow"), None).await;
    assert_eq!(s, StatusCode::OK);
    // Account tokens do not manage accounts or tokens.
    let admin_only = [
        ("GET", "/v1/accounts"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens"),
    ];
    let cases: Vec<Case> = admin_only
        .into_iter()
        .map(|(m, p)| {
            case(
                m,
                p,
                Some(json!({"name": "n", "scopes": ["admin"]})),
                StatusCode::FORBIDDEN,
            )
        })
        .collect();
    check(&d, &a, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_scope_gets_403_naming_it() {
    let dir = temp_dir("auth-scope");
    let d = DaemonProcess::start(&dir, &[]);
    let reader = bearer_client(&d.account_token("reader", &["read"]).await);
    let conn = uuid::Uuid::nil().to_string();
    let mut wrong = Vec::new();
    for (method, path, body) in every_route(&conn, &conn) {
        let (s, v) = call(&reader, method, d.url(&path), body).await;
        // Every GET reads, but for a connector's command stream: an adapter's (`events:write`),
        // since opening one takes the connector's commands.
        let reads = !path.starts_with("/v1/accounts")
            && !path.starts_with("/v1/tokens")
            && !path.ends_with("/commands");
        if method == "GET" && reads {
            if s == StatusCode::FORBIDDEN {
                wrong.push(format!("{method} {path}: {v}"));
            }
            continue;
        }
        let scope = v["error"]["field"].as_str().unwrap_or_default();
        let message = v["error"]["message"].as_str().unwrap_or_default();
        if s != StatusCode::FORBIDDEN || scope.is_empty() || !message.contains(scope) {
            wrong.push(format!("{method} {path} → {s}: {v}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `(status, error.code, error.field)` of a call.
async fn refusal(
    c: &Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let (s, v) = call(c, method, url, body).await;
    let text = |k: &str| v["error"][k].as_str().unwrap_or_default().to_owned();
    (s, text("code"), text("field"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_admin_manages_its_own_accounts_tokens_and_nothing_more() {
    let dir = temp_dir("auth-account-admin");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_METRICS__REQUIRE_TOKEN", "true")]);
    let admin = d.client();
    let tenant = bearer_client(&d.account_token("acme", &["account:admin"]).await);
    let _other = d.account_token("other", &["read"]).await;
    let tokens = d.url("/v1/tokens");

    // It lists its own account's tokens only, and another account is not found.
    let (s, list) = call(&tenant, "GET", tokens.clone(), None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let accounts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["acme"], "{list}");
    let (_, everyone) = call(&admin, "GET", tokens.clone(), None).await;
    assert_eq!(
        everyone.as_array().unwrap().len(),
        3,
        "the operator sees all: {everyone}"
    );
    let other_id = everyone
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["account"] == "other")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for account in ["other", "default", "nope"] {
        let got = refusal(&tenant, "GET", format!("{tokens}?account={account}"), None).await;
        assert_eq!(
            got,
            (
                StatusCode::NOT_FOUND,
                "unknown_account".into(),
                "account".into()
            ),
            "{account}"
        );
    }
    let (s, _) = call(&tenant, "GET", format!("{tokens}?account=acme"), None).await;
    assert_eq!(s, StatusCode::OK);

    // It mints tokens of its account, with any scope of the account, account:admin included.
    let (s, v) = call(
        &tenant,
        "POST",
        tokens.clone(),
        Some(json!({"name": "adapter", "scopes": ["events:write", "read", "account:admin"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["account"], "acme");
    let minted_id = v["id"].as_str().unwrap().to_owned();
    let minted = bearer_client(v["token"].as_str().unwrap());
    assert_eq!(
        call(&minted, "GET", d.url("/v1/flows"), None).await.0,
        StatusCode::OK
    );
    // Not for another account (as absent as one that does not exist), not the operator's scopes.
    for account in ["other", "default", "nope"] {
        let got = refusal(
            &tenant,
            "POST",
            tokens.clone(),
            Some(json!({"account": account, "name": "x", "scopes": ["read"]})),
        )
        .await;
        assert_eq!(
            got,
            (
                StatusCode::NOT_FOUND,
                "unknown_account".into(),
                "account".into()
            ),
            "{account}"
        );
    }
    for (scopes, named) in [
        (json!(["admin"]), "admin"),
        (json!(["read", "metrics:read"]), "metrics:read"),
    ] {
        let got = refusal(
            &tenant,
            "POST",
            tokens.clone(),
            Some(json!({"name": "x", "scopes": scopes})),
        )
        .await;
        assert_eq!(
            got,
            (StatusCode::FORBIDDEN, "operator_scope".into(), named.into()),
            "{scopes}"
        );
    }

    // It revokes its account's tokens; another account's is not found; an operator's token in
    // its account stays the operator's.
    let (s, v) = call(
        &admin,
        "POST",
        tokens.clone(),
        Some(json!({"account": "acme", "name": "prometheus", "scopes": ["metrics:read"]})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the operator grants metrics:read: {v}"
    );
    let scraper_id = v["id"].as_str().unwrap().to_owned();
    let got = refusal(&tenant, "DELETE", format!("{tokens}/{scraper_id}"), None).await;
    assert_eq!(
        got,
        (
            StatusCode::FORBIDDEN,
            "operator_scope".into(),
            "metrics:read".into()
        )
    );
    let (s, _) = call(&tenant, "DELETE", format!("{tokens}/{other_id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&tenant, "DELETE", format!("{tokens}/{minted_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&minted, "GET", d.url("/v1/flows"), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Everything else in its account, but not accounts, nor the operator's /metrics.
    let (s, v) = call(
        &tenant,
        "POST",
        d.url("/v1/integrations/sandbox/connectors"),
        Some(json!({"title": "Chat", "connector_idn": "chat"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&tenant, "PUT", d.url("/v1/flows/Agent/Main"), Some(json!({"runner": {"kind": "webhook", "url": "https://runner.example/skills"}, "events": [{"idn": "user_message", "skill_idn": "S", "integration_idn": "sandbox"}]}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (method, path) in [("GET", "/v1/accounts"), ("POST", "/v1/accounts")] {
        let got = refusal(&tenant, method, d.url(path), Some(json!({"idn": "mine"}))).await;
        assert_eq!(
            got,
            (
                StatusCode::FORBIDDEN,
                "missing_scope".into(),
                "admin".into()
            )
        );
    }
    let got = refusal(&tenant, "GET", d.url("/metrics"), None).await;
    assert_eq!(
        got,
        (
            StatusCode::FORBIDDEN,
            "missing_scope".into(),
            "metrics:read".into()
        )
    );
    // The operator's view is unchanged: another account's token still works.
    let (_, everyone) = call(&admin, "GET", tokens.clone(), None).await;
    assert!(everyone.to_string().contains(&other_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_hashed_and_stop_when_revoked_or_expired() {
    let dir = temp_dir("auth-tokens");
    let d = DaemonProcess::start(&dir, &[]);
    let admin = d.client();
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/tokens"),
        Some(json!({"name": "ci", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let text = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("sbt_") && text.len() == 54 && text[4..16] == id,
        "{text}"
    );
    let ci = bearer_client(&text);
    assert_eq!(
        call(&ci, "GET", d.url("/v1/flows"), None).await.0,
        StatusCode::OK
    );
    // The text is nowhere but in that one answer: not in the list, not in the database.
    let (_, list) = call(&admin, "GET", d.url("/v1/tokens"), None).await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));
    assert!(!list.to_string().contains(&text[16..]), "{list}");
    let db = std::fs::read(dir.join("switchboard.db")).unwrap();
    let wal = std::fs::read(dir.join("switchboard.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
            "the token text is stored"
        );
    }
    let (s, _) = call(&admin, "DELETE", d.url(&format!("/v1/tokens/{id}")), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&ci, "GET", d.url("/v1/flows"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked at once: {v}");
    let (s, _) = call(&admin, "DELETE", d.url(&format!("/v1/tokens/{id}")), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "revoked once");

    // An expiry in the past is refused; one a moment ahead works, then stops.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/tokens"),
        Some(json!({"name": "old", "scopes": ["read"], "expires_at": past})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expires_at"))
    );
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (_, v) = call(
        &admin,
        "POST",
        d.url("/v1/tokens"),
        Some(json!({"name": "brief", "scopes": ["read"], "expires_at": soon.to_rfc3339()})),
    )
    .await;
    let brief = bearer_client(v["token"].as_str().unwrap());
    assert_eq!(
        call(&brief, "GET", d.url("/v1/flows"), None).await.0,
        StatusCode::OK
    );
    eventually(
        "the brief token expired",
        Duration::from_secs(10),
        || async {
            (call(&brief, "GET", d.url("/v1/flows"), None).await.0 == StatusCode::UNAUTHORIZED)
                .then_some(())
        },
    )
    .await;
    // Unknown scopes are refused naming the field.
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/tokens"),
        Some(json!({"name": "x", "scopes": ["root"]})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scopes")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_writes_a_private_admin_token_file_once() {
    let dir = temp_dir("auth-first");
    let d = DaemonProcess::start(&dir, &[]);
    let file = dir.join("admin.token");
    for f in [&file, &dir.join("switchboard.db")] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    assert!(d.logged("admin.token"), "the log says where the token is");
    let first = d.token.clone();
    d.kill9();
    // A restart keeps the token and writes no other.
    let d = DaemonProcess::start(&dir, &[]);
    assert_eq!(d.token, first);
    let (s, v) = call(&d.client(), "GET", d.url("/v1/tokens"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_tokens_beside_a_running_daemon() {
    let dir = temp_dir("auth-cli");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_AUTH__CACHE_TTL_MS", "0")]);
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("token")
            .args(args)
            .current_dir(&dir)
            .env("SWITCHBOARD_STORE__PATH", dir.join("switchboard.db"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = cli(&[
        "create",
        "--account",
        "cli_acct",
        "--name",
        "from cli",
        "--scopes",
        "read,events:write",
    ]);
    let text = text.trim().to_owned();
    let tok = bearer_client(&text);
    assert_eq!(
        call(&tok, "GET", d.url("/v1/flows"), None).await.0,
        StatusCode::OK
    );
    let listed = cli(&["list"]);
    assert!(
        listed.contains("from cli") && listed.contains("cli_acct"),
        "{listed}"
    );
    assert!(!listed.contains(&text[16..]), "{listed}");
    cli(&["revoke", &text[4..16]]);
    assert_eq!(
        call(&tok, "GET", d.url("/v1/flows"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_when_configured() {
    let dir = temp_dir("auth-metrics");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_METRICS__REQUIRE_TOKEN", "true")]);
    let (s, _) = call(&Client::new(), "GET", d.url("/metrics"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let reader = bearer_client(&d.account_token("ops", &["read"]).await);
    let (s, v) = call(&reader, "GET", d.url("/metrics"), None).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::FORBIDDEN, Some("metrics:read"))
    );
    let scraper = bearer_client(&d.account_token("ops", &["metrics:read"]).await);
    let r = scraper.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("switchboard_build_info"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_event_id_is_not_trusted() {
    let dir = temp_dir("auth-event-id");
    let d = DaemonProcess::start(&dir, &[]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let id = uuid::Uuid::now_v7();
    let mut ids = Vec::new();
    for who in ["alice", "bob"] {
        let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(json!({"v": 1, "id": id, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message", "actor": {"external_id": who}, "arguments": {"text": "hi"}}))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1], "two events never share an id");
    assert!(
        ids.iter().all(|i| *i != id.to_string()),
        "the daemon chose them"
    );
}

/// The persona id the daemon gives `who` on the sandbox connector `chat`, read from its
/// session.
async fn persona_of(d: &DaemonProcess, who: &str) -> String {
    let (s, v) = call(
        &d.client(),
        "POST",
        d.url("/v1/events"),
        Some(
            json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                    "event_idn": "user_message", "actor": {"external_id": who}, "arguments": {"text": "hi"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    eventually("the session", Duration::from_secs(10), || async {
        let (_, list) = call(&d.client(), "GET", d.url("/v1/sessions"), None).await;
        list.as_array()?.iter().find_map(|s| {
            (s["connector_idn"] == "chat").then(|| s["persona_id"].as_str().unwrap().to_owned())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persona_ids_are_keyed_stable_across_restarts_and_unkeyed_in_an_older_store() {
    use switchboard::domain::{Idn, PersonaId};
    let unkeyed =
        PersonaId::derive(&Idn::known("default"), &Idn::known("sandbox"), "alice").to_string();
    let dir = temp_dir("auth-persona");
    let d = DaemonProcess::start(&dir, &[]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let first = persona_of(&d, "alice").await;
    assert_ne!(first, unkeyed, "nobody can compute it from the external id");
    d.kill9();
    let d = DaemonProcess::start(&dir, &[]);
    let (_, live) = call(&d.client(), "GET", d.url("/v1/sessions"), None).await;
    assert_eq!(
        live[0]["persona_id"],
        first.as_str(),
        "the same person after a restart"
    );

    // A store that held personas before persona keys existed keeps its ids.
    let old = temp_dir("auth-persona-old");
    {
        let store = switchboard::store::Store::open(&old.join("switchboard.db"), 16, 5000).unwrap();
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO actors (account, integration, external_id, persona, first_seen)
                     VALUES ('default', 'sandbox', 'bob', 'x', '2026-01-01T00:00:00Z')",
                    [],
                )?;
                Ok(switchboard::store::Written::Done)
            })
            .await
            .unwrap();
    }
    let d = DaemonProcess::start(&old, &[]);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    assert_eq!(persona_of(&d, "alice").await, unkeyed);
}
