//! The one list of the API's routes the tests share: [`every_route`] (each needs a token, with a
//! request that names things by the ids given) and [`OUTSIDE_EVERY_ROUTE`], the few it leaves out.
//! `tests/auth.rs` drives the first; `tests/openapi.rs` checks that both together are exactly the
//! operations of the OpenAPI document.
#![allow(dead_code)]

use serde_json::{json, Value};

/// The routes [`every_route`] leaves out, as `(method, path template)`: the probes, the
/// document, the sandbox (its page needs no token, its socket and list take one, a ticket or the
/// daemon's own loopback page), the OAuth callback (bound to its state), `/metrics` (a token
/// only when `metrics.require_token` says so), the `api` connectors' incoming webhooks
/// (signed, or the connector's own token) and the web chat's API (a `newo_chat` client secret).
pub const OUTSIDE_EVERY_ROUTE: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/sandbox"),
    ("GET", "/sandbox/connectors"),
    ("GET", "/sandbox/ws"),
    ("POST", "/hooks/api/{account}/{connector}/{token}"),
    ("GET", "/api/internal/v1/talking-head/chat-settings"),
    ("POST", "/api/internal/v1/talking-head/create-actor"),
    ("POST", "/api/internal/v1/talking-head/send-actor-event"),
    ("GET", "/newo_chat/widget.js"),
    ("GET", "/newo_chat/socket.io.min.js"),
    ("GET", "/oauth/callback"),
];

/// Every route that needs a token, with a request body where it takes one: `connector` and
/// `letter` are the ids of a connector and a dead letter, the flow is `Bagent/Bflow`.
pub fn every_route(connector: &str, letter: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let flow = json!({"events": [{"idn": "user_message", "skill_idn": "S", "integration_idn": "sandbox"}]});
    let event = json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                       "event_idn": "user_message", "actor": {"external_id": "u"}, "arguments": {"text": "hi"}});
    vec![
        ("GET", "/v1/integrations".into(), None),
        ("GET", "/v1/integrations/sandbox".into(), None),
        ("GET", "/v1/integrations/sandbox/settings".into(), None),
        (
            "POST",
            "/v1/integrations/sandbox/settings".into(),
            Some(json!([])),
        ),
        ("GET", "/v1/integrations/sandbox/connectors".into(), None),
        (
            "POST",
            "/v1/integrations/sandbox/connectors".into(),
            Some(json!({"title": "x", "connector_idn": "x"})),
        ),
        (
            "GET",
            format!("/v1/integrations/connectors/{connector}"),
            None,
        ),
        (
            "PUT",
            format!("/v1/integrations/connectors/{connector}"),
            Some(json!({"title": "t"})),
        ),
        (
            "POST",
            format!("/v1/integrations/connectors/{connector}/settings"),
            Some(json!([])),
        ),
        (
            "POST",
            format!("/v1/integrations/connectors/{connector}/stop"),
            None,
        ),
        (
            "POST",
            format!("/v1/integrations/connectors/{connector}/run"),
            None,
        ),
        (
            "POST",
            format!("/v1/integrations/connectors/{connector}/rotate-secret"),
            Some(json!({"overlap_seconds": 60})),
        ),
        (
            "GET",
            format!("/v1/integrations/connectors/{connector}/commands"),
            None,
        ),
        (
            "POST",
            format!("/v1/integrations/connectors/{connector}/commands/ack"),
            Some(json!({"ids": []})),
        ),
        (
            "DELETE",
            format!("/v1/integrations/connectors/{connector}"),
            None,
        ),
        ("GET", "/v1/flows".into(), None),
        ("GET", "/v1/flows/Bagent/Bflow".into(), None),
        ("PUT", "/v1/flows/Bagent/Bflow".into(), Some(flow)),
        ("POST", "/v1/flows/Bagent/Bflow/runner-secret".into(), None),
        ("DELETE", "/v1/flows/Bagent/Bflow".into(), None),
        ("POST", "/v1/events".into(), Some(event)),
        (
            "POST",
            "/v1/commands".into(),
            Some(
                json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "command_idn": "send_message", "persona_id": uuid::Uuid::nil()}),
            ),
        ),
        (
            "POST",
            format!("/v1/invocations/{}/result", uuid::Uuid::nil()),
            Some(json!({"v": 1, "outcome": "completed"})),
        ),
        (
            "GET",
            "/v1/routes/explain?integration_idn=sandbox&connector_idn=chat&event_idn=user_message"
                .into(),
            None,
        ),
        ("GET", "/v1/sessions".into(), None),
        ("GET", "/v1/dead-letters".into(), None),
        ("GET", format!("/v1/dead-letters/{letter}"), None),
        ("POST", format!("/v1/dead-letters/{letter}/replay"), None),
        ("GET", "/v1/timers".into(), None),
        ("GET", "/v1/accounts".into(), None),
        ("POST", "/v1/accounts".into(), Some(json!({"idn": "zzz"}))),
        ("GET", "/v1/tokens".into(), None),
        (
            "POST",
            "/v1/tokens".into(),
            Some(json!({"name": "n", "scopes": ["read"]})),
        ),
        ("DELETE", "/v1/tokens/AAAAAAAAAAAA".into(), None),
        ("POST", "/sandbox/ticket".into(), None),
        ("GET", "/v1/credentials".into(), None),
        (
            "POST",
            "/v1/credentials".into(),
            Some(json!({"name": "n", "type": "bearer"})),
        ),
        ("GET", format!("/v1/credentials/{connector}"), None),
        (
            "PATCH",
            format!("/v1/credentials/{connector}"),
            Some(json!({"name": "m"})),
        ),
        ("DELETE", format!("/v1/credentials/{connector}"), None),
        (
            "POST",
            format!("/v1/credentials/{connector}/oauth/start"),
            None,
        ),
    ]
}
