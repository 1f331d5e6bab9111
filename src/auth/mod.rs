//! The trust boundary's vocabulary: API tokens ([`token`]), their scopes ([`scope`]), the
//! principal a request acts as ([`Principal`]) and why a request is refused ([`AuthError`]).
//! Where tokens live and how a bearer becomes a principal is [`keeper`].

pub mod keeper;
pub mod scope;
pub mod token;

use crate::domain::Idn;
use crate::fault::{Blame, Fault};

pub use keeper::{TokenKeeper, TokenRecord};
pub use scope::{Scope, Scopes};
pub use token::TokenText;

/// Who a request acts as: an account, and what its token may do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: Idn,
    pub scopes: Scopes,
}

impl Principal {
    /// Allowed when the token has `scope` (or one implying it); otherwise a 403 naming it.
    pub fn need(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(Scope::Admin)
    }

    /// Whose tokens it manages: every account's (`admin`: `None`), its own (`account:admin`),
    /// or none (a 403 naming `account:admin`).
    pub fn token_accounts(&self) -> Result<Option<&Idn>, AuthError> {
        self.need(Scope::AccountAdmin)?;
        Ok((!self.is_admin()).then_some(&self.account))
    }

    /// Whether it may grant `scopes` to a new token, or revoke a token holding them: `admin`
    /// any; anyone else none of the operator's (a 403 naming the first).
    pub fn may_grant(&self, scopes: Scopes) -> Result<(), AuthError> {
        match scopes.operator_scope() {
            Some(s) if !self.is_admin() => Err(AuthError::OperatorScope(s)),
            _ => Ok(()),
        }
    }
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this route needs `Authorization: Bearer <token>`")]
    Missing,
    /// Malformed, unknown, or a wrong secret: the caller learns no more than that.
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token lacks the scope `{}`", .0.as_str())]
    MissingScope(Scope),
    /// A token with an operator's scope is the operator's to grant or revoke.
    #[error("only an operator's `admin` token grants or revokes `{}`", .0.as_str())]
    OperatorScope(Scope),
    /// The envelope names an account the token does not act for.
    #[error("the token acts for account {token}, the request names {named}")]
    WrongAccount { token: String, named: String },
}

impl AuthError {
    /// 401 (who are you) rather than 403 (you may not).
    pub fn unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked
        )
    }
}

impl Blame for AuthError {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}
