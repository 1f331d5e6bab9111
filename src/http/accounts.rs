//! Accounts and API tokens, for admins: `GET|POST /v1/accounts`, `GET|POST /v1/tokens`,
//! `DELETE /v1/tokens/{id}`. A token's text is in the answer that created it and nowhere else.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::body::{decode, RawBody};
use super::error::{ApiError, Kind};
use crate::auth::{Scopes, TokenRecord};
use crate::daemon::Daemon;
use crate::domain::Idn;

type D = web::Data<Arc<Daemon>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/accounts", web::get().to(list_accounts))
        .route("/v1/accounts", web::post().to(create_account))
        .route("/v1/tokens", web::get().to(list_tokens))
        .route("/v1/tokens", web::post().to(create_token))
        .route("/v1/tokens/{id}", web::delete().to(revoke_token));
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    idn: String,
    #[serde(default)]
    title: String,
}

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
    Ok(HttpResponse::Created().json(json!({"idn": idn.as_str(), "title": new.title})))
}

async fn list_accounts(d: D, c: Caller) -> Result<HttpResponse, ApiError> {
    c.admin()?;
    let list: Vec<_> = d
        .accounts()
        .await?
        .into_iter()
        .map(|a| json!({"idn": a.idn, "title": a.title, "created_at": a.created_at}))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// The account it acts for; the caller's when absent.
    account: Option<String>,
    name: String,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its text or hash.
#[derive(Serialize)]
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
    let mut answer = serde_json::to_value(TokenJson::from(&record)).expect("tokens serialize");
    answer["token"] = json!(text.as_str());
    Ok(HttpResponse::Created().json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensQuery {
    account: Option<String>,
}

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
