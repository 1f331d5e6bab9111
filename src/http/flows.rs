//! Flows: `GET|PUT|DELETE /v1/flows/{agent}/{flow}` with the flow document of
//! `naf-events.yaml`, plus the flow's runner; `GET /v1/flows` lists them. The PUT that gives a
//! webhook-run flow its signing secret answers it once, as `runner_secret` beside the document.

use std::sync::Arc;

use actix_web::{delete, get, put, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::api::body::decode_flow;
use crate::api::body::Body;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Kind};
use crate::auth::Scope;
use crate::daemon::Daemon;
use crate::domain::Name;
use crate::wire::FlowDoc;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_flows)
        .service(get_flow)
        .service(put_flow)
        .service(delete_flow);
}

/// The flow a path names: `/v1/flows/{agent}/{flow}…`.
#[derive(Deserialize, IntoParams)]
#[into_params(names("agent", "flow"), parameter_in = Path)]
pub struct FlowPath(
    /// The agent's name.
    #[param(pattern = "^[A-Za-z_][A-Za-z0-9_]*$", max_length = 64)]
    pub String,
    /// The flow's name.
    #[param(pattern = "^[A-Za-z_][A-Za-z0-9_]*$", max_length = 64)]
    pub String,
);

/// The answer of a PUT: the flow document as stored, plus `runner_secret` when this store gave
/// its webhook runner a signing secret (shown this once) and `warnings` when a subscription
/// names a connector that does not exist yet. Its schema is the document's with those two
/// more properties (the document itself allows no other).
pub struct StoredFlow;

impl PartialSchema for StoredFlow {
    fn schema() -> RefOr<Schema> {
        let mut schema = FlowDoc::schema();
        if let RefOr::T(Schema::Object(o)) = &mut schema {
            o.description = Some(
                "The flow document as stored; `runner_secret` (`whsec_…`) only in the answer that \
                 gave a webhook runner its signing secret"
                    .into(),
            );
            o.properties.insert(
                "runner_secret".into(),
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .into(),
            );
            let text = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
            o.properties.insert(
                "warnings".into(),
                ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .property("field", text())
                            .property("message", text())
                            .required("field")
                            .required("message"),
                    )
                    .description(Some(
                        "What the flow names that does not exist yet (a connector): accepted, \
                         matching nothing until it is created",
                    ))
                    .into(),
            );
        }
        schema
    }
}

impl ToSchema for StoredFlow {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <FlowDoc as ToSchema>::schemas(schemas);
    }
}

/// The flows of the token's account.
///
/// Needs `read`.
#[utoipa::path(
    tag = "flows",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The flow documents", body = Vec<FlowDoc>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
#[get("/v1/flows")]
async fn list_flows(d: D, c: Caller) -> Result<HttpResponse, ApiError> {
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

/// One flow's document.
///
/// Needs `read`.
#[utoipa::path(
    tag = "flows",
    params(FlowPath),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The flow document", body = FlowDoc),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
#[get("/v1/flows/{agent}/{flow}")]
async fn get_flow(d: D, c: Caller, path: web::Path<FlowPath>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let FlowPath(agent, flow) = path.into_inner();
    let doc = d
        .flow(account, &agent, &flow)
        .ok_or_else(|| not_found(&agent, &flow))?;
    Ok(HttpResponse::Ok().json(doc))
}

/// Creates or replaces a flow.
///
/// Needs `flows:write`. The body is a flow document in JSON or YAML (`application/yaml`); the
/// path names its agent and flow. A flow defined by a file may not be changed here (409).
#[utoipa::path(
    tag = "flows",
    params(FlowPath),
    request_body(content(
        (FlowDoc = "application/json"),
        (FlowDoc = "application/yaml"),
    )),
    security(("bearer" = ["flows:write"])),
    responses(
        (status = 200, description = "The flow as stored", body = StoredFlow),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 408, response = RequestTimeout),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[put("/v1/flows/{agent}/{flow}")]
async fn put_flow(
    d: D,
    c: Caller,
    path: web::Path<FlowPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::FlowsWrite)?;
    let FlowPath(agent, flow) = path.into_inner();
    let doc = decode_flow(&req, body.read().await?).await?;
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

/// Deletes a flow.
///
/// Needs `flows:write`. A flow defined by a file may not be deleted here (409).
#[utoipa::path(
    tag = "flows",
    params(FlowPath),
    security(("bearer" = ["flows:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[delete("/v1/flows/{agent}/{flow}")]
async fn delete_flow(d: D, c: Caller, path: web::Path<FlowPath>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::FlowsWrite)?;
    let FlowPath(agent, flow) = path.into_inner();
    let a =
        Name::parse("agent_idn", &agent).map_err(|e| ApiError::invalid("agent_idn", e.reason))?;
    let f = Name::parse("flow_idn", &flow).map_err(|e| ApiError::invalid("flow_idn", e.reason))?;
    if d.delete_flow(account, &a, &f).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&agent, &flow))
    }
}
