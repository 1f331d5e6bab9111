//! The sandbox surface: the chat page and its WebSocket. A text frame `{"text": "..."}` becomes
//! a durable `user_message` event from the tab's actor; `send_message` commands to the
//! connector come back as `{"type": "message", "text": "..."}` frames.

use std::sync::Arc;

use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_ws::Message;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Kind};
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized};
use crate::auth::{AuthError, Scope};
use crate::connectors::Status;
use crate::daemon::{Daemon, Ingested};
use crate::domain::{Event, Idn};
use crate::sandbox::hub::ToPage;
use crate::sandbox::page::PAGE;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(page).service(connectors).service(socket);
}

/// The sandbox chat page.
///
/// It reads a token from its URL fragment (`/sandbox#token=sbt_…`).
#[utoipa::path(
    tag = "sandbox",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
#[get("/sandbox")]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SocketQuery {
    /// A running sandbox connector of the account.
    connector_idn: String,
    /// The user on the page (1 to 128 bytes).
    external_id: String,
    /// A token with `events:write` (a browser's WebSocket cannot send headers); not needed
    /// where `sandbox.without_token` lets a loopback page in.
    token: Option<String>,
}

/// Whether `host` (a `Host` header, or an `Origin`'s host) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The account a socket acts for: its token's; or, without one, the home account when the
/// config opens the sandbox without a token and the page is this machine's own (the `Host`
/// and the `Origin` both loopback, so a page elsewhere, or a DNS-rebound name, is refused).
async fn socket_account(
    d: &Daemon,
    req: &HttpRequest,
    token: Option<&str>,
) -> Result<Idn, ApiError> {
    if let Some(t) = token {
        let p = d.authenticate(t).await?;
        p.need(Scope::EventsWrite)?;
        return Ok(p.account);
    }
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let host_ok = header(actix_web::http::header::HOST).is_some_and(|h| loopback_host(&h));
    let origin_ok = header(actix_web::http::header::ORIGIN).is_none_or(|o| {
        o.split_once("://")
            .is_some_and(|(_, rest)| loopback_host(rest.split('/').next().unwrap_or_default()))
    });
    if d.config()
        .sandbox
        .open_without_token(d.config().http.listen)
        && host_ok
        && origin_ok
    {
        Ok(d.home_account())
    } else {
        Err(AuthError::Missing.into())
    }
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
/// from a loopback page where `sandbox.without_token` allows it.
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
async fn connectors(d: D, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let token = super::auth::bearer(&req);
    let account = socket_account(&d, &req, token.as_deref()).await?;
    let list: Vec<_> = d
        .connectors(&account, Some("sandbox"))
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
/// `events:write` (the `token` parameter: a browser's WebSocket cannot send headers), or none
/// from a loopback page where `sandbox.without_token` allows it.
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
    d: D,
    req: HttpRequest,
    body: web::Payload,
    q: web::Query<SocketQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = socket_account(&d, &req, q.token.as_deref()).await?;
    let connector = Idn::parse("connector_idn", &q.connector_idn)
        .map_err(|e| ApiError::invalid("connector_idn", e.reason))?;
    if q.external_id.is_empty() || q.external_id.len() > 128 {
        return Err(ApiError::invalid("external_id", "must be 1 to 128 bytes"));
    }
    match d.find_connector(&account, "sandbox", connector.as_str()) {
        None => {
            return Err(ApiError::new(
                Kind::NotFound,
                "unknown_connector",
                format!("no sandbox connector {connector}"),
            )
            .field("connector_idn"))
        }
        Some(c) if c.status != Status::Running => {
            return Err(ApiError::new(
                Kind::Conflict,
                "connector_stopped",
                format!("sandbox connector {connector} is stopped"),
            )
            .field("connector_idn"))
        }
        Some(_) => {}
    }
    let (response, mut session, mut stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::invalid("upgrade", e.to_string()))?;
    let sandbox = Idn::known("sandbox");
    let external_id = q.external_id.clone();
    let persona = d.persona_of(&account, &sandbox, &external_id);
    let (sock, mut outbox) = d.sandbox_join(&account, &connector, persona);
    let daemon = d.get_ref().clone();
    let attached = ToPage::Attached {
        connector_idn: connector.to_string(),
        external_id: external_id.clone(),
        persona_id: persona.0.to_string(),
    };
    actix_rt::spawn(async move {
        let hello = serde_json::to_string(&attached).expect("page messages serialize");
        if session.text(hello).await.is_err() {
            daemon.sandbox_leave(&account, &connector, persona, sock);
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
                                    match daemon.ingest(e).await {
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
        daemon.sandbox_leave(&account, &connector, persona, sock);
        let _ = session.close(None).await;
    });
    Ok(response)
}
