//! Operations: explain, sessions, dead letters with replay, health, readiness, metrics.

use std::sync::Arc;

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable};
use super::views::{
    DeadLetterJson, ExplanationJson, Health, ReadinessJson, ReplayedJson, SessionJson,
};
use crate::api::caller::{bearer, Caller};
use crate::api::error::ApiError;
use crate::auth::{AuthError, Scope};
use crate::daemon::operations::Replayed;
use crate::daemon::Daemon;
use crate::dead_letter::DeadLetterReason;
use crate::domain::Idn;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(explain)
        .service(sessions)
        .service(dead_letters)
        .service(dead_letter)
        .service(replay)
        .service(healthz)
        .service(readyz)
        .service(metrics);
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExplainQuery {
    #[param(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    integration_idn: String,
    #[param(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    connector_idn: String,
    #[param(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    event_idn: String,
}

fn idn(field: &str, v: &str) -> Result<Idn, ApiError> {
    Idn::parse(field, v).map_err(|e| ApiError::invalid(field, format!("{} (got {v:?})", e.reason)))
}

/// Which subscriptions an event would reach, and why the others would not.
///
/// Needs `read`.
#[utoipa::path(
    tag = "operations",
    params(ExplainQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The explanation", body = ExplanationJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
#[get("/v1/routes/explain")]
async fn explain(d: D, c: Caller, q: web::Query<ExplainQuery>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let x = d.explain(
        account,
        &idn("integration_idn", &q.integration_idn)?,
        &idn("connector_idn", &q.connector_idn)?,
        &idn("event_idn", &q.event_idn)?,
    );
    Ok(HttpResponse::Ok().json(ExplanationJson::from(&x)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SessionsQuery {
    /// Comma-separated `integration/connector` patterns; `*` matches anything.
    connectors: Option<String>,
    /// `false`: ended sessions (the last 1000) instead of the live ones.
    is_active: Option<bool>,
    /// Only sessions of this channel (`chat`, `phone`, `sms`).
    channel: Option<String>,
}

/// Checks one `integration/connector` pattern: each part an idn or `*`.
fn check_pattern(pattern: &str) -> Result<(), ApiError> {
    let (i, c) = pattern.split_once('/').ok_or_else(|| {
        ApiError::invalid(
            "connectors",
            format!("{pattern:?} is not integration/connector (each part an idn or *)"),
        )
    })?;
    for part in [i, c] {
        if part != "*" {
            Idn::parse("connectors", part).map_err(|e| {
                ApiError::invalid("connectors", format!("{pattern:?}: {}", e.reason))
            })?;
        }
    }
    Ok(())
}

fn matches_pattern(pattern: &str, integration: &str, connector: &str) -> bool {
    let (pi, pc) = pattern.split_once('/').unwrap_or((pattern, "*"));
    (pi == "*" || pi == integration) && (pc == "*" || pc == connector)
}

/// Sessions of the token's account: the live ones, or the ended ones.
///
/// Needs `read`.
#[utoipa::path(
    tag = "operations",
    params(SessionsQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionJson>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/sessions")]
async fn sessions(d: D, c: Caller, q: web::Query<SessionsQuery>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let patterns: Vec<&str> = q
        .connectors
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for p in &patterns {
        check_pattern(p)?;
    }
    if q.is_active == Some(false) {
        // Ended sessions come from the store (the last 1000).
        let rows = d.ended_sessions(account, 1000).await?;
        let list: Vec<_> = rows
            .into_iter()
            .filter(|(s, _, _)| {
                patterns.is_empty()
                    || patterns
                        .iter()
                        .any(|p| matches_pattern(p, &s.integration, &s.connector))
            })
            .filter(|(s, _, _)| q.channel.as_deref().is_none_or(|c| c == s.channel))
            .map(|(s, ended_at, reason)| SessionJson::ended(s, ended_at, reason))
            .collect::<Vec<_>>();
        return Ok(HttpResponse::Ok().json(list));
    }
    let list: Vec<SessionJson> = d
        .live_sessions(account)
        .iter()
        .filter(|s| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|p| matches_pattern(p, s.integration.as_str(), s.connector.as_str()))
        })
        .filter(|s| q.channel.as_deref().is_none_or(|c| c == s.channel))
        .map(SessionJson::from)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadLettersQuery {
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
    /// A reason code (`runner_failed`, ...).
    reason: Option<String>,
    /// RFC 3339: letters recorded at or after it.
    since: Option<String>,
}

/// Dead letters of the token's account, newest first.
///
/// Needs `read`.
#[utoipa::path(
    tag = "operations",
    params(DeadLettersQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The dead letters", body = Vec<DeadLetterJson>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/dead-letters")]
async fn dead_letters(
    d: D,
    c: Caller,
    q: web::Query<DeadLettersQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let reason = q
        .reason
        .as_deref()
        .map(|r| {
            DeadLetterReason::of_code(r).ok_or_else(|| {
                ApiError::invalid("reason", format!("{r:?} is not a dead-letter reason"))
            })
        })
        .transpose()?;
    let since = q
        .since
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::invalid("since", format!("{t:?} is not an RFC 3339 time")))
        })
        .transpose()?;
    let list = d.dead_letters(account, limit, reason, since).await?;
    Ok(HttpResponse::Ok().json(list.iter().map(DeadLetterJson::from).collect::<Vec<_>>()))
}

/// One dead letter.
///
/// Needs `read`.
#[utoipa::path(
    tag = "operations",
    params(("id" = Uuid, Path, description = "The dead letter's id")),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/dead-letters/{id}")]
async fn dead_letter(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::invalid("id", "not a UUID"))?;
    let letter = d.dead_letter(account, id).await?;
    Ok(HttpResponse::Ok().json(DeadLetterJson::from(&letter)))
}

/// Replays a dead letter: its event is ingested again, or its command sent again.
///
/// Needs `events:write`.
#[utoipa::path(
    tag = "operations",
    params(("id" = Uuid, Path, description = "The dead letter's id")),
    security(("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "Replayed", body = ReplayedJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/dead-letters/{id}/replay")]
async fn replay(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::EventsWrite)?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::invalid("id", "not a UUID"))?;
    Ok(
        HttpResponse::Ok().json(match d.replay_dead_letter(account, id).await? {
            Replayed::Event(id) => ReplayedJson {
                status: "replayed",
                event_id: Some(id),
                command_act_id: None,
            },
            Replayed::Command(act) => ReplayedJson {
                status: "replayed",
                event_id: None,
                command_act_id: Some(act),
            },
        }),
    )
}

/// Liveness: the process answers.
#[utoipa::path(
    tag = "probes",
    responses((status = 200, description = "Alive", body = Health))
)]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: 200 when every check passes, else 503 naming the failing ones.
///
/// `{"status": "not_ready", "failing": ["transport"], "checks": {"transport": "nats
/// disconnected", …}}`.
#[utoipa::path(
    tag = "probes",
    responses(
        (status = 200, description = "Ready", body = ReadinessJson),
        (status = 503, description = "Not ready (draining, store, transport)", body = ReadinessJson),
    )
)]
#[get("/readyz")]
async fn readyz(d: D) -> HttpResponse {
    let r = d.readiness().await;
    let checks = r
        .checks
        .iter()
        .map(|(name, res)| {
            let v = match res {
                Ok(()) => "ok".to_owned(),
                Err(why) => why.clone(),
            };
            (*name, v)
        })
        .collect();
    if r.is_ready() {
        HttpResponse::Ok().json(ReadinessJson {
            status: "ready",
            failing: None,
            checks,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(ReadinessJson {
            status: "not_ready",
            failing: Some(r.failing()),
            checks,
        })
    }
}

/// The Prometheus page.
///
/// Needs `metrics:read` when `metrics.require_token` says so (`auto`: unless the listener is
/// loopback); otherwise no token.
#[utoipa::path(
    tag = "probes",
    security((), ("bearer" = ["metrics:read"])),
    responses(
        (status = 200, description = "The metrics, Prometheus text format 0.0.4",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No metrics recorder in this process"),
    )
)]
#[get("/metrics")]
async fn metrics(d: D, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if d.config().metrics.token_required(d.config().http.listen) {
        let token = bearer(&req).ok_or(AuthError::Missing)?;
        d.authenticate(&token).await?.need(Scope::MetricsRead)?;
    }
    Ok(match d.render_metrics() {
        Some(page) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(page),
        None => HttpResponse::NotFound().finish(),
    })
}
