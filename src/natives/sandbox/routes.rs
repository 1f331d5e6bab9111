//! The sandbox's routes: the chat page and its WebSocket. A text frame `{"text": "..."}`
//! becomes a durable `user_message` event from the tab's actor (through the daemon's intake);
//! `send_message` commands to the connector come back as `{"type": "message", "text": "..."}`
//! frames. The page may not be framed; a page with a token trades it for a single-use ticket
//! its socket's URL carries; a page without one gets in only where the config allows it and
//! only from the daemon's own origin ([`super::access`]).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use actix_ws::Message;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::socket_account;
use super::hub::{SandboxHub, ToPage};
use super::page::PAGE;
use super::ticket::{Tickets, TICKET_TTL};
use super::SandboxConfig;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Kind};
use crate::api::responses::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized};
use crate::auth::Scope;
use crate::connectors::{Directory, Status};
use crate::domain::{Event, Idn, PersonaKey};
use crate::intake::{Ingested, Intake};

/// What the sandbox's routes use (app data, registered with them).
pub struct Surface {
    pub hub: Arc<SandboxHub>,
    pub tickets: Tickets,
    pub config: SandboxConfig,
    pub directory: Arc<Directory>,
    pub persona_key: PersonaKey,
}

type S = web::Data<Surface>;

/// The daemon's durable intake (app data the HTTP server registers).
type In = web::Data<Arc<dyn Intake>>;

/// Registers the routes, each documented.
pub fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(page)
        .service(connectors)
        .service(sandbox_ticket)
        .service(socket);
}

/// The sandbox chat page.
///
/// It reads a token from its URL fragment (`/sandbox#token=sbt_…`). No page may frame it.
#[utoipa::path(
    tag = "sandbox",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
#[get("/sandbox")]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"))
        .body(PAGE)
}

/// A ticket for one sandbox socket.
#[derive(Serialize, ToSchema)]
struct Ticket {
    /// Opens one socket (`/sandbox/ws?ticket=…`), within `expires_in_ms`.
    ticket: String,
    expires_in_ms: u64,
}

/// A single-use ticket that opens one sandbox socket of the token's account.
///
/// The page sends its token here, in the `Authorization` header, and puts the ticket in its
/// socket's URL: a URL that proxies log then holds nothing that opens anything.
#[utoipa::path(
    tag = "sandbox",
    security(("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "The ticket", body = Ticket),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
#[post("/sandbox/ticket")]
async fn sandbox_ticket(s: S, c: Caller) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::EventsWrite)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Ticket {
            ticket: s.tickets.issue(account.clone()),
            expires_in_ms: TICKET_TTL.as_millis() as u64,
        }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SocketQuery {
    /// A running sandbox connector of the account.
    connector_idn: String,
    /// The user on the page (1 to 128 bytes).
    external_id: String,
    /// A ticket from `POST /sandbox/ticket` (a browser's WebSocket cannot send headers); not
    /// needed with a token in the `Authorization` header, nor where `sandbox.without_token`
    /// lets the daemon's own loopback page in.
    ticket: Option<String>,
}

/// A sandbox connector the page may talk to.
#[derive(Serialize, ToSchema)]
struct SandboxConnector<'a> {
    connector_idn: &'a str,
    title: String,
}

/// The running sandbox connectors the page may talk to.
///
/// Under the socket's rule: a token with `events:write` in the `Authorization` header, or none
/// from the daemon's own loopback page where `sandbox.without_token` allows it.
#[utoipa::path(
    tag = "sandbox",
    security((), ("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "The connectors", body = Vec<SandboxConnector>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
#[get("/sandbox/connectors")]
async fn connectors(s: S, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let account = socket_account(&s, &req, None).await?;
    let list: Vec<_> = s
        .directory
        .list(&account, Some("sandbox"))
        .into_iter()
        .filter(|c| c.status == Status::Running && !c.internal)
        .collect();
    Ok(HttpResponse::Ok().json(
        list.iter()
            .map(|c| SandboxConnector {
                connector_idn: c.key.connector.as_str(),
                title: c.title.clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
struct FromPage {
    text: String,
}

/// The sandbox WebSocket (an upgrade; not a JSON operation).
///
/// A text frame `{"text": "..."}` becomes a durable `user_message` event from `external_id`;
/// the daemon sends `{"type": "attached" | "message" | "ack" | "error", …}` frames. Needs
/// `events:write`: a `ticket` (a browser's WebSocket cannot send headers) or the token in the
/// `Authorization` header; or none from the daemon's own loopback page where
/// `sandbox.without_token` allows it (another origin: 403).
#[utoipa::path(
    tag = "sandbox",
    params(SocketQuery),
    security((), ("bearer" = ["events:write"])),
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
#[get("/sandbox/ws")]
async fn socket(
    s: S,
    intake: In,
    req: HttpRequest,
    body: web::Payload,
    q: web::Query<SocketQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = socket_account(&s, &req, q.ticket.as_deref()).await?;
    let connector = Idn::parse("connector_idn", &q.connector_idn)
        .map_err(|e| ApiError::invalid("connector_idn", e.reason))?;
    if q.external_id.is_empty() || q.external_id.len() > 128 {
        return Err(ApiError::invalid("external_id", "must be 1 to 128 bytes"));
    }
    let running = || {
        s.directory
            .find(&account, "sandbox", connector.as_str())
            .map(|c| c.status == Status::Running)
    };
    match running() {
        None => {
            return Err(ApiError::new(
                Kind::NotFound,
                "unknown_connector",
                format!("no sandbox connector {connector}"),
            )
            .field("connector_idn"))
        }
        Some(false) => {
            return Err(ApiError::new(
                Kind::Conflict,
                "connector_stopped",
                format!("sandbox connector {connector} is stopped"),
            )
            .field("connector_idn"))
        }
        Some(true) => {}
    }
    let (response, mut session, mut stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::invalid("upgrade", e.to_string()))?;
    let sandbox = Idn::known("sandbox");
    let external_id = q.external_id.clone();
    let persona = s.persona_key.derive(&account, &sandbox, &external_id);
    let hub = s.hub.clone();
    let (sock, mut outbox) = hub.join(&account, &connector, persona);
    if running() != Some(true) {
        // Stopped as the socket opened: it closes at once, as it would have a moment later.
        hub.leave(&account, &connector, persona, sock);
    }
    let intake = intake.get_ref().clone();
    let attached = ToPage::Attached {
        connector_idn: connector.to_string(),
        external_id: external_id.clone(),
        persona_id: persona.0.to_string(),
    };
    actix_rt::spawn(async move {
        let hello = serde_json::to_string(&attached).expect("page messages serialize");
        if session.text(hello).await.is_err() {
            hub.leave(&account, &connector, persona, sock);
            return;
        }
        loop {
            tokio::select! {
                out = outbox.recv() => {
                    let Some(out) = out else { break };
                    let text = serde_json::to_string(&out).expect("page messages serialize");
                    if session.text(text).await.is_err() {
                        break;
                    }
                }
                msg = stream.recv() => {
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            let reply = match serde_json::from_str::<FromPage>(&t) {
                                Ok(m) if !m.text.trim().is_empty() => {
                                    let e = Event::from_actor(account.clone(), sandbox.clone(), connector.clone(), Idn::known("user_message"), external_id.clone())
                                        .with_argument("text", m.text);
                                    match intake.ingest(e).await {
                                        Ok(Ingested::Accepted(id) | Ingested::Duplicate(id)) => ToPage::Ack { id: id.to_string() },
                                        Err(e) => ToPage::Error { message: e.to_string() },
                                    }
                                }
                                _ => ToPage::Error { message: "send {\"text\": \"...\"}".into() },
                            };
                            let text = serde_json::to_string(&reply).expect("page messages serialize");
                            if session.text(text).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Ping(p))) => {
                            if session.pong(&p).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
        hub.leave(&account, &connector, persona, sock);
        let _ = session.close(None).await;
    });
    Ok(response)
}
