//! The data plane: `POST /v1/events` (202 once durable), `POST /v1/commands`, and
//! `POST /v1/invocations/{id}/result` for runners that answer later.

use std::sync::Arc;

use actix_web::{post, web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, TooManyRequests,
    Unauthorized, Unavailable, UnsupportedMediaType,
};
use super::views::{Accepted, CommandAccepted, EventAccepted};
use crate::api::body::{content_type, Body, Bounded};
use crate::api::body::{decode, encoding};
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Kind};
use crate::auth::{AuthError, Scope};
use crate::daemon::operations::CommandError;
use crate::daemon::{Daemon, Ingested};
use crate::domain::{PersonaId, DEFAULT_ACCOUNT};
use crate::wire::envelope::{CommandEnvelope, EventEnvelope};
use crate::wire::invocation::ResultWire;
use crate::wire::EnvelopeError;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(post_event).service(post_command);
}

/// Routes with dynamic segments, registered after the static ones.
pub fn dynamic_routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(post_result);
}

/// The envelope's account, when it names one, must be the caller's; absent (the wire's
/// `default`) it is the caller's.
fn own_account(c: &Caller, named: &mut String) -> Result<(), ApiError> {
    if named.as_str() == c.account().as_str() || named.as_str() == DEFAULT_ACCOUNT {
        *named = c.account().to_string();
        return Ok(());
    }
    Err(ApiError::from(AuthError::WrongAccount {
        token: c.account().to_string(),
        named: named.clone(),
    })
    .field("account"))
}

/// Ingests an event: 202 once it is durable.
///
/// Needs `events:write`. The body is an event envelope in JSON or MessagePack
/// (`application/msgpack`); its `id` is ignored (the daemon makes one), `account` is the token's.
/// An `external_event_id` seen before answers 200 `duplicate` with the first event's id. A body
/// refused is kept as a dead letter.
#[utoipa::path(
    tag = "data",
    request_body(content = EventEnvelope, content_type = "application/json"),
    security(("bearer" = ["events:write"])),
    responses(
        (status = 202, description = "Accepted: durable", body = EventAccepted),
        (status = 200, description = "A duplicate of an earlier event", body = EventAccepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 408, response = RequestTimeout),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/events")]
async fn post_event(
    d: D,
    c: Caller,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::EventsWrite)?.clone();
    let content_type = content_type(&req).to_owned();
    // A body too large or of a type we do not read is refused, counted and kept (cut short)
    // as a dead letter, like one that does not decode: nothing sent is silently lost.
    let body = match body.read_bounded().await? {
        Bounded::Whole(b) => b,
        Bounded::TooLarge { head, limit } => {
            let e = Bounded::too_large(limit);
            d.record_refused_body(&account, "too_large", e.message.clone(), content_type, head);
            return Err(e);
        }
    };
    let enc = match encoding(&req) {
        Ok(enc) => enc,
        Err(e) => {
            d.record_refused_body(
                &account,
                "unsupported_media_type",
                e.message.clone(),
                content_type,
                body.to_vec(),
            );
            return Err(e);
        }
    };
    let limits = d.limits();
    let event = match enc.decode::<EventEnvelope>(&body).and_then(|mut e| {
        own_account(&c, &mut e.account).map_err(|e| EnvelopeError {
            field: "account".into(),
            reason: e.message,
        })?;
        // The event's id is the daemon's (`into_domain` makes one): a client's `id` is not
        // trusted (two events could share it, and with it their invocations and inbox row);
        // `external_event_id` is the client's name for dedupe.
        e.id = None;
        e.into_domain(limits)
    }) {
        Ok(e) => e,
        Err(e) => {
            // Nothing is lost: the bytes are kept as a dead letter, with the reason.
            d.record_malformed(
                &account,
                e.to_string(),
                enc.content_type().to_owned(),
                body.to_vec(),
            );
            return Err(e.into());
        }
    };
    match d.ingest(event).await? {
        Ingested::Accepted(id) => Ok(HttpResponse::Accepted().json(EventAccepted {
            id,
            status: "accepted",
        })),
        Ingested::Duplicate(id) => Ok(HttpResponse::Ok().json(EventAccepted {
            id,
            status: "duplicate",
        })),
    }
}

/// Sends a command.
///
/// Needs `commands:write`. With `invocation_id`, the command joins that waiting invocation's
/// (404 when none waits); otherwise it needs `persona_id` and becomes a command act. JSON or
/// MessagePack.
#[utoipa::path(
    tag = "data",
    request_body(content = CommandEnvelope, content_type = "application/json"),
    security(("bearer" = ["commands:write"])),
    responses(
        (status = 202, description = "Accepted", body = CommandAccepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 408, response = RequestTimeout),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/commands")]
async fn post_command(
    d: D,
    c: Caller,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CommandsWrite)?.clone();
    let mut env: CommandEnvelope = decode(&req, &body.read().await?)?;
    own_account(&c, &mut env.account)?;
    let persona = env.persona_id;
    let command = env.into_domain(d.limits())?;
    if let Some(inv) = command.invocation_id {
        return match d.command_for_invocation(&account, inv, command) {
            Ok(()) => Ok(HttpResponse::Accepted().json(CommandAccepted {
                status: "accepted",
                invocation_id: Some(inv),
                command_act_id: None,
            })),
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
    Ok(HttpResponse::Accepted().json(CommandAccepted {
        status: "accepted",
        invocation_id: None,
        command_act_id: Some(act),
    }))
}

/// A runner's later answer to an invocation.
///
/// Needs `results:write` in the invocation's account (another account's invocation is as
/// absent as one that does not wait). JSON or MessagePack.
#[utoipa::path(
    tag = "data",
    params(("id" = Uuid, Path, description = "The invocation's id")),
    request_body(content = ResultWire, content_type = "application/json"),
    security(("bearer" = ["results:write"])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 408, response = RequestTimeout),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/invocations/{id}/result")]
async fn post_result(
    d: D,
    c: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ResultsWrite)?.clone();
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::invalid("id", "not a UUID"))?;
    let wire: ResultWire = decode(&req, &body.read().await?)?;
    let answer = wire.into_domain(d.limits())?;
    // Told at once, the runner can correct and send the answer again: nothing is applied.
    if let Some(defect) = answer.first_defect() {
        return Err(defect.into());
    }
    d.answer_invocation(&account, id, answer.outcome, answer.commands)?;
    Ok(HttpResponse::Accepted().json(Accepted { status: "accepted" }))
}
