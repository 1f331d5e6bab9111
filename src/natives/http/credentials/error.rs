//! The credential boundary's refusals: whose fault, whether a retry can succeed, and the one
//! conversion to an API error.

use crate::api::error::{kind_of, ApiError, Kind};
use crate::fault::{Blame, Fault};
use crate::store::StoreError;

/// Why a credential operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A field of the request is wrong.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("no credential {0} in this account")]
    NotFound(String),
    #[error("a credential named {0:?} exists in this account")]
    NameTaken(String),
    /// Http connectors reference it (deleting takes `?force=true`).
    #[error("http connectors use this credential: {}; delete with ?force=true to break them", .0.join(", "))]
    InUse(Vec<String>),
    /// The OAuth provider refused or failed.
    #[error("the OAuth provider: {0}")]
    Provider(String),
    /// A sealed field does not open (wrong key ring).
    #[error("a sealed field of credential {0} does not open")]
    Sealed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CredentialError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CredentialError {
        CredentialError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl Blame for CredentialError {
    fn fault(&self) -> Fault {
        match self {
            CredentialError::Sealed(_) => Fault::Daemon,
            CredentialError::Provider(_) => Fault::Peer,
            CredentialError::Store(e) => e.fault(),
            _ => Fault::Caller,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            CredentialError::Store(e) => e.retryable(),
            _ => false,
        }
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> ApiError {
        let (kind, code, field) = match &e {
            CredentialError::Invalid { field, .. } => {
                (Kind::Invalid, "invalid", Some(field.clone()))
            }
            CredentialError::NotFound(_) => (Kind::NotFound, "not_found", None),
            CredentialError::NameTaken(_) => (Kind::Conflict, "exists", Some("name".into())),
            CredentialError::InUse(_) => (Kind::Conflict, "credential_in_use", None),
            CredentialError::Provider(_) => (Kind::BadGateway, "oauth_provider", None),
            CredentialError::Sealed(_) | CredentialError::Store(_) => {
                tracing::error!(error = %e, "credential store failure");
                (kind_of(&e, Kind::Invalid), "store", None)
            }
        };
        let mut out = ApiError::new(kind, code, e.to_string());
        out.field = field;
        out
    }
}
