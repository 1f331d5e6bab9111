//! The data plane: `POST /v1/events` (202 once durable), `POST /v1/commands`, and
//! `POST /v1/invocations/{id}/result` for runners that answer later.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::body::RawBody;
use super::body::{decode, encoding};
use super::error::{ApiError, Kind};
use crate::daemon::operations::CommandError;
use crate::daemon::{Daemon, Ingested};
use crate::domain::PersonaId;
use crate::wire::envelope::{CommandEnvelope, EventEnvelope};
use crate::wire::invocation::ResultWire;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/events", web::post().to(post_event))
        .route("/v1/commands", web::post().to(post_command));
}

/// Routes with dynamic segments, registered after the static ones.
pub fn dynamic_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/invocations/{id}/result", web::post().to(post_result));
}

async fn post_event(d: D, req: HttpRequest, body: RawBody) -> Result<HttpResponse, ApiError> {
    let enc = encoding(&req)?;
    let limits = d.limits();
    let event = match enc
        .decode::<EventEnvelope>(&body)
        .and_then(|e| e.into_domain(limits))
    {
        Ok(e) => e,
        Err(e) => {
            // Nothing is lost: the bytes are kept as a dead letter, with the reason.
            d.record_malformed(
                e.to_string(),
                enc.content_type().to_owned(),
                body.0.to_vec(),
            );
            return Err(e.into());
        }
    };
    match d.ingest(event).await? {
        Ingested::Accepted(id) => {
            Ok(HttpResponse::Accepted().json(json!({"id": id, "status": "accepted"})))
        }
        Ingested::Duplicate(id) => {
            Ok(HttpResponse::Ok().json(json!({"id": id, "status": "duplicate"})))
        }
    }
}

async fn post_command(d: D, req: HttpRequest, body: RawBody) -> Result<HttpResponse, ApiError> {
    let env: CommandEnvelope = decode(&req, &body)?;
    let persona = env.persona_id;
    let command = env.into_domain(d.limits())?;
    if let Some(inv) = command.invocation_id {
        return match d.command_for_invocation(inv, command) {
            Ok(()) => {
                Ok(HttpResponse::Accepted()
                    .json(json!({"status": "accepted", "invocation_id": inv})))
            }
            Err(CommandError::NotWaiting(_)) => Err(ApiError::new(
                Kind::NotFound,
                "unknown_invocation",
                format!("no invocation {inv} is waiting for commands"),
            )
            .field("invocation_id")),
            Err(CommandError::Refused(r)) => Err(r.into()),
        };
    }
    let persona = persona.ok_or_else(|| {
        ApiError::invalid("persona_id", "required for a command outside an invocation")
    })?;
    let act = d.send_command(command, PersonaId(persona))?;
    Ok(HttpResponse::Accepted().json(json!({"status": "accepted", "command_act_id": act})))
}

async fn post_result(
    d: D,
    path: web::Path<String>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::invalid("id", "not a UUID"))?;
    let wire: ResultWire = decode(&req, &body)?;
    let answer = wire.into_domain(d.limits())?;
    d.answer_invocation(id, answer.outcome, answer.commands)?;
    Ok(HttpResponse::Accepted().json(json!({"status": "accepted"})))
}
