//! The control plane of seed 000: integrations, their settings, connectors and their lifecycle.

use std::sync::Arc;

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use super::views::{
    settings_json, settings_pairs, ConnectorJson, CreateConnector, IntegrationJson, SettingJson,
    UpdateConnector,
};
use crate::api::body::decode;
use crate::api::body::Body;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Kind};
use crate::auth::Scope;
use crate::daemon::Daemon;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_integrations)
        .service(get_connector)
        .service(update_connector)
        .service(delete_connector)
        .service(connector_settings)
        .service(run_connector)
        .service(stop_connector)
        .service(rotate_secret)
        .service(get_integration)
        .service(get_integration_settings)
        .service(set_integration_settings)
        .service(list_connectors)
        .service(create_connector);
}

/// The integration a path names.
#[derive(Deserialize, IntoParams)]
#[into_params(names("integration"), parameter_in = Path)]
struct IntegrationPath(
    /// The integration's idn (`sandbox`, `telegram`, …).
    #[param(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    String,
);

/// The connector a path names.
#[derive(Deserialize, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
struct ConnectorPath(
    /// The connector's id (anything else is not found).
    #[param(value_type = Uuid)]
    String,
);

fn connector_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::new(Kind::NotFound, "not_found", format!("no connector {raw}")))
}

/// The integrations of the catalog.
///
/// Needs `read`.
#[utoipa::path(
    tag = "control",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The integrations", body = Vec<IntegrationJson>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
#[get("/v1/integrations")]
async fn list_integrations(d: D, c: Caller) -> Result<HttpResponse, ApiError> {
    c.need(Scope::Read)?;
    Ok(HttpResponse::Ok().json(
        d.catalog()
            .listed()
            .map(|i| IntegrationJson::of(i))
            .collect::<Vec<_>>(),
    ))
}

fn integration<'a>(
    d: &'a Daemon,
    id: &str,
) -> Result<&'a Arc<crate::catalog::Integration>, ApiError> {
    d.listed_integration(id).ok_or_else(|| {
        ApiError::new(
            Kind::NotFound,
            "unknown_integration",
            format!("unknown integration {id:?}"),
        )
    })
}

/// One integration of the catalog.
///
/// Needs `read`.
#[utoipa::path(
    tag = "control",
    params(IntegrationPath),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The integration", body = IntegrationJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
#[get("/v1/integrations/{integration}")]
async fn get_integration(
    d: D,
    c: Caller,
    path: web::Path<IntegrationPath>,
) -> Result<HttpResponse, ApiError> {
    c.need(Scope::Read)?;
    let i = integration(&d, &path.0)?;
    Ok(HttpResponse::Ok().json(IntegrationJson::of(i)))
}

/// The integration's settings in the token's account (secrets masked).
///
/// Needs `read`.
#[utoipa::path(
    tag = "control",
    params(IntegrationPath),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The settings", body = Vec<SettingJson>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/integrations/{integration}/settings")]
async fn get_integration_settings(
    d: D,
    c: Caller,
    path: web::Path<IntegrationPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let i = integration(&d, &path.0)?;
    let s = d.integration_settings(account, i.idn.as_str())?;
    Ok(HttpResponse::Ok().json(settings_json(&s)))
}

/// Sets the integration's settings in the token's account.
///
/// Needs `credentials:write`.
#[utoipa::path(
    tag = "control",
    params(IntegrationPath),
    request_body(content = Vec<SettingJson>, content_type = "application/json"),
    security(("bearer" = ["credentials:write"])),
    responses(
        (status = 200, description = "The settings as stored (secrets masked)", body = Vec<SettingJson>),
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
#[post("/v1/integrations/{integration}/settings")]
async fn set_integration_settings(
    d: D,
    c: Caller,
    path: web::Path<IntegrationPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let i = integration(&d, &path.0)?.clone();
    let list: Vec<SettingJson> = decode(&req, &body.read().await?)?;
    let shown = d
        .set_integration_settings(account, i.idn.as_str(), &settings_pairs(list))
        .await?;
    Ok(HttpResponse::Ok().json(settings_json(&shown)))
}

/// The integration's connectors in the token's account.
///
/// Needs `read`.
#[utoipa::path(
    tag = "control",
    params(IntegrationPath),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The connectors", body = Vec<ConnectorJson>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
#[get("/v1/integrations/{integration}/connectors")]
async fn list_connectors(
    d: D,
    c: Caller,
    path: web::Path<IntegrationPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let i = integration(&d, &path.0)?;
    let list = d.connectors(account, Some(i.idn.as_str()));
    Ok(HttpResponse::Ok().json(list.iter().map(ConnectorJson::from).collect::<Vec<_>>()))
}

/// Creates a connector, stopped.
///
/// Needs `connectors:write`. Settings also need `credentials:write`.
#[utoipa::path(
    tag = "control",
    params(IntegrationPath),
    request_body(content = CreateConnector, content_type = "application/json"),
    security(("bearer" = ["connectors:write"])),
    responses(
        (status = 201, description = "Created", body = ConnectorJson),
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
#[post("/v1/integrations/{integration}/connectors")]
async fn create_connector(
    d: D,
    c: Caller,
    path: web::Path<IntegrationPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let i = integration(&d, &path.0)?.clone();
    let new: CreateConnector = decode(&req, &body.read().await?)?;
    if !new.settings.is_empty() {
        c.need(Scope::CredentialsWrite)?;
    }
    let view = d
        .create_connector(
            account,
            i.idn.as_str(),
            &new.connector_idn,
            &new.title,
            &settings_pairs(new.settings),
        )
        .await?;
    Ok(HttpResponse::Created().json(ConnectorJson::from(&view)))
}

/// One connector.
///
/// Needs `read`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The connector", body = ConnectorJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
#[get("/v1/integrations/connectors/{id}")]
async fn get_connector(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let view = d.connector(account, connector_id(&path.0)?)?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

/// Changes a connector's title and settings.
///
/// Needs `connectors:write`. Settings also need `credentials:write`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    request_body(content = UpdateConnector, content_type = "application/json"),
    security(("bearer" = ["connectors:write"])),
    responses(
        (status = 200, description = "The connector", body = ConnectorJson),
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
#[put("/v1/integrations/connectors/{id}")]
async fn update_connector(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let u: UpdateConnector = decode(&req, &body.read().await?)?;
    if !u.settings.is_empty() {
        c.need(Scope::CredentialsWrite)?;
    }
    let view = d
        .update_connector(
            account,
            connector_id(&path.0)?,
            u.title.as_deref(),
            &settings_pairs(u.settings),
        )
        .await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

/// Changes a connector's settings.
///
/// Needs `credentials:write`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    request_body(content = Vec<SettingJson>, content_type = "application/json"),
    security(("bearer" = ["credentials:write"])),
    responses(
        (status = 200, description = "The connector", body = ConnectorJson),
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
#[post("/v1/integrations/connectors/{id}/settings")]
async fn connector_settings(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let list: Vec<SettingJson> = decode(&req, &body.read().await?)?;
    let view = d
        .update_connector(account, connector_id(&path.0)?, None, &settings_pairs(list))
        .await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

/// Deletes a stopped connector.
///
/// Needs `connectors:write`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    security(("bearer" = ["connectors:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[delete("/v1/integrations/connectors/{id}")]
async fn delete_connector(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    d.delete_connector(account, connector_id(&path.0)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Runs a connector (its required settings set).
///
/// Needs `connectors:write`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    security(("bearer" = ["connectors:write"])),
    responses(
        (status = 200, description = "The connector, running", body = ConnectorJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/integrations/connectors/{id}/run")]
async fn run_connector(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let view = d.run_connector(account, connector_id(&path.0)?).await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

/// Stops a connector.
///
/// Needs `connectors:write`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    security(("bearer" = ["connectors:write"])),
    responses(
        (status = 200, description = "The connector, stopped", body = ConnectorJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/integrations/connectors/{id}/stop")]
async fn stop_connector(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let view = d.stop_connector(account, connector_id(&path.0)?).await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

/// How a rotation treats the secret it replaces.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateSecret {
    /// Seconds the replaced secret keeps counting (verifying incoming webhooks; outgoing ones
    /// carry its signature too): 86400 unless given, at most 604800; 0 drops it at once.
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

/// A rotated secret: shown this once.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RotatedSecret {
    /// The setting rotated (`signing_secret`, `command_delivery_secret`).
    setting: &'static str,
    /// The new secret (`whsec_…`).
    secret: String,
    /// Until when the replaced secret still counts (RFC 3339); absent without an overlap.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_valid_until: Option<String>,
}

/// The replaced secret's overlap unless the request says otherwise.
const DEFAULT_OVERLAP_SECONDS: u64 = 24 * 3600;

/// Rotates a connector's signing secret (an `api` connector's `signing_secret`, an adapter's
/// `command_delivery_secret`): the new one is answered this once; the old one keeps counting
/// for the overlap.
///
/// Needs `credentials:write`.
#[utoipa::path(
    tag = "control",
    params(ConnectorPath),
    request_body(content = RotateSecret, content_type = "application/json"),
    security(("bearer" = ["credentials:write"])),
    responses(
        (status = 200, description = "The new secret, shown once", body = RotatedSecret),
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
#[post("/v1/integrations/connectors/{id}/rotate-secret")]
async fn rotate_secret(
    d: D,
    c: Caller,
    path: web::Path<ConnectorPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let body = body.read().await?;
    let asked: RotateSecret = if body.is_empty() {
        RotateSecret {
            overlap_seconds: None,
        }
    } else {
        decode(&req, &body)?
    };
    let overlap = asked.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    let max = crate::relay::webhook::MAX_OVERLAP.as_secs();
    if overlap > max {
        return Err(ApiError::invalid(
            "overlap_seconds",
            format!("at most {max} (got {overlap})"),
        ));
    }
    let rotated = d
        .rotate_secret(
            account,
            connector_id(&path.0)?,
            std::time::Duration::from_secs(overlap),
        )
        .await?;
    Ok(HttpResponse::Ok().json(RotatedSecret {
        setting: rotated.setting,
        secret: rotated.secret,
        previous_valid_until: rotated
            .previous_until
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    }))
}
