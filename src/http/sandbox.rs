//! The sandbox surface: the chat page and its WebSocket. A text frame `{"text": "..."}` becomes
//! a durable `user_message` event from the tab's actor; `send_message` commands to the
//! connector come back as `{"type": "message", "text": "..."}` frames. The page may not be
//! framed; a page with a token trades it for a single-use ticket its socket's URL carries; a
//! page without one gets in only where the config allows it and only from the daemon's own
//! origin.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use actix_ws::Message;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized};
use crate::api::error::{ApiError, Kind};
use crate::auth::{AuthError, Scope};
use crate::connectors::Status;
use crate::daemon::{Daemon, Ingested};
use crate::domain::{Event, Idn};
use crate::sandbox::hub::ToPage;
use crate::sandbox::page::PAGE;
use crate::sandbox::ticket::TICKET_TTL;

use crate::api::caller::Caller;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
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
async fn sandbox_ticket(d: D, c: Caller) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::EventsWrite)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Ticket {
            ticket: d.sandbox_ticket(account),
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

/// Whether `origin` (an `Origin` header) is the daemon's own: the scheme, a loopback host and
/// the port of `listener`, the listener the request came in on (the listener's own address, or
/// `localhost` when it is a loopback one; any loopback address when it listens on all).
fn own_origin(origin: &str, listener: SocketAddr, secure: bool) -> bool {
    let scheme = if secure { "https" } else { "http" };
    let Some(authority) = origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
    else {
        return false;
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok(),
        None => Some(if secure { 443 } else { 80 }),
    };
    if port != Some(listener.port()) {
        return false;
    }
    let on = listener.ip();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() && (ip == on || on.is_unspecified()),
        Err(_) => {
            host.eq_ignore_ascii_case("localhost") && (on.is_loopback() || on.is_unspecified())
        }
    }
}

/// The account a socket or the connector list acts for: a ticket's; a token's (the
/// `Authorization` header); or, with neither, the home account when the config opens the
/// sandbox without a token, the `Host` is loopback (not a DNS-rebound name) and the `Origin`,
/// when there is one, is the daemon's own (not another local server's page: 403).
async fn socket_account(
    d: &Daemon,
    req: &HttpRequest,
    ticket: Option<&str>,
) -> Result<Idn, ApiError> {
    if let Some(t) = ticket {
        return d.sandbox_redeem(t).ok_or_else(|| {
            ApiError::new(
                Kind::Unauthorized,
                "invalid_ticket",
                "the ticket is unknown, used or expired: POST /sandbox/ticket for a new one",
            )
            .field("ticket")
        });
    }
    if let Some(t) = crate::api::caller::bearer(req) {
        let p = d.authenticate(&t).await?;
        p.need(Scope::EventsWrite)?;
        return Ok(p.account);
    }
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host_ok = header(header::HOST).is_some_and(loopback_host);
    if !(d
        .config()
        .sandbox
        .open_without_token(d.config().http.listen)
        && host_ok)
    {
        return Err(AuthError::Missing.into());
    }
    let listener = req.app_config().local_addr();
    let secure = req.app_config().secure();
    match header(header::ORIGIN) {
        Some(origin) if !own_origin(origin, listener, secure) => Err(ApiError::new(
            Kind::Forbidden,
            "foreign_origin",
            format!(
                "without a token the sandbox takes only its own page (port {}), not a page of {origin}",
                listener.port()
            ),
        )
        .field("Origin")),
        _ => Ok(d.home_account()),
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
async fn connectors(d: D, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let account = socket_account(&d, &req, None).await?;
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
    d: D,
    req: HttpRequest,
    body: web::Payload,
    q: web::Query<SocketQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = socket_account(&d, &req, q.ticket.as_deref()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `origin` is the daemon's own on a plain-HTTP listener at `listener`.
    fn check(listener: &str, origin: &str) -> bool {
        own_origin(origin, listener.parse().unwrap(), false)
    }

    #[test]
    fn only_the_listeners_own_origin_is_the_daemons() {
        let cases = [
            ("127.0.0.1:8080", "http://127.0.0.1:8080", true),
            ("127.0.0.1:8080", "http://localhost:8080", true),
            ("127.0.0.1:8080", "http://LOCALHOST:8080", true),
            ("[::1]:8080", "http://[::1]:8080", true),
            ("[::1]:8080", "http://localhost:8080", true),
            ("127.0.0.1:80", "http://127.0.0.1", true),
            ("0.0.0.0:8080", "http://127.0.0.1:8080", true),
            ("0.0.0.0:8080", "http://[::1]:8080", true),
            // Another local server's page: another port, another loopback address.
            ("127.0.0.1:8080", "http://127.0.0.1:3000", false),
            ("127.0.0.1:8080", "http://localhost:3000", false),
            ("127.0.0.1:8080", "http://127.0.0.1", false),
            ("127.0.0.1:8080", "http://127.0.0.2:8080", false),
            ("127.0.0.1:8080", "http://[::1]:8080", false),
            // Another scheme, another site, nothing parsable.
            ("127.0.0.1:8080", "https://127.0.0.1:8080", false),
            ("127.0.0.1:8080", "http://attacker.example:8080", false),
            (
                "127.0.0.1:8080",
                "http://localhost.attacker.example:8080",
                false,
            ),
            (
                "127.0.0.1:8080",
                "http://127.0.0.1:8080.attacker.example",
                false,
            ),
            ("127.0.0.1:8080", "null", false),
            ("127.0.0.1:8080", "http://[::1:8080", false),
            ("127.0.0.1:8080", "", false),
            ("10.0.0.5:8080", "http://10.0.0.5:8080", false),
            ("10.0.0.5:8080", "http://localhost:8080", false),
        ];
        for (listener, origin, own) in cases {
            assert_eq!(check(listener, origin), own, "{origin} on {listener}");
        }
        assert!(own_origin(
            "https://localhost:8443",
            "127.0.0.1:8443".parse().unwrap(),
            true
        ));
    }
}
