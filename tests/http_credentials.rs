//! Credential connectors on the real daemon (`/v1/credentials`): created, configured, renamed,
//! listed and deleted per account; secret fields sealed at rest and write-only (no answer, log
//! line or store file shows them); deleting one an http connector uses is a 409 naming it
//! unless `?force=true`; another account's credential is not found.

mod common;

use common::call;
use common::daemon::{bearer_client, temp_dir, DaemonProcess};
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
