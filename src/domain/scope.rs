//! Keys of a connector: `(account, integration, connector)` as the control plane names it
//! ([`ConnectorKey`]), and pre-hashed for the hot path ([`ScopeKey`]).

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use super::Idn;

/// `(account, integration, connector)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorKey {
    pub account: Idn,
    pub integration: Idn,
    pub connector: Idn,
}

impl ConnectorKey {
    pub fn new(account: &Idn, integration: &Idn, connector: &Idn) -> Self {
        ConnectorKey {
            account: account.clone(),
            integration: integration.clone(),
            connector: connector.clone(),
        }
    }
}

fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

/// The pre-hashed scope of one connector. Connector actors build it once and reuse it for
/// every event; [`ScopeKey::new`] builds one for a one-off lookup.
#[derive(Debug, Clone)]
pub struct ScopeKey {
    pub account: Idn,
    pub integration: Idn,
    pub connector: Idn,
    h_account: u64,
    h_integration: u64,
    h_connector: u64,
}

impl ScopeKey {
    pub fn new(account: Idn, integration: Idn, connector: Idn) -> Self {
        ScopeKey {
            h_account: hash_str(account.as_str()),
            h_integration: hash_str(integration.as_str()),
            h_connector: hash_str(connector.as_str()),
            account,
            integration,
            connector,
        }
    }
}

impl ScopeKey {
    /// The hashes of account, integration and connector (the subscription index's key parts).
    #[inline]
    pub fn hashes(&self) -> [u64; 3] {
        [self.h_account, self.h_integration, self.h_connector]
    }
}
