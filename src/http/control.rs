//! The control plane of seed 000: integrations, their settings, connectors and their lifecycle.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::auth::Caller;
use super::body::decode;
use super::body::RawBody;
use super::error::{ApiError, Kind};
use super::views::{
    settings_json, settings_pairs, ConnectorJson, CreateConnector, IntegrationJson, SettingJson,
    UpdateConnector,
};
use crate::auth::Scope;
use crate::daemon::Daemon;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/integrations", web::get().to(list_integrations))
        .route(
            "/v1/integrations/connectors/{id}",
            web::get().to(get_connector),
        )
        .route(
            "/v1/integrations/connectors/{id}",
            web::put().to(update_connector),
        )
        .route(
            "/v1/integrations/connectors/{id}",
            web::delete().to(delete_connector),
        )
        .route(
            "/v1/integrations/connectors/{id}/settings",
            web::post().to(connector_settings),
        )
        .route(
            "/v1/integrations/connectors/{id}/run",
            web::post().to(run_connector),
        )
        .route(
            "/v1/integrations/connectors/{id}/stop",
            web::post().to(stop_connector),
        )
        .route(
            "/v1/integrations/{integration}",
            web::get().to(get_integration),
        )
        .route(
            "/v1/integrations/{integration}/settings",
            web::get().to(get_integration_settings),
        )
        .route(
            "/v1/integrations/{integration}/settings",
            web::post().to(set_integration_settings),
        )
        .route(
            "/v1/integrations/{integration}/connectors",
            web::get().to(list_connectors),
        )
        .route(
            "/v1/integrations/{integration}/connectors",
            web::post().to(create_connector),
        );
}

fn connector_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::new(Kind::NotFound, "not_found", format!("no connector {raw}")))
}

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

async fn get_integration(
    d: D,
    c: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    c.need(Scope::Read)?;
    let i = integration(&d, &path)?;
    Ok(HttpResponse::Ok().json(IntegrationJson::of(i)))
}

async fn get_integration_settings(
    d: D,
    c: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let i = integration(&d, &path)?;
    let s = d.integration_settings(account, i.idn.as_str())?;
    Ok(HttpResponse::Ok().json(settings_json(&s)))
}

async fn set_integration_settings(
    d: D,
    c: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let i = integration(&d, &path)?.clone();
    let list: Vec<SettingJson> = decode(&req, &body)?;
    let shown = d
        .set_integration_settings(account, i.idn.as_str(), &settings_pairs(list))
        .await?;
    Ok(HttpResponse::Ok().json(settings_json(&shown)))
}

async fn list_connectors(
    d: D,
    c: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let i = integration(&d, &path)?;
    let list = d.connectors(account, Some(i.idn.as_str()));
    Ok(HttpResponse::Ok().json(list.iter().map(ConnectorJson::from).collect::<Vec<_>>()))
}

async fn create_connector(
    d: D,
    c: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let i = integration(&d, &path)?.clone();
    let new: CreateConnector = decode(&req, &body)?;
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

async fn get_connector(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let view = d.connector(account, connector_id(&path)?)?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

async fn update_connector(
    d: D,
    c: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let u: UpdateConnector = decode(&req, &body)?;
    if !u.settings.is_empty() {
        c.need(Scope::CredentialsWrite)?;
    }
    let view = d
        .update_connector(
            account,
            connector_id(&path)?,
            u.title.as_deref(),
            &settings_pairs(u.settings),
        )
        .await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

async fn connector_settings(
    d: D,
    c: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let list: Vec<SettingJson> = decode(&req, &body)?;
    let view = d
        .update_connector(account, connector_id(&path)?, None, &settings_pairs(list))
        .await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

async fn delete_connector(
    d: D,
    c: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    d.delete_connector(account, connector_id(&path)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn run_connector(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let view = d.run_connector(account, connector_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}

async fn stop_connector(
    d: D,
    c: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::ConnectorsWrite)?;
    let view = d.stop_connector(account, connector_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(ConnectorJson::from(&view)))
}
