//! `[egress]`: where outbound requests may go. The daemon refuses loopback, link-local,
//! private and other internal addresses ([`crate::outbound::EgressPolicy`]); `allow` lists the
//! CIDR blocks an operator opens anyway (runners on a private network).

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use crate::outbound::EgressPolicy;

/// The egress allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// CIDR blocks (`10.0.0.0/8`, `fd00::/8`) or single addresses (`127.0.0.1`) that outbound
    /// requests may reach although the default denies them.
    pub allow: Vec<String>,
}

impl EgressConfig {
    pub const DEFAULT_ALLOW: &'static [&'static str] = &[];

    /// The policy these settings make; call after [`Self::validate`].
    pub fn policy(&self) -> EgressPolicy {
        EgressPolicy::new(
            EgressPolicy::parse_allow(self.allow.iter().map(String::as_str)).unwrap_or_default(),
        )
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        EgressPolicy::parse_allow(self.allow.iter().map(String::as_str))
            .map(|_| ())
            .map_err(|bad| {
                ConfigError::invalid(
                    "egress.allow",
                    format!("{bad:?} is not a CIDR block (like \"10.0.0.0/8\") or an IP address"),
                )
            })
    }
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            allow: Self::DEFAULT_ALLOW
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}
