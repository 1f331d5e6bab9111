//! Accounts and API tokens: `GET|POST /v1/accounts` for the operator's `admin`;
//! `GET|POST /v1/tokens`, `DELETE /v1/tokens/{id}` for it (every account) and for an
//! `account:admin` (its own account's tokens, never granting or revoking an operator's scope).
//! A token's text is in the answer that created it and nowhere else.

use std::sync::Arc;

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::api::body::{decode, Body};
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Kind};
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

/// The 404 of an account the caller may not see, or that does not exist.
fn unknown_account(account: &Idn) -> ApiError {
    ApiError::new(
        Kind::NotFound,
        "unknown_account",
        format!("no account {account}"),
    )
    .field("account")
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
        (status = 408, response = RequestTimeout),
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
    body: Body,
) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    let new: NewAccount = decode(&req, &body.read().await?)?;
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
    /// `flows:write`, `connectors:write`, `credentials:write`, `account:admin`, and (granted by
    /// `admin` only) `metrics:read`, `admin`.
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
/// Needs `account:admin` (a token of its own account, without `admin` or `metrics:read`: those
/// are the operator's to grant, 403 naming the scope) or `admin` (any). Its text is in this
/// answer and nowhere else.
#[utoipa::path(
    tag = "accounts",
    request_body(content = NewToken, content_type = "application/json"),
    security(("bearer" = ["account:admin"]), ("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Created", body = NewTokenJson),
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
#[post("/v1/tokens")]
async fn create_token(
    d: D,
    c: Caller,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let only = c.0.token_accounts()?.cloned();
    let new: NewToken = decode(&req, &body.read().await?)?;
    let account = match &new.account {
        Some(a) => Idn::parse("account", a).map_err(|e| ApiError::invalid("account", e.reason))?,
        None => c.account().clone(),
    };
    // Another account is as absent to an account's administrator as one that does not exist.
    if only.as_ref().is_some_and(|own| *own != account) || !d.has_account(&account).await? {
        return Err(unknown_account(&account));
    }
    label("name", &new.name)?;
    let scopes = Scopes::parse(new.scopes.iter().map(String::as_str))
        .map_err(|bad| ApiError::invalid("scopes", format!("{bad:?} is not a scope")))?;
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "at least one scope"));
    }
    c.0.may_grant(scopes)?;
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
/// Needs `admin` (every account's) or `account:admin` (its own account's; naming another
/// account is 404).
#[utoipa::path(
    tag = "accounts",
    params(TokensQuery),
    security(("bearer" = ["account:admin"]), ("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenJson>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[get("/v1/tokens")]
async fn list_tokens(
    d: D,
    c: Caller,
    q: web::Query<TokensQuery>,
) -> Result<HttpResponse, ApiError> {
    let only = c.0.token_accounts()?.cloned();
    let named = q
        .account
        .as_deref()
        .map(|a| Idn::parse("account", a).map_err(|e| ApiError::invalid("account", e.reason)))
        .transpose()?;
    let account = match (only, named) {
        (Some(own), Some(named)) if named != own => return Err(unknown_account(&named)),
        (Some(own), _) => Some(own),
        (None, named) => named,
    };
    let list = d.tokens().list(account).await?;
    Ok(HttpResponse::Ok().json(list.iter().map(TokenJson::from).collect::<Vec<_>>()))
}

/// Revokes a token.
///
/// Needs `admin` (any token) or `account:admin` (one of its own account's: another account's
/// is not found; one holding `admin` or `metrics:read` is the operator's, 403 naming it).
#[utoipa::path(
    tag = "accounts",
    params(("id" = String, Path, description = "The token's public id")),
    security(("bearer" = ["account:admin"]), ("bearer" = ["admin"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
#[delete("/v1/tokens/{id}")]
async fn revoke_token(d: D, c: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let only = c.0.token_accounts()?.cloned();
    let mut operators = None;
    let revoked = d
        .revoke_token(&path, |t| {
            if only.as_ref().is_some_and(|own| *own != t.account) {
                return false;
            }
            operators = c.0.may_grant(t.scopes).err();
            operators.is_none()
        })
        .await?;
    if let Some(refused) = operators {
        return Err(refused.into());
    }
    if revoked {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            Kind::NotFound,
            "not_found",
            format!("no live token {}", path.as_str()),
        ))
    }
}
