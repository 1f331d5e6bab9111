//! The OpenAPI document against the real binary: `GET /v1/openapi.json` answers without a token
//! an OpenAPI 3.1 document whose operations are exactly the routes the tests know (`every_route`
//! and the few outside it), with the error body, the bearer scheme, and the scopes each
//! operation needs.

mod common;

use std::collections::BTreeSet;

use common::call;
use common::daemon::{temp_dir, DaemonProcess};
use common::routes::{every_route, OUTSIDE_EVERY_ROUTE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// The template of `templates` that `path` (query dropped) is an instance of.
fn template_of<'a>(templates: &'a [String], path: &str) -> Option<&'a String> {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    // A static segment wins over a parameter (`/v1/integrations/connectors/{id}` over
    // `/v1/integrations/{integration}/…`), as in the router.
    let mut matches: Vec<&String> = templates
        .iter()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .collect();
    matches.sort_by_key(|t| t.matches('{').count());
    matches.first().copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_names_every_route() {
    let dir = temp_dir("openapi");
    let d = DaemonProcess::start(&dir, &[]);
    // No token needed.
    let (s, doc) = call(&Client::new(), "GET", d.url("/v1/openapi.json"), None).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1."),
        "{}",
        doc["openapi"]
    );

    let paths = doc["paths"].as_object().unwrap();
    let templates: Vec<String> = paths.keys().cloned().collect();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();

    let conn = uuid::Uuid::nil().to_string();
    let mut known = BTreeSet::new();
    let mut missing = Vec::new();
    for (method, path, _) in every_route(&conn, &conn) {
        match template_of(&templates, &path) {
            Some(t) if documented.contains(&(method.to_owned(), t.clone())) => {
                known.insert((method.to_owned(), t.clone()));
                // Every route of the list needs a token: its operation says with which scopes.
                let op = &paths[t][method.to_lowercase()];
                let scopes = &op["security"][0]["bearer"];
                assert!(
                    scopes.as_array().is_some_and(|s| !s.is_empty()),
                    "{method} {t}: no bearer scopes in {op}"
                );
                assert!(op["responses"]["401"].is_object(), "{method} {t}: no 401");
            }
            _ => missing.push(format!("{method} {path}")),
        }
    }
    for (method, path) in OUTSIDE_EVERY_ROUTE {
        let key = ((*method).to_owned(), (*path).to_owned());
        if documented.contains(&key) {
            known.insert(key);
        } else {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(missing.is_empty(), "not in the document: {missing:?}");
    // And nothing the tests do not know of.
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(unknown.is_empty(), "not in every_route: {unknown:?}");

    // The error body, the responses that use it, the bearer scheme.
    let components = &doc["components"];
    let detail = &components["schemas"]["ErrorDetail"];
    for field in ["code", "message", "field"] {
        assert!(detail["properties"][field].is_object(), "{detail}");
    }
    assert_eq!(
        components["schemas"]["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );
    assert_eq!(
        components["responses"]["Unauthorized"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let bearer = &components["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&Value::from("http"), &Value::from("bearer")),
        "{bearer}"
    );
    // Query parameters are documented (the filters of sessions, dead letters and timers).
    let query = |path: &str| -> Vec<String> {
        paths[path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(query("/v1/timers"), ["connector", "persona", "limit"]);
    assert_eq!(query("/v1/dead-letters"), ["limit", "reason", "since"]);
    assert_eq!(
        query("/v1/sessions"),
        ["connectors", "is_active", "channel"]
    );
    // A rotation may end the replaced runner secret's overlap at once.
    let rotate = &paths["/v1/flows/{agent}/{flow}/runner-secret"]["post"];
    let previous = rotate["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["in"] == "query" && p["name"] == "previous")
        .unwrap_or_else(|| panic!("no ?previous= on the runner-secret rotation: {rotate}"));
    assert_eq!(previous["required"], false, "{previous}");
    let values = previous["schema"]["enum"]
        .as_array()
        .or_else(|| {
            previous["schema"]["oneOf"]
                .as_array()
                .and_then(|o| o.iter().find_map(|s| s["enum"].as_array()))
        })
        .unwrap_or_else(|| panic!("the values of ?previous= are not listed: {previous}"));
    assert_eq!(values, &vec![json!("keep"), json!("revoke")], "{previous}");
    // An event names its actor: `persona_id` (the daemon's own events on the stream) is not
    // part of `POST /v1/events`'s body, and no unlisted field is (a 400 names it).
    let event = &components["schemas"]["EventEnvelope"];
    assert!(event["properties"]["actor"].is_object(), "{event}");
    assert!(event["properties"]["persona_id"].is_null(), "{event}");
    assert_eq!(event["additionalProperties"], false, "{event}");
}

/// What the document says of an error is what the daemon answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_has_the_documented_shape() {
    let dir = temp_dir("openapi-error");
    let d = DaemonProcess::start(&dir, &[]);
    let (s, v) = call(&Client::new(), "GET", d.url("/v1/flows"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let error = v["error"].as_object().unwrap();
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{v}"
    );
    assert!(
        error
            .keys()
            .all(|k| ["code", "message", "field"].contains(&k.as_str())),
        "{v}"
    );
}
