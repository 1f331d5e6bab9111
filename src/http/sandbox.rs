//! The sandbox surface: the chat page and its WebSocket. A text frame `{"text": "..."}` becomes
//! a durable `user_message` event from the tab's actor; `send_message` commands to the
//! connector come back as `{"type": "message", "text": "..."}` frames.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use serde::Deserialize;

use super::error::{ApiError, Kind};
use crate::connectors::Status;
use crate::daemon::{Daemon, Ingested};
use crate::domain::{Event, Idn, PersonaId};
use crate::sandbox::hub::ToPage;
use crate::sandbox::page::PAGE;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox", web::get().to(page))
        .route("/sandbox/ws", web::get().to(socket));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketQuery {
    connector_idn: String,
    external_id: String,
}

#[derive(Deserialize)]
struct FromPage {
    text: String,
}

async fn socket(
    d: D,
    req: HttpRequest,
    body: web::Payload,
    q: web::Query<SocketQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = d.account();
    let connector = Idn::parse("connector_idn", &q.connector_idn)
        .map_err(|e| ApiError::invalid("connector_idn", e.reason))?;
    if q.external_id.is_empty() || q.external_id.len() > 128 {
        return Err(ApiError::invalid("external_id", "must be 1 to 128 bytes"));
    }
    match d.find_connector("sandbox", connector.as_str()) {
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
    let persona = PersonaId::derive(&account, &sandbox, &external_id);
    let (sock, mut outbox) = d.sandbox_join(&connector, persona);
    let daemon = d.get_ref().clone();
    let attached = ToPage::Attached {
        connector_idn: connector.to_string(),
        external_id: external_id.clone(),
        persona_id: persona.0.to_string(),
    };
    actix_rt::spawn(async move {
        let hello = serde_json::to_string(&attached).expect("page messages serialize");
        if session.text(hello).await.is_err() {
            daemon.sandbox_leave(&connector, persona, sock);
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
        daemon.sandbox_leave(&connector, persona, sock);
        let _ = session.close(None).await;
    });
    Ok(response)
}
