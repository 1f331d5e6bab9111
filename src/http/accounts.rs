//! Accounts and API tokens, for admins: `GET|POST /v1/accounts`, `GET|POST /v1/tokens`,
//! `DELETE /v1/tokens/{id}`. A token's text is in the answer that created it and nowhere else.

use std::sync::Arc;

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::{decode, RawBody};
use super::error::{ApiError, Kind};
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::auth::{Scopes, TokenRecord};
use crate::daemon::Daemon;
use crate::domain::Idn;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_accounts)
        .service(create_account)
        .service(list_tokens)
        .service(create_token)
        .service(revoke_token);
}

/// Longest account title and token name, in bytes.
pub const MAX_LABEL_BYTES: usize = 200;

fn label(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > MAX_LABEL_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("at most {MAX_LABEL_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    idn: String,
    /// At most 200 bytes.
    #[serde(default)]
    title: String,
}

/// An account as listed; created ones have no `created_at`.
#[derive(Serialize, ToSchema)]
struct AccountJson {
    idn: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
}

/// Creates an account.
///
/// Needs `admin`.
#[utoipa::path(
    tag = "accounts",
    request_body(content = NewAccount, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Created", body = AccountJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/accounts")]
async fn create_account(
    d: D,
    c: Caller,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    let new: NewAccount = decode(&req, &body)?;
    let idn = Idn::parse("idn", &new.idn).map_err(|e| ApiError::invalid("idn", e.reason))?;
    label("title", &new.title)?;
    if !d.create_account(&idn, &new.title).await? {
        return Err(ApiError::new(
            Kind::Conflict,
            "already_exists",
            format!("account {idn} exists"),
        )
        .field("idn"));
    }
    Ok(HttpResponse::Created().json(AccountJson {
        idn: idn.to_string(),
        title: new.title,
        created_at: None,
    }))
}

/// Every account.
///
/// Needs `admin`.
#[utoipa::path(
    tag = "accounts",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The accounts", body = Vec<AccountJson>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/accounts")]
async fn list_accounts(d: D, c: Caller) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    let list: Vec<_> = d
        .accounts()
        .await?
        .into_iter()
        .map(|a| AccountJson {
            idn: a.idn,
            title: a.title,
            created_at: Some(a.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// The account it acts for; the caller's when absent.
    account: Option<String>,
    /// At most 200 bytes.
    name: String,
    /// At least one of `read`, `events:write`, `commands:write`, `results:write`,
    /// `flows:write`, `connectors:write`, `credentials:write`, `metrics:read`, `admin`.
    scopes: Vec<String>,
    /// In the future.
    expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its text or hash.
#[derive(Serialize, ToSchema)]
struct TokenJson {
    id: String,
    account: String,
    name: String,
    scopes: Vec<&'static str>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<&TokenRecord> for TokenJson {
    fn from(r: &TokenRecord) -> Self {
        TokenJson {
            id: r.id.clone(),
            account: r.account.to_string(),
            name: r.name.clone(),
            scopes: r.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A new token, with its text (`sbt_…`), shown this once.
#[derive(Serialize, ToSchema)]
struct NewTokenJson {
    #[serde(flatten)]
    record: TokenJson,
    token: String,
}

/// Creates a token.
///
/// Needs `admin`. Its text is in this answer and nowhere else.
#[utoipa::path(
    tag = "accounts",
    request_body(content = NewToken, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Created", body = NewTokenJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/tokens")]
async fn create_token(
    d: D,
    c: Caller,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    let new: NewToken = decode(&req, &body)?;
    let account = match &new.account {
        Some(a) => Idn::parse("account", a).map_err(|e| ApiError::invalid("account", e.reason))?,
        None => c.account().clone(),
    };
    if !d.has_account(&account).await? {
        return Err(ApiError::new(
            Kind::NotFound,
            "unknown_account",
            format!("no account {account}"),
        )
        .field("account"));
    }
    label("name", &new.name)?;
    let scopes = Scopes::parse(new.scopes.iter().map(String::as_str))
        .map_err(|bad| ApiError::invalid("scopes", format!("{bad:?} is not a scope")))?;
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "at least one scope"));
    }
    if new.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let (text, record) = d
        .create_token(&account, &new.name, scopes, new.expires_at)
        .await?;
    Ok(HttpResponse::Created().json(NewTokenJson {
        record: TokenJson::from(&record),
        token: text.as_str().to_owned(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TokensQuery {
    /// Only this account's tokens.
    account: Option<String>,
}

/// Every token (never its text).
///
/// Needs `admin`.
#[utoipa::path(
    tag = "accounts",
    params(TokensQuery),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenJson>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/tokens")]
async fn list_tokens(
    d: D,
    c: Caller,
    q: web::Query<TokensQuery>,
) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    let account = q
        .account
        .as_deref()
        .map(|a| Idn::parse("account", a).map_err(|e| ApiError::invalid("account", e.reason)))
        .transpose()?;
    let list = d.tokens().list(account).await?;
    Ok(HttpResponse::Ok().json(list.iter().map(TokenJson::from).collect::<Vec<_>>()))
}

/// Revokes a token.
///
/// Needs `admin`.
#[utoipa::path(
    tag = "accounts",
    params(("id" = String, Path, description = "The token's public id")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[delete("/v1/tokens/{id}")]
async fn revoke_token(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    if d.tokens().revoke(&path, |_| true).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            Kind::NotFound,
            "not_found",
            format!("no live token {}", path.as_str()),
        ))
    }
}
