//! `POST /v1/flows/{agent}/{flow}/runner-secret`: rotates the signing secret of a flow's
//! webhook runner and answers the new one, this once:
//! `{"runner_secret": "whsec_…", "previous_valid_until": "<RFC 3339>" | null}` (until then
//! the replaced secret signs too).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Scope;
use crate::daemon::Daemon;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/flows/{agent}/{flow}/runner-secret",
        web::post().to(rotate),
    );
}

#[derive(Serialize)]
struct Rotated<'a> {
    runner_secret: &'a str,
    previous_valid_until: Option<String>,
}

/// Needs `flows:write` (the secret belongs to the flow); another account's flow is not found.
async fn rotate(
    d: D,
    c: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::FlowsWrite)?;
    let (agent, flow) = path.into_inner();
    let rotated = d.rotate_runner_secret(account, &agent, &flow).await?;
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
