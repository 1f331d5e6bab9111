//! The public web-chat API at the Agent Creator paths (`/api/internal/v1/talking-head/…`):
//! `GET chat-settings?client_secret=` → `{connector_idn}`; `POST create-actor` → the actor
//! (idempotent per `external_id`: its id is the persona id events of that actor get);
//! `POST send-actor-event` → the event, through the durable intake. No token: the client
//! secret authenticates (401 when no connector has it). In order: the per-IP rate (the
//! `X-Forwarded-For` client behind a trusted proxy, [`super::client_ip`]), the body
//! (at most `newo_chat.max_body_bytes`, 400 naming the field), the per-secret rate, the secret,
//! the request's `Origin` among the connector's domains (403 otherwise; a request without an
//! `Origin`, not a browser's, is not held to it), `connector_idn` the secret's. Answers carry
//! CORS headers for the connector's origins only; a preflight (`OPTIONS`, no secret) is answered
//! for an origin some connector lists. The embeddable widget (`/newo_chat/widget.js`) and the
//! official socket.io browser client it loads (`/newo_chat/socket.io.min.js`, 4.8.x, MIT,
//! vendored from npm) are served here too.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{get, post, web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

use super::refusal::ChatRefusal;
use super::store::{self, ActorRow};
use super::{Chat, IDN};
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, TooLarge, TooManyRequests, Unauthorized,
};
use crate::domain::{ConnectorKey, Event, Idn};
use crate::intake::{Ingested, Intake};
use crate::store::Written;
use crate::telemetry::handles;

/// Where the API is.
pub const PREFIX: &str = "/api/internal/v1/talking-head";
/// Longest `external_id`, in bytes.
const MAX_EXTERNAL_ID: usize = 128;
/// Longest actor name, in bytes.
const MAX_NAME: usize = 256;
/// Most arguments of one event.
const MAX_ARGUMENTS: usize = 64;
/// Events only the daemon emits: a web client may not send them.
const DAEMON_EVENTS: &[&str] = &[
    "result_success",
    "result_error",
    "agent_message",
    "conversation_started",
    "conversation_ended",
];

type S = web::Data<Chat>;

/// Registers the routes (documented) and their CORS preflights (not documented).
pub fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(chat_settings)
        .service(create_actor)
        .service(send_actor_event)
        .service(widget)
        .service(socket_io_client);
    for path in ["chat-settings", "create-actor", "send-actor-event"] {
        cfg.route(
            &format!("{PREFIX}/{path}"),
            web::route().method(Method::OPTIONS).to(preflight),
        );
    }
}

/// The connector of a client secret.
#[derive(Serialize, ToSchema)]
struct ConnectorSettings {
    #[schema(example = "web_chat")]
    connector_idn: String,
}

/// An actor: a customer of the web client, on one connector.
#[derive(Serialize, ToSchema)]
struct Actor {
    /// The actor's id (`user_actor_id` in commands): the persona id its events get.
    id: String,
    external_id: String,
    name: String,
    connector_idn: String,
    created_at: String,
}

/// `create-actor`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CreateActor {
    /// The customer actor's name.
    name: String,
    /// Unique identifier of your customer (1 to 128 bytes).
    external_id: String,
    connector_idn: String,
    client_secret: String,
}

/// One argument of an event.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ArgumentBody {
    name: String,
    /// A string (numbers and booleans are taken as their JSON text).
    value: String,
}

/// `send-actor-event`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SendActorEvent {
    client_secret: String,
    connector_idn: String,
    /// An event the `newo_chat` catalog declares (`onboarding_started`, `agent_request`,
    /// `user_message`, …), or a custom one; not one the daemon emits (`result_success`, …).
    #[schema(example = "onboarding_started")]
    event_idn: String,
    external_id: String,
    arguments: Vec<ArgumentBody>,
}

/// An event taken in.
#[derive(Serialize, ToSchema)]
struct EventAccepted {
    id: Uuid,
    /// `accepted`
    #[schema(example = "accepted")]
    status: &'static str,
}

/// A refusal, counted.
fn refused(r: ChatRefusal) -> ApiError {
    handles::rejected(r.code());
    r.into()
}

/// The request's `Origin`, when it sent one.
fn origin_of(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What one request learned on its way: the origin to answer CORS for.
struct Cors(Option<String>);

/// The answer, or the error's, with CORS headers when the origin was allowed.
fn finish(result: Result<HttpResponse, ApiError>, cors: Cors) -> HttpResponse {
    let mut res = result.unwrap_or_else(|e| e.error_response());
    if let Some(origin) = cors.0.and_then(|o| HeaderValue::from_str(&o).ok()) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// The checks every request passes before it acts: the per-IP rate first (the client's
/// address behind a trusted proxy).
fn by_ip(chat: &Chat, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(peer) = req.peer_addr() {
        let forwarded = req
            .headers()
            .get_all(header::X_FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok());
        chat.by_ip(peer.ip(), forwarded).map_err(refused)?;
    }
    Ok(())
}

/// Before anything is known of the connector, a refusal is readable by a page some
/// connector serves.
fn cors_of_any(chat: &Chat, req: &HttpRequest) -> Cors {
    Cors(origin_of(req).filter(|o| chat.any_allows(o)))
}

/// The connector of `secret`, the request's origin held to its domains (CORS for it then).
async fn authorize(
    chat: &Chat,
    req: &HttpRequest,
    secret: &str,
    cors: &mut Cors,
) -> Result<ConnectorKey, ApiError> {
    let key = chat.connector(secret).await.map_err(refused)?;
    if let Some(o) = origin_of(req) {
        if !chat.allows(&key, &o) {
            cors.0 = None;
            return Err(refused(ChatRefusal::Origin(o)));
        }
        cors.0 = Some(o);
    }
    Ok(key)
}

/// A JSON object body, its fields read one by one naming the one at fault.
struct Fields(Map<String, Value>);

impl Fields {
    async fn read(chat: &Chat, body: Body) -> Result<Fields, ApiError> {
        let bytes = body.read().await?;
        if bytes.len() > chat.config.max_body_bytes {
            return Err(crate::api::body::Bounded::too_large(
                chat.config.max_body_bytes,
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Fields(m)),
            Ok(_) => Err(refused(ChatRefusal::invalid(
                "body",
                "must be a JSON object",
            ))),
            Err(e) => Err(refused(ChatRefusal::invalid(
                "body",
                format!("not JSON: {e}"),
            ))),
        }
    }

    /// A string field of 1 to `max` bytes.
    fn string(&self, field: &'static str, max: usize) -> Result<String, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(refused(ChatRefusal::invalid(field, "missing"))),
            Some(Value::String(s)) if s.is_empty() => {
                Err(refused(ChatRefusal::invalid(field, "empty")))
            }
            Some(Value::String(s)) if s.len() > max => Err(refused(ChatRefusal::invalid(
                field,
                format!("longer than {max} bytes"),
            ))),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(refused(ChatRefusal::invalid(field, "must be a string"))),
        }
    }
}

/// `connector_idn` is the secret's connector's.
fn same_connector(key: &ConnectorKey, given: &str) -> Result<(), ApiError> {
    if key.connector.as_str() == given {
        Ok(())
    } else {
        Err(refused(ChatRefusal::OtherConnector))
    }
}

fn actor_json(key: &ConnectorKey, row: ActorRow) -> Actor {
    Actor {
        id: row.persona,
        external_id: row.external_id,
        name: row.name,
        connector_idn: key.connector.to_string(),
        created_at: row.created_at,
    }
}

/// The connector of a client secret.
///
/// Answers the `connector_idn` of the `newo_chat` connector whose `client_secret` this is.
#[utoipa::path(
    tag = "web chat",
    params(("client_secret" = String, Query, description = "The connector's CLIENT_SECRET")),
    security(()),
    responses(
        (status = 200, description = "The connector", body = ConnectorSettings),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
    )
)]
#[get("/api/internal/v1/talking-head/chat-settings")]
async fn chat_settings(chat: S, req: HttpRequest) -> HttpResponse {
    let mut cors = cors_of_any(&chat, &req);
    let result = async {
        by_ip(&chat, &req)?;
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|_| refused(ChatRefusal::invalid("client_secret", "unreadable query")))?;
        let secret = query
            .iter()
            .find(|(k, _)| k == "client_secret")
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| refused(ChatRefusal::invalid("client_secret", "missing")))?;
        let key = authorize(&chat, &req, secret, &mut cors).await?;
        Ok(HttpResponse::Ok().json(ConnectorSettings {
            connector_idn: key.connector.to_string(),
        }))
    }
    .await;
    finish(result, cors)
}

/// Creates the actor of a customer, or answers the one of its `external_id`.
///
/// Idempotent per `external_id`: a second call answers the same actor (200), its name as
/// first given. The actor's `id` is the `user_actor_id` skills address commands with.
#[utoipa::path(
    tag = "web chat",
    request_body = CreateActor,
    security(()),
    responses(
        (status = 201, description = "Created", body = Actor),
        (status = 200, description = "The actor of this external_id, created before", body = Actor),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 429, response = TooManyRequests),
    )
)]
#[post("/api/internal/v1/talking-head/create-actor")]
async fn create_actor(chat: S, req: HttpRequest, body: Body) -> HttpResponse {
    let mut cors = cors_of_any(&chat, &req);
    let result = async {
        by_ip(&chat, &req)?;
        let f = Fields::read(&chat, body).await?;
        let secret = f.string("client_secret", 256)?;
        let connector = f.string("connector_idn", 128)?;
        let external_id = f.string("external_id", MAX_EXTERNAL_ID)?;
        let name = f.string("name", MAX_NAME)?;
        let key = authorize(&chat, &req, &secret, &mut cors).await?;
        same_connector(&key, &connector)?;
        if let Some(row) = chat.actor(&key, &external_id).await? {
            return Ok(HttpResponse::Ok().json(actor_json(&key, row)));
        }
        let persona = chat
            .persona_key
            .derive(&key.account, &Idn::known(IDN), &external_id);
        let row = ActorRow {
            external_id: external_id.clone(),
            persona: persona.0.to_string(),
            name,
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        let store = chat.store().map_err(refused)?;
        match store::put_actor(store, &key, row.clone()).await? {
            Written::Done => Ok(HttpResponse::Created().json(actor_json(&key, row))),
            Written::Duplicate => {
                let row = chat.actor(&key, &external_id).await?.unwrap_or(row);
                Ok(HttpResponse::Ok().json(actor_json(&key, row)))
            }
        }
    }
    .await;
    finish(result, cors)
}

/// An argument's value: a string, or a number's or boolean's JSON text.
fn argument_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Sends an event of an actor to the connector's flows.
///
/// The event (`onboarding_started`, `agent_request`, `user_message`, …) enters through the
/// durable intake for the actor's persona: 202 once it is durable. Events the daemon emits
/// (`result_success`, `result_error`, `agent_message`, `conversation_*`) are refused (403).
#[utoipa::path(
    tag = "web chat",
    request_body = SendActorEvent,
    security(()),
    responses(
        (status = 202, description = "Durable, handed to the engine", body = EventAccepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 429, response = TooManyRequests),
    )
)]
#[post("/api/internal/v1/talking-head/send-actor-event")]
async fn send_actor_event(
    chat: S,
    intake: web::Data<Arc<dyn Intake>>,
    req: HttpRequest,
    body: Body,
) -> HttpResponse {
    let mut cors = cors_of_any(&chat, &req);
    let result = async {
        by_ip(&chat, &req)?;
        let f = Fields::read(&chat, body).await?;
        let secret = f.string("client_secret", 256)?;
        let connector = f.string("connector_idn", 128)?;
        let external_id = f.string("external_id", MAX_EXTERNAL_ID)?;
        let event_idn = f.string("event_idn", 128)?;
        let event = Idn::parse("event_idn", &event_idn)
            .map_err(|e| refused(ChatRefusal::invalid("event_idn", e.reason)))?;
        let mut arguments = Vec::new();
        match f.0.get("arguments") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) if list.len() <= MAX_ARGUMENTS => {
                for (i, a) in list.iter().enumerate() {
                    let name = a
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty());
                    let value = a.get("value").and_then(argument_value);
                    match (name, value) {
                        (Some(n), Some(v)) => arguments.push((n.to_owned(), v)),
                        (None, _) => {
                            return Err(refused(ChatRefusal::invalid(
                                format!("arguments[{i}].name"),
                                "missing or not a string",
                            )))
                        }
                        (_, None) => {
                            return Err(refused(ChatRefusal::invalid(
                                format!("arguments[{i}].value"),
                                "missing, or not a string, number or boolean",
                            )))
                        }
                    }
                }
            }
            Some(Value::Array(_)) => {
                return Err(refused(ChatRefusal::invalid(
                    "arguments",
                    format!("at most {MAX_ARGUMENTS} arguments"),
                )))
            }
            Some(_) => {
                return Err(refused(ChatRefusal::invalid(
                    "arguments",
                    "must be an array of {name, value}",
                )))
            }
        }
        let key = authorize(&chat, &req, &secret, &mut cors).await?;
        same_connector(&key, &connector)?;
        if DAEMON_EVENTS.contains(&event.as_str()) {
            return Err(refused(ChatRefusal::EventNotAllowed(event.to_string())));
        }
        let actor = chat
            .actor(&key, &external_id)
            .await?
            .ok_or_else(|| refused(ChatRefusal::UnknownActor))?;
        let mut e = Event::from_actor(
            key.account.clone(),
            key.integration.clone(),
            key.connector.clone(),
            event,
            external_id,
        );
        if let crate::domain::Target::Actor(a) = &mut e.target {
            a.name = Some(actor.name);
        }
        for (n, v) in arguments {
            e.arguments.push(n, v);
        }
        match intake.ingest(e).await? {
            Ingested::Accepted(id) | Ingested::Duplicate(id) => {
                Ok(HttpResponse::Accepted().json(EventAccepted {
                    id,
                    status: "accepted",
                }))
            }
        }
    }
    .await;
    finish(result, cors)
}

/// A CORS preflight: allowed for an origin some `newo_chat` connector lists.
async fn preflight(chat: S, req: HttpRequest) -> HttpResponse {
    if let Err(e) = by_ip(&chat, &req) {
        return e.error_response();
    }
    let Some(origin) = origin_of(&req).filter(|o| chat.any_allows(o)) else {
        handles::rejected(ChatRefusal::Origin(String::new()).code());
        return HttpResponse::Forbidden().finish();
    };
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .insert_header((header::VARY, "Origin"))
        .finish()
}

/// The widget's script.
const WIDGET: &str = include_str!("widget.js");
/// The official socket.io browser client (npm `socket.io-client`, `dist/socket.io.min.js`).
const SOCKET_IO_CLIENT: &str = include_str!("socket.io.min.js");

fn script(text: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(text)
}

/// The embeddable web-chat widget.
///
/// A site includes `<script src=".../newo_chat/widget.js" data-client-secret="…"
/// data-socket="<socket.io base>"></script>` to get a chat window on its `newo_chat`
/// connector (`data-external-id`, `data-name`, `data-api` optional).
#[utoipa::path(
    tag = "web chat",
    security(()),
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String))
)]
#[get("/newo_chat/widget.js")]
async fn widget() -> HttpResponse {
    script(WIDGET)
}

/// The socket.io browser client the widget loads (the official one, 4.8.x).
#[utoipa::path(
    tag = "web chat",
    security(()),
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String))
)]
#[get("/newo_chat/socket.io.min.js")]
async fn socket_io_client() -> HttpResponse {
    script(SOCKET_IO_CLIENT)
}
