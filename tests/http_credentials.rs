//! Credential connectors on the real daemon (`/v1/credentials`): created, configured, renamed,
//! listed and deleted per account; secret fields sealed at rest and write-only (no answer, log
//! line or store file shows them); deleting one an http connector uses is a 409 naming it
//! unless `?force=true`; another account's credential is not found. Wired in: an http
//! connector's `credential` setting or a skill's `credential` argument puts one on the request
//! (real HTTP to a local API on loopback), and the planted secret shows nowhere else.

mod common;

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use common::daemon::{bearer_client, temp_dir, DaemonProcess};
use common::oauth_provider::Provider;
use common::runner_server::{argument, completed, Received, RunnerServer};
use common::{call, call_text};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "planted-credential-5e1d27";

#[actix_rt::test]
async fn credentials_are_managed_per_account_and_their_secrets_never_shown() {
    let dir = temp_dir("http-credentials");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_LOG__LEVEL", "trace")]);
    let acme = bearer_client(
        &d.account_token("acme", &["read", "credentials:write", "connectors:write"])
            .await,
    );
    let reader = bearer_client(&d.account_token("acme", &["read"]).await);
    let globex = bearer_client(
        &d.account_token("globex", &["read", "credentials:write"])
            .await,
    );
    let url = |p: &str| d.url(p);

    // Create: the secret is sealed and write-only.
    let (s, v) = call(
        &acme,
        "POST",
        url("/v1/credentials"),
        Some(json!({"name": "HubSpot API", "type": "bearer", "settings": {"token": SECRET}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(!v.to_string().contains(SECRET), "{v}");
    assert_eq!(v["status"], "connected");
    assert_eq!(v["type"], "bearer");
    assert_eq!(v["secrets_set"], json!(["token"]));
    let id = v["id"].as_str().unwrap().to_owned();

    // An api key in a query parameter, configured as it is typed.
    let (s, v) = call(
        &acme,
        "POST",
        url("/v1/credentials"),
        Some(json!({"name": "Maps", "type": "api_key"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "not_configured");
    let maps = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(
        &acme,
        "PATCH",
        url(&format!("/v1/credentials/{maps}")),
        Some(json!({"name": "Google Maps", "settings": {"query_param": "key", "value": SECRET}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "Google Maps");
    assert_eq!(v["status"], "connected");
    assert_eq!(v["settings"], json!({"query_param": "key"}));

    // Bad input: 400 naming the field.
    for (body, field) in [
        (json!({"name": "X", "type": "kerberos"}), "type"),
        (json!({"name": " ", "type": "bearer"}), "name"),
        (
            json!({"name": "Y", "type": "bearer", "settings": {"password": "p"}}),
            "settings.password",
        ),
        (
            json!({"name": "Z", "type": "oauth2", "settings": {"token_url": "not a url"}}),
            "settings.token_url",
        ),
    ] {
        let (s, v) = call(&acme, "POST", url("/v1/credentials"), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    // A taken name: 409.
    let (s, v) = call(
        &acme,
        "POST",
        url("/v1/credentials"),
        Some(json!({"name": "HubSpot API", "type": "basic"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Reads: status only; a read-only token reads but does not write.
    let (s, v) = call(&reader, "GET", url("/v1/credentials"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(!v.to_string().contains(SECRET));
    let (s, _) = call(
        &reader,
        "POST",
        url("/v1/credentials"),
        Some(json!({"name": "R", "type": "bearer"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Another account: nothing to see, nothing to delete.
    let (s, v) = call(&globex, "GET", url("/v1/credentials"), None).await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));
    for method in ["GET", "DELETE"] {
        let (s, _) = call(&globex, method, url(&format!("/v1/credentials/{id}")), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method}");
    }

    // An http connector that uses it: deleting is a 409 naming it, unless forced.
    let (s, v) = call(
        &acme,
        "POST",
        url("/v1/integrations/http/connectors"),
        Some(json!({"title": "CRM", "connector_idn": "crm", "settings": [
            {"idn": "base_url", "value": "https://api.hubapi.com"},
            {"idn": "credential", "value": "HubSpot API"},
        ]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&acme, "GET", url(&format!("/v1/credentials/{id}")), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["used_by"], json!(["crm"]));
    let (s, v) = call(&acme, "DELETE", url(&format!("/v1/credentials/{id}")), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "credential_in_use");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("crm"),
        "{v}"
    );
    let (s, _) = call(
        &acme,
        "DELETE",
        url(&format!("/v1/credentials/{id}?force=true")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&acme, "GET", url(&format!("/v1/credentials/{id}")), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Unused: deleted at once.
    let (s, _) = call(
        &acme,
        "DELETE",
        url(&format!("/v1/credentials/{maps}")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // The secret is in no log line and no store file.
    assert!(!d.logged(SECRET), "a log line shows the secret");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
    let metrics: Value = Value::String(d.metrics().await);
    assert!(!metrics.to_string().contains(SECRET));
}

/// What the API saw: `(path and query, authorization)`.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A local API on 127.0.0.1:0 that answers every request 200 `{"ok": true, "method": …}`.
fn api() -> (String, Seen) {
    let seen: Seen = Arc::default();
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
                seen.lock().unwrap().push((req.uri().to_string(), auth));
                HttpResponse::Ok().json(json!({"ok": true, "method": req.method().as_str()}))
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

/// The runner: a user message's text is the credential to name (`-`: none, the connector's),
/// a GET, or after `POST ` a POST with a body.
fn answer(r: &Received) -> (u16, String) {
    let e = &r.json["event"];
    if e["event_idn"] != "user_message" {
        return (200, completed(json!([])));
    }
    let text = argument(e, "text").unwrap_or_default();
    let text = text.as_str();
    let (method, name) = match text.strip_prefix("POST ") {
        Some(name) => ("POST", name),
        None => ("GET", text),
    };
    let mut a = json!({"method": method, "url": "users/1?q=1", "targetAction": "t"});
    if method == "POST" {
        a["body"] = json!("{\"a\":1}");
    }
    if name != "-" {
        a["credential"] = json!(name);
    }
    let command = json!({"v": 1, "integration_idn": "http", "connector_idn": "api",
        "command_idn": "send_request", "arguments": a});
    (200, completed(json!([command])))
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

/// Whether the request `back` from the last one the API saw had `key` in its query.
fn last_query_has_key(seen: &Seen, back: usize, key: &str) -> bool {
    let seen = seen.lock().unwrap();
    seen[seen.len() - 1 - back].0.contains(key)
}

/// Sends user message `text`; answers the first http answer the runner got (every invocation
/// checked for the secret on the way).
async fn ask(
    d: &DaemonProcess,
    runner: &mut RunnerServer,
    text: &str,
) -> (String, serde_json::Map<String, Value>) {
    let e = json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
        "actor": {"external_id": "alice"}, "arguments": {"text": text}});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(e)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    loop {
        let r = runner.next().await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            !body.contains(SECRET),
            "an invocation shows the secret: {body}"
        );
        let (event, args) = event_of(&r);
        if event != "user_message" {
            return (event, args);
        }
    }
}

#[actix_rt::test]
async fn a_credential_is_put_on_requests_and_shows_nowhere() {
    let (api, seen) = api();
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-credentials-wired");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_LOG__LEVEL", "trace")]);
    let admin = d.client();
    let create = |name: &str, kind: &str, settings: Value| json!({"name": name, "type": kind, "settings": settings});
    for body in [
        create(
            "HubSpot API",
            "bearer",
            json!({"token": format!("{SECRET}-bearer")}),
        ),
        create(
            "Maps",
            "api_key",
            json!({"query_param": "key", "value": format!("{SECRET}-query")}),
        ),
        create(
            "Keyed",
            "api_key",
            json!({"header": "X-Key", "value": format!("{SECRET}-header")}),
        ),
        create(
            "Basic",
            "basic",
            json!({"username": "ada", "password": format!("{SECRET}-basic")}),
        ),
        create("Half", "bearer", json!({})),
    ] {
        let (s, v) = call(&admin, "POST", d.url("/v1/credentials"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // Another account's credential, of the same shape.
    let globex = bearer_client(&d.account_token("globex", &["credentials:write"]).await);
    let (s, _) = call(
        &globex,
        "POST",
        d.url("/v1/credentials"),
        Some(create(
            "Globex Key",
            "bearer",
            json!({"token": format!("{SECRET}-globex")}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "http",
        json!({"title": "API", "connector_idn": "api", "settings": [
            {"idn": "base_url", "value": format!("{api}/v1")},
            {"idn": "credential", "value": "HubSpot API"},
        ]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;
    let last = || seen.lock().unwrap().last().cloned().unwrap();

    // The connector's credential.
    let (event, a) = ask(&d, &mut runner, "-").await;
    assert_eq!(event, "magic_http_response", "{a:?}");
    assert_eq!(a["statusCode"], "200");
    assert_eq!(
        last(),
        ("/v1/users/1?q=1".into(), format!("Bearer {SECRET}-bearer"))
    );
    // Named by the skill: in the query, in a header, basic.
    let (event, _) = ask(&d, &mut runner, "Maps").await;
    assert_eq!(event, "magic_http_response");
    assert_eq!(
        last(),
        (format!("/v1/users/1?q=1&key={SECRET}-query"), "-".into())
    );
    let (event, _) = ask(&d, &mut runner, "Basic").await;
    assert_eq!(event, "magic_http_response");
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("ada:{SECRET}-basic"));
    assert_eq!(last().1, format!("Basic {pair}"));
    let before = seen.lock().unwrap().len();
    let (event, _) = ask(&d, &mut runner, "Keyed").await;
    assert_eq!(event, "magic_http_response");
    assert_eq!(seen.lock().unwrap().len(), before + 1);
    // POST, with each of them.
    for (name, auth) in [
        ("-", format!("Bearer {SECRET}-bearer")),
        ("Maps", "-".into()),
        ("Basic", format!("Basic {pair}")),
        ("Keyed", "-".into()),
    ] {
        let (event, a) = ask(&d, &mut runner, &format!("POST {name}")).await;
        assert_eq!(event, "magic_http_response", "{a:?}");
        assert!(a["body"].as_str().unwrap().contains("\"POST\""), "{a:?}");
        assert_eq!(last().1, auth, "{name}");
    }
    assert!(last_query_has_key(&seen, 2, &format!("key={SECRET}-query")));

    // Another account's, one not configured: refused naming it, nothing sent.
    let before = seen.lock().unwrap().len();
    for (name, why) in [("Globex Key", "not found"), ("Half", "not_configured")] {
        let (event, a) = ask(&d, &mut runner, name).await;
        assert_eq!(event, "result_error", "{a:?}");
        let error = a["error"].as_str().unwrap();
        assert!(error.contains(name) && error.contains(why), "{error}");
        assert_eq!(a["fault"], "caller");
    }
    assert_eq!(seen.lock().unwrap().len(), before, "nothing sent");

    // Deleted by force: the connector's requests fail naming the missing credential.
    let (_, list) = call(&admin, "GET", d.url("/v1/credentials"), None).await;
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "HubSpot API")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = call(
        &admin,
        "DELETE",
        d.url(&format!("/v1/credentials/{id}?force=true")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (event, a) = ask(&d, &mut runner, "-").await;
    assert_eq!(event, "result_error");
    assert!(
        a["error"].as_str().unwrap().contains("HubSpot API"),
        "{a:?}"
    );

    // The secret, in any form, is in no dead letter, metric or log line (TRACE).
    let (_, letters) = call_text(&admin, "GET", d.url("/v1/dead-letters"), None).await;
    let (_, metrics) = call_text(&admin, "GET", d.url("/metrics"), None).await;
    for text in [&letters, &metrics] {
        assert!(!text.contains(SECRET) && !text.contains(&pair));
    }
    assert!(
        !d.logged(SECRET) && !d.logged(&pair),
        "a log line shows the secret"
    );
    while let Ok(r) = runner.rx.try_recv() {
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    }
    d.terminate().await;
}

/// The local OAuth provider, its client secret and tokens marked with the planted secret.
fn provider() -> (String, Arc<Provider>) {
    common::oauth_provider::start(SECRET)
}

/// A local API that answers 200 to the provider's current access token only, 401 otherwise.
fn guarded_api(prov: Arc<Provider>) -> String {
    let server = HttpServer::new(move || {
        let prov = prov.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let prov = prov.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                let want = format!("Bearer {}", prov.current.lock().unwrap());
                if auth == Some(want.as_str()) {
                    HttpResponse::Ok().body("fine")
                } else {
                    HttpResponse::Unauthorized().body("token refused")
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
    format!("http://{addr}")
}

#[actix_rt::test]
async fn an_oauth_credential_connects_through_the_provider_and_authenticates_requests() {
    let (api, seen) = api();
    let (prov, provider_state) = provider();
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-credentials-oauth");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_LOG__LEVEL", "trace")]);
    let admin = d.client();
    let oauth = |name: &str, grant: &str| {
        json!({"name": name, "type": "oauth2", "settings": {
            "grant": grant, "client_id": "cid", "client_secret": format!("{SECRET}-client"),
            "authorize_url": format!("{prov}/authorize"), "token_url": format!("{prov}/token"),
            "scopes": "read write"}})
    };
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/credentials"),
        Some(oauth("CRM", "authorization_code")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "not_connected");
    let id = v["id"].as_str().unwrap().to_owned();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "http",
        json!({"title": "API", "connector_idn": "api",
        "settings": [{"idn": "base_url", "value": format!("{api}/v1")}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;

    // Not connected yet: a request naming it is refused, nothing sent.
    let (event, a) = ask(&d, &mut runner, "CRM").await;
    assert_eq!(event, "result_error");
    assert!(
        a["error"].as_str().unwrap().contains("not_connected"),
        "{a:?}"
    );

    // Start → the provider's page → its redirect to the callback → connected.
    let (s, v) = call(
        &admin,
        "POST",
        d.url(&format!("/v1/credentials/{id}/oauth/start")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let url = v["authorization_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{prov}/authorize?")), "{url}");
    assert!(
        url.contains("code_challenge=") && url.contains("state="),
        "{url}"
    );
    let browser = reqwest::Client::new();
    let r = browser.get(&url).send().await.unwrap();
    let callback = r.url().to_string();
    let (status, page) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("CRM is connected"), "{page}");
    assert!(
        callback.starts_with(&d.url("/oauth/callback")),
        "{callback}"
    );
    // The state is single use.
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (_, v) = call(&admin, "GET", d.url(&format!("/v1/credentials/{id}")), None).await;
    assert_eq!(v["status"], "connected", "{v}");
    assert!(
        v["expires_at"].is_string() && v["last_refresh_at"].is_string(),
        "{v}"
    );
    assert_eq!(v["secrets_set"], json!(["client_secret"]));

    // The access token goes on the request.
    let (event, _) = ask(&d, &mut runner, "CRM").await;
    assert_eq!(event, "magic_http_response");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, format!("Bearer {SECRET}-access-1"));
    let (event, a) = ask(&d, &mut runner, "POST CRM").await;
    assert_eq!(event, "magic_http_response");
    assert!(a["body"].as_str().unwrap().contains("\"POST\""), "{a:?}");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, format!("Bearer {SECRET}-access-1"));

    // Client credentials: connected at start, no browser.
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/credentials"),
        Some(oauth("Machine", "client_credentials")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let machine = v["id"].as_str().unwrap().to_owned();
    let (s, v) = call(
        &admin,
        "POST",
        d.url(&format!("/v1/credentials/{machine}/oauth/start")),
        None,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("connected")),
        "{v}"
    );
    assert!(v["authorization_url"].is_null());
    let (event, _) = ask(&d, &mut runner, "Machine").await;
    assert_eq!(event, "magic_http_response");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, format!("Bearer {SECRET}-machine-2"));
    assert_eq!(
        *provider_state.grants.lock().unwrap(),
        ["authorization_code", "client_credentials"]
    );

    // No token, client secret or refresh token in any answer, dead letter, metric or log.
    let (_, list) = call_text(&admin, "GET", d.url("/v1/credentials"), None).await;
    let (_, letters) = call_text(&admin, "GET", d.url("/v1/dead-letters"), None).await;
    let (_, metrics) = call_text(&admin, "GET", d.url("/metrics"), None).await;
    for text in [&list, &letters, &metrics] {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(!d.logged(SECRET), "a log line shows a secret");
    d.terminate().await;
}

/// Sends user message `text` from `who`.
async fn say(d: &DaemonProcess, who: &str, text: &str) {
    let e = json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
        "actor": {"external_id": who}, "arguments": {"text": text}});
    let (s, v) = call(&d.client(), "POST", d.url("/v1/events"), Some(e)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

/// The next `n` events the runner gets other than user messages.
async fn answers(
    runner: &mut RunnerServer,
    n: usize,
) -> Vec<(String, serde_json::Map<String, Value>)> {
    let mut got = Vec::new();
    while got.len() < n {
        let r = runner.next().await;
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
        let (event, args) = event_of(&r);
        if event != "user_message" {
            got.push((event, args));
        }
    }
    got
}

#[actix_rt::test]
async fn oauth_tokens_refresh_once_for_many_ahead_of_expiry_and_a_revocation_is_told() {
    let (prov, state) = provider();
    let api = guarded_api(state.clone());
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-credentials-refresh");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_LOG__LEVEL", "debug")]);
    let admin = d.client();
    let (s, v) = call(&admin, "POST", d.url("/v1/credentials"), Some(json!({"name": "CRM", "type": "oauth2",
        "settings": {"client_id": "cid", "client_secret": format!("{SECRET}-client"),
        "authorize_url": format!("{prov}/authorize"), "token_url": format!("{prov}/token"), "scopes": "read write"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, v) = call(
        &admin,
        "POST",
        d.url(&format!("/v1/credentials/{id}/oauth/start")),
        None,
    )
    .await;
    let r = reqwest::get(v["authorization_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector("http", json!({"title": "API", "connector_idn": "api", "settings": [
        {"idn": "base_url", "value": format!("{api}/v1")}, {"idn": "max_in_flight", "value": "20"}]})).await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "credential_revoked", "skill_idn": "OnRevoked", "integration_idn": "system"},
        {"idn": "credential_recovered", "skill_idn": "OnRevoked", "integration_idn": "system"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;

    // The provider moves on: the token in hand gets 401. Twenty conversations at once: one
    // refresh, every request sent again with its token.
    *state.current.lock().unwrap() = "rotated".into();
    for i in 0..20 {
        say(&d, &format!("user{i}"), "CRM").await;
    }
    let got = answers(&mut runner, 20).await;
    for (event, a) in &got {
        assert_eq!(
            (event.as_str(), a["statusCode"].as_str()),
            ("magic_http_response", Some("200")),
            "{a:?}"
        );
    }
    assert_eq!(state.refreshes(), 1, "one refresh for twenty 401s");

    // A token with little life left is refreshed before it is used.
    state
        .expires_in
        .store(60, std::sync::atomic::Ordering::SeqCst);
    *state.current.lock().unwrap() = "rotated".into();
    say(&d, "solo", "CRM").await; // 401 → refresh (a 60 s token)
    assert_eq!(answers(&mut runner, 1).await[0].1["statusCode"], "200");
    assert_eq!(state.refreshes(), 2);
    say(&d, "solo", "CRM").await; // expiring → refreshed ahead, no 401
    assert_eq!(answers(&mut runner, 1).await[0].1["statusCode"], "200");
    assert_eq!(state.refreshes(), 3);

    // The provider refuses the refresh token: needs_reauth, a credential_revoked system event,
    // and the request fails naming the credential.
    state
        .revoked
        .store(true, std::sync::atomic::Ordering::SeqCst);
    say(&d, "solo", "CRM").await;
    let got = answers(&mut runner, 2).await;
    let revoked = got
        .iter()
        .find(|(e, _)| e == "credential_revoked")
        .expect("credential_revoked");
    assert_eq!(revoked.1["credentialName"], "CRM");
    assert_eq!(revoked.1["credentialId"], id.as_str());
    let failed = got
        .iter()
        .find(|(e, _)| e == "result_error")
        .expect("result_error");
    assert!(
        failed.1["error"].as_str().unwrap().contains("needs_reauth"),
        "{failed:?}"
    );
    let (_, v) = call(&admin, "GET", d.url(&format!("/v1/credentials/{id}")), None).await;
    assert_eq!(v["status"], "needs_reauth");

    // Authorized again: credential_recovered, and requests go through.
    state
        .revoked
        .store(false, std::sync::atomic::Ordering::SeqCst);
    state
        .expires_in
        .store(3600, std::sync::atomic::Ordering::SeqCst);
    let (_, v) = call(
        &admin,
        "POST",
        d.url(&format!("/v1/credentials/{id}/oauth/start")),
        None,
    )
    .await;
    let r = reqwest::get(v["authorization_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = answers(&mut runner, 1).await;
    assert_eq!(got[0].0, "credential_recovered");
    assert_eq!(got[0].1["credentialName"], "CRM");
    say(&d, "solo", "CRM").await;
    assert_eq!(answers(&mut runner, 1).await[0].1["statusCode"], "200");
    let (_, metrics) = call_text(&admin, "GET", d.url("/metrics"), None).await;
    assert!(
        metrics.contains("switchboard_credential_refreshes_total"),
        "{metrics}"
    );
    assert!(!metrics.contains(SECRET) && !d.logged(SECRET));
    d.terminate().await;
}

/// `switchboard rekey` on the daemon's directory (stopped), with `args`; answers what it said.
fn rekey(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("rekey")
        .args(args)
        .current_dir(dir)
        .env("SWITCHBOARD_STORE__PATH", dir.join("switchboard.db"))
        .env(
            "SWITCHBOARD_STORE__SECRET_KEY_FILE",
            dir.join("switchboard.key"),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

#[actix_rt::test]
async fn credentials_are_resealed_by_rekey_and_still_put_on_requests_with_the_old_key_dropped() {
    let (api, seen) = api();
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-credentials-rekey");
    let d = DaemonProcess::start(&dir, &[]);
    let admin = d.client();
    let (s, v) = call(
        &admin,
        "POST",
        d.url("/v1/credentials"),
        Some(json!({"name": "HubSpot API", "type": "bearer", "settings": {"token": SECRET}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "http",
        json!({"title": "API", "connector_idn": "api", "settings": [
            {"idn": "base_url", "value": format!("{api}/v1")},
            {"idn": "credential", "value": "HubSpot API"},
        ]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;
    d.terminate().await;

    // The credential's token is re-sealed with the rest, so the old key can go.
    let old_key = std::fs::read_to_string(dir.join("switchboard.key")).unwrap();
    let said = rekey(&dir, &["--drop-old"]);
    assert!(said.contains("re-sealed 3 value(s)"), "{said}"); // + the persona key
    assert!(said.ends_with(": none\n"), "{said}");
    let new_key = std::fs::read_to_string(dir.join("switchboard.key")).unwrap();
    assert_eq!(new_key.trim().lines().count(), 1);
    assert_ne!(new_key.trim(), old_key.trim());

    // On the new key alone, the credential still goes on the request.
    let d = DaemonProcess::start(&dir, &[]);
    let (event, a) = ask(&d, &mut runner, "-").await;
    assert_eq!(event, "magic_http_response", "{a:?}");
    assert_eq!(a["statusCode"], "200");
    assert_eq!(
        seen.lock().unwrap().last().cloned().unwrap(),
        ("/v1/users/1?q=1".into(), format!("Bearer {SECRET}"))
    );
    let (_, v) = call(&d.client(), "GET", d.url("/v1/credentials"), None).await;
    assert_eq!(v[0]["status"], "connected", "{v}");
    d.terminate().await;
}

#[actix_rt::test]
async fn an_authorization_started_before_a_restart_completes_after_it_once() {
    let (api, seen) = api();
    let (prov, _) = provider();
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-credentials-oauth-restart");
    let d = DaemonProcess::start(&dir, &[]);
    let admin = d.client();
    let (s, v) = call(&admin, "POST", d.url("/v1/credentials"), Some(json!({"name": "CRM", "type": "oauth2",
        "settings": {"client_id": "cid", "client_secret": format!("{SECRET}-client"),
        "authorize_url": format!("{prov}/authorize"), "token_url": format!("{prov}/token"), "scopes": "read write"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "http",
        json!({"title": "API", "connector_idn": "api",
        "settings": [{"idn": "base_url", "value": format!("{api}/v1")}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;
    let (s, v) = call(
        &admin,
        "POST",
        d.url(&format!("/v1/credentials/{id}/oauth/start")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The user authorizes at the provider, which sends the browser back to the callback…
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .get(v["authorization_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&d.url("/oauth/callback?")), "{back}");
    // … while the daemon restarts (on another port here: the callback's path and query go to
    // the new one; the redirect URI the flow was started with is still the one exchanged).
    d.terminate().await;
    let d = DaemonProcess::start(&dir, &[]);
    let query = back.split_once('?').unwrap().1;
    let callback = d.url(&format!("/oauth/callback?{query}"));
    let r = browser.get(&callback).send().await.unwrap();
    let (status, page) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("CRM is connected"), "{page}");
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "single use");
    let (_, v) = call(
        &d.client(),
        "GET",
        d.url(&format!("/v1/credentials/{id}")),
        None,
    )
    .await;
    assert_eq!(v["status"], "connected", "{v}");
    let (event, _) = ask(&d, &mut runner, "CRM").await;
    assert_eq!(event, "magic_http_response");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, format!("Bearer {SECRET}-access-1"));
    assert!(!d.logged(SECRET));
    d.terminate().await;
}

#[actix_rt::test]
async fn a_client_credentials_token_is_renewed_by_its_own_grant() {
    let (api, seen) = api();
    let (prov, state) = provider();
    let mut runner = RunnerServer::start(answer);
    let dir = temp_dir("http-credentials-machine");
    let d = DaemonProcess::start(&dir, &[]);
    let admin = d.client();
    let (s, v) = call(&admin, "POST", d.url("/v1/credentials"), Some(json!({"name": "Machine", "type": "oauth2",
        "settings": {"grant": "client_credentials", "client_id": "cid", "client_secret": format!("{SECRET}-client"),
        "token_url": format!("{prov}/token"), "scopes": "read write"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // A token with a minute to live: expiring at once.
    state
        .expires_in
        .store(60, std::sync::atomic::Ordering::SeqCst);
    let (s, v) = call(
        &admin,
        "POST",
        d.url(&format!("/v1/credentials/{id}/oauth/start")),
        None,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("connected")),
        "{v}"
    );
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "http",
        json!({"title": "API", "connector_idn": "api",
        "settings": [{"idn": "base_url", "value": format!("{api}/v1")}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
    "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
        {"idn": "magic_http_response", "skill_idn": "OnHttp", "integration_idn": "http"},
        {"idn": "result_error", "skill_idn": "OnHttp", "integration_idn": "http"},
    ]});
    d.put_flow("Bot", "Main", &flow).await;
    // No refresh token to spend: the client-credentials grant again, not needs_reauth.
    let (event, a) = ask(&d, &mut runner, "Machine").await;
    assert_eq!(event, "magic_http_response", "{a:?}");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, format!("Bearer {SECRET}-machine-2"));
    assert_eq!(
        *state.grants.lock().unwrap(),
        ["client_credentials", "client_credentials"]
    );
    let (_, v) = call(&admin, "GET", d.url(&format!("/v1/credentials/{id}")), None).await;
    assert_eq!(v["status"], "connected", "{v}");
    d.terminate().await;
}
