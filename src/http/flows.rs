//! Flows: `GET|PUT|DELETE /v1/flows/{agent}/{flow}` with the flow document of
//! `naf-events.yaml`, plus the flow's runner; `GET /v1/flows` lists them. The PUT that gives a
//! webhook-run flow its signing secret answers it once, as `runner_secret` beside the document.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Caller;
use super::body::decode_flow;
use super::body::RawBody;
use super::error::{ApiError, Kind};
use crate::auth::Scope;
use crate::daemon::Daemon;
use crate::domain::Name;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/flows", web::get().to(list))
        .route("/v1/flows/{agent}/{flow}", web::get().to(get))
        .route("/v1/flows/{agent}/{flow}", web::put().to(put))
        .route("/v1/flows/{agent}/{flow}", web::delete().to(delete));
}

async fn list(d: D, c: Caller) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    Ok(HttpResponse::Ok().json(d.flows(account)))
}

fn not_found(agent: &str, flow: &str) -> ApiError {
    ApiError::new(
        Kind::NotFound,
        "not_found",
        format!("no flow {agent}/{flow}"),
    )
}

async fn get(d: D, c: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let (agent, flow) = path.into_inner();
    let doc = d
        .flow(account, &agent, &flow)
        .ok_or_else(|| not_found(&agent, &flow))?;
    Ok(HttpResponse::Ok().json(doc))
}

async fn put(
    d: D,
    c: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::FlowsWrite)?;
    let (agent, flow) = path.into_inner();
    let doc = decode_flow(&req, body).await?;
    let flow = doc.to_domain(account, &agent, &flow)?;
    let put = d.put_flow(flow).await?;
    let mut answer = serde_json::to_value(&put.doc).expect("flow documents serialize");
    if let Some(secret) = put.runner_secret {
        answer["runner_secret"] = secret.expose().into();
    }
    if !put.warnings.is_empty() {
        answer["warnings"] = serde_json::to_value(&put.warnings).expect("warnings serialize");
    }
    Ok(HttpResponse::Ok().json(answer))
}

async fn delete(
    d: D,
    c: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::FlowsWrite)?;
    let (agent, flow) = path.into_inner();
    let a =
        Name::parse("agent_idn", &agent).map_err(|e| ApiError::invalid("agent_idn", e.reason))?;
    let f = Name::parse("flow_idn", &flow).map_err(|e| ApiError::invalid("flow_idn", e.reason))?;
    if d.delete_flow(account, &a, &f).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&agent, &flow))
    }
}
