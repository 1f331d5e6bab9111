//! `/v1/credentials`: credential connectors of the token's account, created (name, type),
//! configured (fields set or removed), renamed, listed and deleted. Secret fields are
//! write-only: an answer shows which are set and the status, never a value. Deleting one that
//! http connectors use is a 409 naming them, unless `?force=true`.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::CredentialError;
use super::kind::CredentialType;
use super::oauth::{self, OAuthError};
use super::pending::{PendingFlows, FLOW_TTL};
use super::refresh::Refresher;
use super::store::{Change, Credential, CredentialStore};
use crate::api::body::{decode, Body};
use crate::api::caller::Caller;
use crate::api::error::ApiError;
use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::auth::Scope;
use crate::connectors::Directory;
use crate::domain::{ConnectorKey, Idn, PersonaKey};
use crate::outbound::Egress;

/// What the credential routes use (app data, registered with them).
pub struct Vault {
    pub credentials: CredentialStore,
    pub directory: Arc<Directory>,
    /// Requests to OAuth providers.
    pub egress: Egress,
    /// Authorization-code flows waiting for their callback.
    pub flows: PendingFlows,
    /// The refreshes (and the system events of credentials).
    pub refresher: Arc<Refresher>,
    /// The persona a credential's own system events go to (`credential:<id>` on `system`).
    pub persona_key: PersonaKey,
}

impl Vault {
    /// The http connectors of `c`'s account whose `credential` setting names it.
    pub fn users(&self, account: &Idn, c: &Credential) -> Vec<String> {
        let id = c.id.to_string();
        self.directory
            .list(account, Some("http"))
            .into_iter()
            .filter(|v| {
                let key = ConnectorKey::new(account, &v.key.integration, &v.key.connector);
                self.directory
                    .setting(&key, "credential")
                    .is_some_and(|s| s == id || s == c.name)
            })
            .map(|v| v.key.connector.to_string())
            .collect()
    }
}

type V = web::Data<Vault>;

/// Registers the routes, each documented.
pub fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(show)
        .service(configure)
        .service(remove)
        .service(oauth_start)
        .service(oauth_callback);
}

/// A new credential.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    /// 1 to 100 characters, unique in the account ("HubSpot API").
    name: String,
    /// `api_key`, `bearer`, `basic`, `oauth2` or `intercom`.
    #[serde(rename = "type")]
    kind: String,
    /// Fields to set (see `PATCH`).
    #[serde(default)]
    settings: BTreeMap<String, Option<String>>,
}

/// A change of a credential: a new name, fields set (a string) or removed (`null`).
///
/// Fields by type: `api_key`: `value` (secret), `header` (default `X-API-Key`) or
/// `query_param`; `bearer`: `token` (secret); `basic`: `username`, `password` (secret);
/// `oauth2`: `grant` (`authorization_code`, the default, or `client_credentials`),
/// `client_id`, `client_secret` (secret), `authorize_url`, `token_url`, `scopes`
/// (space-separated); `intercom`: `client_id`, `client_secret` (secret).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateCredential {
    name: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, Option<String>>,
}

/// A credential as the API shows it: no secret value, ever.
#[derive(Serialize, ToSchema)]
struct CredentialJson {
    #[schema(value_type = Uuid)]
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// `not_configured`, `not_connected` (OAuth, not authorized yet), `connected` or
    /// `needs_reauth` (the provider refused the refresh token).
    status: &'static str,
    /// The fields that are not secret.
    settings: BTreeMap<String, String>,
    /// The secret fields that are set (their values are write-only).
    secrets_set: Vec<String>,
    /// When the OAuth access token expires.
    expires_at: Option<DateTime<Utc>>,
    /// When the OAuth token was last refreshed.
    last_refresh_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    /// The http connectors whose `credential` setting names it.
    used_by: Vec<String>,
}

impl CredentialJson {
    fn of(c: &Credential, used_by: Vec<String>) -> CredentialJson {
        CredentialJson {
            id: c.id.to_string(),
            name: c.name.clone(),
            kind: c.kind.as_str(),
            status: c.status().as_str(),
            settings: c.plain.clone(),
            secrets_set: c.secrets_set().into_iter().map(str::to_owned).collect(),
            expires_at: c.expires_at.and_then(DateTime::from_timestamp_millis),
            last_refresh_at: c.refreshed_at.and_then(DateTime::from_timestamp_millis),
            created_at: DateTime::from_timestamp_millis(c.created_at),
            used_by,
        }
    }
}

/// The credential a path names.
#[derive(Deserialize, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
struct CredentialPath(
    /// The credential's id (anything else is not found).
    #[param(value_type = Uuid)]
    String,
);

impl CredentialPath {
    fn id(&self) -> Result<uuid::Uuid, CredentialError> {
        uuid::Uuid::parse_str(&self.0).map_err(|_| CredentialError::NotFound(self.0.clone()))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete it even though http connectors use it: their requests then fail with
    /// `result_error` naming the missing credential.
    #[serde(default)]
    force: bool,
}

fn changes(settings: BTreeMap<String, Option<String>>) -> Vec<Change> {
    settings.into_iter().collect()
}

fn answer(status: actix_web::http::StatusCode, body: impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// The account's credentials.
///
/// Needs `read`. Secret values are never shown: `secrets_set` names the fields set.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The credentials, by name", body = Vec<CredentialJson>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/credentials")]
async fn list(v: V, c: Caller) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let all = v.credentials.list(account.as_str()).await?;
    let out: Vec<_> = all
        .iter()
        .map(|cr| CredentialJson::of(cr, v.users(account, cr)))
        .collect();
    Ok(answer(actix_web::http::StatusCode::OK, out))
}

/// Creates a credential.
///
/// Needs `credentials:write`. Secret fields are sealed at rest and never shown again.
#[utoipa::path(
    tag = "credentials",
    request_body(content = CreateCredential, content_type = "application/json"),
    security(("bearer" = ["credentials:write"])),
    responses(
        (status = 201, description = "Created", body = CredentialJson),
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
#[post("/v1/credentials")]
async fn create(v: V, c: Caller, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let new: CreateCredential = decode(&req, &body.read().await?)?;
    let kind = CredentialType::parse(&new.kind).ok_or_else(|| {
        CredentialError::invalid(
            "type",
            "must be one of api_key, bearer, basic, oauth2, intercom",
        )
    })?;
    let cr = v
        .credentials
        .create(account.as_str(), &new.name, kind, changes(new.settings))
        .await?;
    Ok(answer(
        actix_web::http::StatusCode::CREATED,
        CredentialJson::of(&cr, Vec::new()),
    ))
}

/// A credential: its status, never a secret value.
///
/// Needs `read`.
#[utoipa::path(
    tag = "credentials",
    params(CredentialPath),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The credential", body = CredentialJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/credentials/{id}")]
async fn show(v: V, c: Caller, path: web::Path<CredentialPath>) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::Read)?;
    let cr = v
        .credentials
        .find(account.as_str(), &path.id()?.to_string())
        .await?;
    let used = v.users(account, &cr);
    Ok(answer(
        actix_web::http::StatusCode::OK,
        CredentialJson::of(&cr, used),
    ))
}

/// Renames or configures a credential: fields set (a string) or removed (`null`).
///
/// Needs `credentials:write`.
#[utoipa::path(
    tag = "credentials",
    params(CredentialPath),
    request_body(content = UpdateCredential, content_type = "application/json"),
    security(("bearer" = ["credentials:write"])),
    responses(
        (status = 200, description = "The credential", body = CredentialJson),
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
#[patch("/v1/credentials/{id}")]
async fn configure(
    v: V,
    c: Caller,
    path: web::Path<CredentialPath>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let id = path.id()?;
    let u: UpdateCredential = decode(&req, &body.read().await?)?;
    let cr = v
        .credentials
        .update(
            account.as_str(),
            &id.to_string(),
            u.name.as_deref(),
            changes(u.settings),
        )
        .await?;
    let used = v.users(account, &cr);
    Ok(answer(
        actix_web::http::StatusCode::OK,
        CredentialJson::of(&cr, used),
    ))
}

/// Deletes a credential.
///
/// Needs `credentials:write`. One that http connectors use is a 409 naming them, unless
/// `force=true`.
#[utoipa::path(
    tag = "credentials",
    params(CredentialPath, DeleteQuery),
    security(("bearer" = ["credentials:write"])),
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
#[delete("/v1/credentials/{id}")]
async fn remove(
    v: V,
    c: Caller,
    path: web::Path<CredentialPath>,
    q: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let cr = v
        .credentials
        .find(account.as_str(), &path.id()?.to_string())
        .await?;
    let used = v.users(account, &cr);
    if !used.is_empty() && !q.force {
        return Err(CredentialError::InUse(used).into());
    }
    v.credentials.delete(account.as_str(), cr.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

impl From<OAuthError> for CredentialError {
    fn from(e: OAuthError) -> CredentialError {
        match e {
            OAuthError::Incomplete(reason) => {
                let field = reason.split(' ').next().unwrap_or("settings").to_owned();
                CredentialError::invalid(field, reason)
            }
            other => CredentialError::Provider(other.to_string()),
        }
    }
}

/// The start of an OAuth authorization.
#[derive(Serialize, ToSchema)]
struct OAuthStarted {
    /// Authorization code: the provider's page to open in a browser (it comes back to
    /// `/oauth/callback`). Absent for client credentials, connected at once.
    authorization_url: Option<String>,
    /// How long the authorization may take, in ms.
    expires_in_ms: Option<u64>,
    /// The credential's status now.
    status: &'static str,
}

/// Starts connecting an `oauth2` or `intercom` credential.
///
/// Needs `credentials:write`. Authorization code (with PKCE): answers the provider's
/// authorization URL; the state and verifier are kept by the daemon (in its store: a restart
/// loses none), single use, for 10 min, and the provider sends the browser back to `/oauth/callback` on the host this request
/// named. Client credentials: the token is fetched now.
#[utoipa::path(
    tag = "credentials",
    params(CredentialPath),
    security(("bearer" = ["credentials:write"])),
    responses(
        (status = 200, description = "Started (or connected)", body = OAuthStarted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 502, description = "The provider refused or failed", body = crate::api::error::ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/credentials/{id}/oauth/start")]
async fn oauth_start(
    v: V,
    c: Caller,
    req: HttpRequest,
    path: web::Path<CredentialPath>,
) -> Result<HttpResponse, ApiError> {
    let account = c.need(Scope::CredentialsWrite)?;
    let cr = v
        .credentials
        .find(account.as_str(), &path.id()?.to_string())
        .await?;
    let secrets = v.credentials.open(&cr)?;
    if oauth::is_client_credentials(&cr) {
        let tokens = oauth::client_credentials(&v.egress, &v.credentials.clock, &cr, &secrets)
            .await
            .map_err(CredentialError::from)?;
        v.credentials.set_tokens(&cr, tokens).await?;
        let cr = v
            .credentials
            .find(account.as_str(), &cr.id.to_string())
            .await?;
        return Ok(answer(
            actix_web::http::StatusCode::OK,
            OAuthStarted {
                authorization_url: None,
                expires_in_ms: None,
                status: cr.status().as_str(),
            },
        ));
    }
    let redirect = {
        let info = req.connection_info();
        format!("{}://{}/oauth/callback", info.scheme(), info.host())
    };
    let (url, state, flow) =
        oauth::start(&cr, &secrets, &redirect).map_err(CredentialError::from)?;
    v.flows.keep(&state, &flow).await?;
    Ok(answer(
        actix_web::http::StatusCode::OK,
        OAuthStarted {
            authorization_url: Some(url),
            expires_in_ms: Some(FLOW_TTL.as_millis() as u64),
            status: cr.status().as_str(),
        },
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    /// The flow's state, from `oauth/start`.
    state: Option<String>,
    /// The authorization code.
    code: Option<String>,
    /// The provider's refusal (`access_denied`, …).
    error: Option<String>,
}

fn page(status: actix_web::http::StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(format!(
            "<!doctype html><meta charset=utf-8><title>Switchboard</title><p>{}</p>",
            text.replace('&', "&amp;").replace('<', "&lt;")
        ))
}

/// Where an OAuth provider sends the browser back (public: bound to the flow's state).
///
/// Exchanges the code (with the flow's PKCE verifier) for tokens, stored sealed. A state
/// unknown, used or older than 10 min is a 400.
#[utoipa::path(
    tag = "credentials",
    params(CallbackQuery),
    security(()),
    responses(
        (status = 200, description = "Connected", content_type = "text/html", body = String),
        (status = 400, description = "Unknown or used state, or the provider's refusal", content_type = "text/html", body = String),
        (status = 502, description = "The token endpoint refused or failed", content_type = "text/html", body = String),
        (status = 503, description = "The daemon could not read the flow (try again)", content_type = "text/html", body = String),
    )
)]
#[get("/oauth/callback")]
async fn oauth_callback(v: V, q: web::Query<CallbackQuery>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let taken = match q.state.as_deref() {
        Some(state) => v.flows.take(state).await,
        None => Ok(None),
    };
    let flow = match taken {
        Ok(flow) => flow,
        Err(e) => {
            tracing::warn!(error = %e, "an OAuth callback's flow could not be read");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The daemon could not read this authorization: try the link again.",
            );
        }
    };
    let Some(flow) = flow else {
        return page(
            StatusCode::BAD_REQUEST,
            "This authorization is unknown, used or expired: start again.",
        );
    };
    if let Some(e) = &q.error {
        return page(
            StatusCode::BAD_REQUEST,
            &format!("The provider refused: {e}."),
        );
    }
    let Some(code) = q.code.clone() else {
        return page(StatusCode::BAD_REQUEST, "The provider sent no code.");
    };
    let done = async {
        let cr = v
            .credentials
            .find(&flow.account, &flow.id.to_string())
            .await?;
        let secrets = v.credentials.open(&cr)?;
        let tokens = oauth::finish(&v.egress, &v.credentials.clock, &cr, &secrets, flow, code)
            .await
            .map_err(CredentialError::from)?;
        v.credentials.set_tokens(&cr, tokens).await?;
        if cr.needs_reauth {
            if let Some(persona) = Refresher::own_persona(&v.persona_key, &cr) {
                v.refresher.notify(&cr, "credential_recovered", persona);
            }
        }
        Ok::<_, CredentialError>(cr.name)
    };
    match done.await {
        Ok(name) => page(
            StatusCode::OK,
            &format!("{name} is connected. You can close this page."),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "an OAuth callback failed");
            let status = if matches!(e, CredentialError::Provider(_)) {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::BAD_REQUEST
            };
            page(status, &format!("Not connected: {e}"))
        }
    }
}
