//! `POST /v1/flows/{agent}/{flow}/runner-secret`: rotates the signing secret of a flow's
//! webhook runner and answers the new one, this once:
//! `{"runner_secret": "whsec_…", "previous_valid_until": "<RFC 3339>" | null}` (until then
//! the replaced secret signs too; `?previous=revoke` ends that at once, after a leak).

use std::sync::Arc;

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::flows::FlowPath;
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable};
use crate::api::caller::Caller;
use crate::api::error::ApiError;
use crate::auth::Scope;
use crate::daemon::runner_secrets::Previous;
use crate::daemon::Daemon;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(rotate);
}

#[derive(Serialize, ToSchema)]
struct Rotated<'a> {
    /// The new secret (`whsec_…`), shown this once.
    runner_secret: &'a str,
    /// Until when the replaced secret signs too (RFC 3339).
    previous_valid_until: Option<String>,
}

/// What becomes of the replaced secret.
#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum PreviousParam {
    /// It signs too until `runners.secret_overlap_ms` has passed.
    #[default]
    Keep,
    /// It stops signing at once (it leaked).
    Revoke,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RotateQuery {
    /// `keep` (the default): the replaced secret signs too, for `runners.secret_overlap_ms`,
    /// while the runner moves over; `revoke`: it stops signing at once (after a leak), and so
    /// does one an earlier rotation left signing.
    #[param(inline)]
    previous: Option<PreviousParam>,
}

/// Rotates the signing secret of a flow's webhook runner.
///
/// Needs `flows:write` (the secret belongs to the flow); another account's flow is not found.
/// With `previous=revoke` the replaced secret stops signing at once.
#[utoipa::path(
    tag = "flows",
    params(FlowPath, RotateQuery),
    security(("bearer" = ["flows:write"])),
    responses(
        (status = 200, description = "The new secret", body = Rotated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/flows/{agent}/{flow}/runner-secret")]
async fn rotate(
    d: D,
    c: Caller,
    path: web::Path<FlowPath>,
    q: web::Query<RotateQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::FlowsWrite)?;
    let FlowPath(agent, flow) = path.into_inner();
    let previous = match q.previous.unwrap_or_default() {
        PreviousParam::Keep => Previous::Overlap,
        PreviousParam::Revoke => Previous::Revoke,
    };
    let rotated = d
        .rotate_runner_secret(account, &agent, &flow, previous)
        .await?;
    let until = rotated.previous_until_ms.and_then(|ms| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    });
    Ok(HttpResponse::Ok()
        // Shown once: nothing on the way keeps it.
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(Rotated {
            runner_secret: rotated.secret.expose(),
            previous_valid_until: until,
        }))
}
