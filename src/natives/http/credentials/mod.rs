//! Credential connectors: per account, under `/v1/credentials` ([`routes`]), of the types in
//! [`kind`], stored sealed in the `http` native's table ([`store`]); an http connector's
//! `credential` setting or a `send_request`'s `credential` argument names one. OAuth flows
//! waiting for their callback are kept in the native's table too ([`pending`]).

pub mod clock;
pub mod error;
pub mod kind;
pub mod oauth;
pub mod pending;
pub mod refresh;
pub mod resolve;
pub mod routes;
pub mod store;
pub mod sweep;

pub use error::CredentialError;
pub use kind::CredentialType;
pub use store::{Credential, CredentialStore};

/// The `http` component's migrations: its tables, in order (a released step is never edited).
pub const MIGRATIONS: &[&str] = &[store::TABLE, pending::TABLE];

/// Re-seals what the `http` native keeps sealed (`switchboard rekey`): the credentials'
/// secret fields and tokens, and the verifiers of the flows waiting for their callback.
pub fn reseal(
    tx: &rusqlite::Transaction<'_>,
    ring: &crate::store::SecretBox,
) -> Result<usize, crate::natives::component::ResealError> {
    Ok(store::reseal(tx, ring)? + pending::reseal(tx, ring)?)
}
