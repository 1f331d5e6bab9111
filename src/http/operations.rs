//! Operations: explain, sessions, dead letters with replay, health, readiness, metrics.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::auth::{bearer, Caller};
use super::error::ApiError;
use super::views::{DeadLetterJson, ExplanationJson, SessionJson, TimerJson};
use crate::auth::{AuthError, Scope};
use crate::daemon::operations::Replayed;
use crate::daemon::Daemon;
use crate::dead_letter::DeadLetterReason;
use crate::domain::{Idn, PersonaId};

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/routes/explain", web::get().to(explain))
        .route("/v1/sessions", web::get().to(sessions))
        .route("/v1/dead-letters", web::get().to(dead_letters))
        .route("/v1/dead-letters/{id}", web::get().to(dead_letter))
        .route("/v1/timers", web::get().to(timers))
        .route("/v1/dead-letters/{id}/replay", web::post().to(replay))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    integration_idn: String,
    connector_idn: String,
    event_idn: String,
}

fn idn(field: &str, v: &str) -> Result<Idn, ApiError> {
    Idn::parse(field, v).map_err(|e| ApiError::invalid(field, format!("{} (got {v:?})", e.reason)))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsQuery {
    /// Comma-separated `integration/connector` patterns; `*` matches anything.
    connectors: Option<String>,
    is_active: Option<bool>,
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
            .map(|(s, ended_at, reason)| {
                json!({"id": s.id, "persona_id": s.persona, "integration_idn": s.integration,
                       "connector_idn": s.connector, "channel": s.channel, "started_at": s.started_at,
                       "ended_at": ended_at, "end_reason": reason, "is_active": false})
            })
            .collect();
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLettersQuery {
    limit: Option<usize>,
    /// A reason code (`runner_failed`, ...).
    reason: Option<String>,
    /// RFC 3339: letters recorded at or after it.
    since: Option<String>,
}

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

async fn dead_letter(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::invalid("id", "not a UUID"))?;
    let letter = d.dead_letter(account, id).await?;
    Ok(HttpResponse::Ok().json(DeadLetterJson::from(&letter)))
}

async fn replay(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::EventsWrite)?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::invalid("id", "not a UUID"))?;
    Ok(
        HttpResponse::Ok().json(match d.replay_dead_letter(account, id).await? {
            Replayed::Event(id) => json!({"status": "replayed", "event_id": id}),
            Replayed::Command(act) => json!({"status": "replayed", "command_act_id": act}),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimersQuery {
    /// A `program_timer` connector idn.
    connector: Option<String>,
    /// A persona id.
    persona: Option<String>,
    limit: Option<usize>,
}

async fn timers(d: D, c: Caller, q: web::Query<TimersQuery>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let connector = q
        .connector
        .as_deref()
        .map(|c| idn("connector", c))
        .transpose()?;
    let persona = q
        .persona
        .as_deref()
        .map(|p| {
            Uuid::parse_str(p)
                .map(PersonaId)
                .map_err(|_| ApiError::invalid("persona", format!("{p:?} is not a persona id")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = d.timers(account, connector, persona, limit).await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(TimerJson::from).collect::<Vec<_>>()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when every readiness check passes, else 503 naming the failing ones:
/// `{"status": "not_ready", "failing": ["transport"], "checks": {"transport": "nats disconnected", …}}`.
async fn readyz(d: D) -> HttpResponse {
    let r = d.readiness().await;
    let checks: serde_json::Map<String, serde_json::Value> = r
        .checks
        .iter()
        .map(|(name, res)| {
            let v = match res {
                Ok(()) => "ok".to_owned(),
                Err(why) => why.clone(),
            };
            ((*name).to_owned(), json!(v))
        })
        .collect();
    if r.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "failing": r.failing(), "checks": checks}))
    }
}

/// The Prometheus page; it needs a token with `metrics:read` unless `metrics.require_token`
/// says otherwise.
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
