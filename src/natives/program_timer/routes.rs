//! The native's HTTP routes: `GET /v1/timers` lists the caller's account's timers, read
//! through its [`Book`] (app data [`Listing`], registered with the routes).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::book::Book;
use super::spec::Timer;
use crate::api::caller::Caller;
use crate::api::error::ApiError;
use crate::api::responses::{BadRequest, Forbidden, Unauthorized, Unavailable};
use crate::auth::Scope;
use crate::domain::{Idn, PersonaId};

/// Timers listed when the query names no `limit`, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What the handlers read: the book the service writes.
pub struct Listing(pub Arc<dyn Book>);

/// Registers the routes and their app data.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig, book: Arc<dyn Book>) {
    cfg.app_data(web::Data::new(Listing(book))).service(timers);
}

/// A timer of a `program_timer` connector.
#[derive(Serialize, ToSchema)]
pub struct TimerJson {
    pub connector_idn: String,
    pub persona_id: Uuid,
    pub timer_name: String,
    pub next_fire_at: String,
    pub interval_seconds: Option<f64>,
    pub repeatable: bool,
    pub event_idn: String,
    pub arguments: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
}

impl From<&Timer> for TimerJson {
    fn from(t: &Timer) -> Self {
        TimerJson {
            connector_idn: t.key.connector.to_string(),
            persona_id: t.key.persona.0,
            timer_name: t.key.name.clone(),
            next_fire_at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.due_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            interval_seconds: t.interval_ms.map(|ms| ms as f64 / 1000.0),
            repeatable: t.repeatable,
            event_idn: t.event.to_string(),
            arguments: t.arguments.iter().cloned().collect(),
            session_id: t.session,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimersQuery {
    /// A `program_timer` connector idn.
    connector: Option<String>,
    /// A persona id.
    persona: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// Timers of the token's account's `program_timer` connectors.
///
/// Needs `read`.
#[utoipa::path(
    tag = "operations",
    params(TimersQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The timers", body = Vec<TimerJson>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/timers")]
async fn timers(
    book: web::Data<Listing>,
    c: Caller,
    q: web::Query<TimersQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let connector = q
        .connector
        .as_deref()
        .map(|v| {
            Idn::parse("connector", v)
                .map_err(|e| ApiError::invalid("connector", format!("{} (got {v:?})", e.reason)))
        })
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
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let listed = book
        .0
        .list(account, connector.as_ref(), persona, limit)
        .await?;
    Ok(HttpResponse::Ok().json(listed.iter().map(TimerJson::from).collect::<Vec<_>>()))
}
