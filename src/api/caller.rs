//! Who is calling: every route but the probes takes a [`Caller`], the principal of the
//! `Authorization: Bearer <token>` header (no cookies, so a cross-site request has nothing to
//! ride on). Handlers then ask for the scope they need ([`Caller::need`]), and act only in the
//! caller's account.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use crate::auth::{AuthError, Principal, Scope, TokenKeeper};
use crate::domain::Idn;

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Allowed with `scope`; otherwise a 403 naming it.
    pub fn need(&self, scope: Scope) -> Result<&Idn, ApiError> {
        self.0.need(scope)?;
        Ok(&self.0.account)
    }

    /// The operator's `admin` only (accounts).
    pub fn admin(&self) -> Result<(), ApiError> {
        self.0.need(Scope::Admin).map_err(Into::into)
    }

    pub fn account(&self) -> &Idn {
        &self.0.account
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let tokens = req.app_data::<web::Data<TokenKeeper>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let tokens = tokens.expect("the token keeper is app data");
            let token = token.ok_or(AuthError::Missing)?;
            Ok(Caller(tokens.authenticate(&token).await?))
        })
    }
}
