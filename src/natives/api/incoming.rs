//! The incoming webhook route of `api` connectors: `POST /hooks/api/{account}/{connector}/{token}`,
//! the connector's `incoming_webhook_url`. In order: the URL is the connector's (compared in
//! constant time; else 404, nothing more said or kept), the body within the HTTP limits, the
//! sender authenticated (Standard Webhooks signature with the `signing_secret`, timestamp
//! within five minutes; or, with `verify_signature=false`, `Authorization: Bearer
//! <signing_secret>`), the body read by the documented rule ([`super::mapping`]), the event
//! in `incoming_events`, the actor where `incoming_actor` says; then the durable intake, with
//! `webhook-id` as the event's `external_event_id` (a retry is a duplicate: 200).

use std::sync::Arc;

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use uuid::Uuid;

use super::mapping::{self, ActorFrom, Mapped, DEFAULT_ACTOR};
use super::refusal::WebhookRefusal;
use super::IDN;
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::responses::{BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized};
use crate::connectors::Directory;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{ConnectorKey, Event, Idn};
use crate::intake::{Ingested, Intake};
use crate::outbound::signing::{SigningKey, Verifier, HEADER_WEBHOOK_ID};
use crate::relay::webhook;
use crate::telemetry::handles;

/// Where the incoming webhooks are.
pub const PREFIX: &str = "/hooks/api";
/// The default of `incoming_events`.
pub const DEFAULT_EVENTS: &[&str] = &["user_message"];

/// What the route uses (app data, registered with it).
pub struct Surface {
    pub directory: Arc<Directory>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
}

/// Registers the route, documented.
pub fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(incoming);
}

/// An incoming webhook taken in.
#[derive(Serialize, ToSchema)]
struct WebhookAccepted {
    /// The event's id.
    id: Uuid,
    /// `accepted`, or `duplicate` for a `webhook-id` seen already.
    #[schema(example = "accepted")]
    status: &'static str,
}

/// An incoming webhook of an `api` connector.
///
/// The path is the connector's `incoming_webhook_url`. Signed per Standard Webhooks
/// (`webhook-id`, `webhook-timestamp` within 5 min, `webhook-signature` with the connector's
/// `signing_secret`), or with `verify_signature=false`, `Authorization: Bearer <signing_secret>`.
/// The body is `{"type": "<event idn>", "data": {…}}`: `type` must be in `incoming_events`;
/// each field of `data` becomes an argument (strings as they are, numbers and booleans as
/// their JSON text, objects and arrays as JSON text, `null` left out); the actor's external id
/// comes from `incoming_actor` (`body:<field of data>` or `header:<name>`). A repeated
/// `webhook-id` is a duplicate (200), not routed again.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("account" = String, Path, description = "The connector's account"),
        ("connector" = String, Path, description = "The connector's idn"),
        ("token" = String, Path, description = "The URL's secret part"),
    ),
    security(()),
    responses(
        (status = 202, description = "Durable, handed to the engine", body = WebhookAccepted),
        (status = 200, description = "A duplicate of a `webhook-id` seen already", body = WebhookAccepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
    )
)]
#[post("/hooks/api/{account}/{connector}/{token}")]
async fn incoming(
    s: web::Data<Surface>,
    intake: web::Data<Arc<dyn Intake>>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let key = match connector_of(&s.directory, &req, &path) {
        Some(key) => key,
        None => {
            handles::rejected(WebhookRefusal::UnknownWebhook.code());
            return Err(WebhookRefusal::UnknownWebhook.into());
        }
    };
    let body = body.read().await?;
    let event = match event_of(&s.directory, &key, &req, &body) {
        Ok(e) => e,
        Err(r) => {
            handles::rejected(r.code());
            let reason = match r {
                WebhookRefusal::Body(_) => DeadLetterReason::Malformed,
                _ => DeadLetterReason::Native(super::refusal::WEBHOOK_REFUSED),
            };
            dead_letter::record(
                &*s.dead_letters,
                DeadLetter::raw_for(
                    reason,
                    key.account.clone(),
                    format!("api/{}: {}: {r}", key.connector, r.code()),
                    "application/json".into(),
                    body.to_vec(),
                ),
            );
            return Err(r.into());
        }
    };
    match intake.ingest(event).await? {
        Ingested::Accepted(id) => Ok(HttpResponse::Accepted().json(WebhookAccepted {
            id,
            status: "accepted",
        })),
        Ingested::Duplicate(id) => Ok(HttpResponse::Ok().json(WebhookAccepted {
            id,
            status: "duplicate",
        })),
    }
}

/// The connector whose `incoming_webhook_url` this request's path is.
fn connector_of(
    directory: &Directory,
    req: &HttpRequest,
    path: &(String, String, String),
) -> Option<ConnectorKey> {
    let (account, connector, _token) = path;
    let account = Idn::parse("account", account).ok()?;
    let view = directory.find(&account, IDN, connector)?;
    let url = directory.setting(&view.key, "incoming_webhook_url")?;
    bool::from(url.as_bytes().ct_eq(req.path().as_bytes())).then_some(view.key)
}

/// The event the request carries, or why not.
fn event_of(
    directory: &Directory,
    key: &ConnectorKey,
    req: &HttpRequest,
    body: &[u8],
) -> Result<Event, WebhookRefusal> {
    let setting = |idn: &str| directory.setting(key, idn);
    let secret = setting("signing_secret").unwrap_or_default();
    // During a rotation's overlap the secret it replaced counts too.
    let previous = webhook::previous_secret(setting, "signing_secret", chrono::Utc::now());
    if setting("verify_signature").as_deref() == Some("false") {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let matches = |s: &str| !s.is_empty() && bool::from(given.as_bytes().ct_eq(s.as_bytes()));
        if !matches(&secret) && !previous.as_deref().is_some_and(matches) {
            return Err(WebhookRefusal::Token);
        }
    } else {
        let key = SigningKey::parse(&secret).map_err(|_| {
            WebhookRefusal::Signature(crate::outbound::signing::VerifyError::NoMatch)
        })?;
        let mut verifier = Verifier::new(key);
        if let Some(previous) = previous.and_then(|p| SigningKey::parse(&p).ok()) {
            verifier = verifier.with_previous(previous);
        }
        verifier
            .verify(req.headers(), body)
            .map_err(WebhookRefusal::Signature)?;
    }
    let mapped = mapping::map(body).map_err(WebhookRefusal::Body)?;
    let allowed: Vec<String> = match setting("incoming_events") {
        Some(list) => serde_json::from_str(&list).unwrap_or_default(),
        None => DEFAULT_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
    };
    if !allowed.contains(&mapped.event) {
        return Err(WebhookRefusal::NotAllowed(mapped.event));
    }
    let event = Idn::parse("type", &mapped.event).map_err(|_| {
        WebhookRefusal::Body(mapping::BadBody {
            field: "type",
            reason: "not an identifier",
        })
    })?;
    let from = ActorFrom::parse(&setting("incoming_actor").unwrap_or_else(|| DEFAULT_ACTOR.into()))
        .ok_or(WebhookRefusal::BadActorSetting)?;
    let actor =
        actor_of(&from, &mapped, req).ok_or_else(|| WebhookRefusal::NoActor(from.field()))?;
    let mut e = Event::from_actor(
        key.account.clone(),
        key.integration.clone(),
        key.connector.clone(),
        event,
        actor,
    );
    e.arguments = mapped.arguments;
    e.external_event_id = req
        .headers()
        .get(HEADER_WEBHOOK_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Ok(e)
}

/// The actor's external id (1 to 128 bytes), where `from` says.
fn actor_of(from: &ActorFrom, mapped: &Mapped, req: &HttpRequest) -> Option<String> {
    let id = match from {
        ActorFrom::Body(field) => mapped.argument(field).map(str::to_owned),
        ActorFrom::Header(name) => req
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }?;
    (!id.is_empty() && id.len() <= 128).then_some(id)
}
