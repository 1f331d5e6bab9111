//! Credential connectors: per account, under `/v1/credentials` ([`routes`]), of the types in
//! [`kind`], stored sealed in the `http` native's table ([`store`]); an http connector's
//! `credential` setting or a `send_request`'s `credential` argument names one.

pub mod error;
pub mod kind;
pub mod oauth;
pub mod refresh;
pub mod resolve;
pub mod routes;
pub mod store;

pub use error::CredentialError;
pub use kind::CredentialType;
pub use store::{Credential, CredentialStore};

/// Re-seals what the `http` native keeps sealed (`switchboard rekey`): the credentials'
/// secret fields and tokens.
pub fn reseal(
    tx: &rusqlite::Transaction<'_>,
    ring: &crate::store::SecretBox,
) -> Result<usize, crate::natives::component::ResealError> {
    store::reseal(tx, ring)
}
