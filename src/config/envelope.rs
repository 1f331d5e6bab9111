//! `[envelope]`: size limits of one event or command envelope; becomes a [`Limits`].

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};
use crate::wire::Limits;

/// Size limits of one envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvelopeSection {
    /// Arguments of one event or command at most.
    pub max_arguments: usize,
    /// Bytes of one argument value at most.
    pub max_argument_bytes: usize,
}

impl EnvelopeSection {
    pub const DEFAULT_MAX_ARGUMENTS: usize = 256;
    pub const DEFAULT_MAX_ARGUMENT_BYTES: usize = 64 * 1024;

    /// The wire layer's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_arguments: self.max_arguments,
            max_argument_bytes: self.max_argument_bytes,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::at_least("envelope.max_arguments", self.max_arguments as u64, 1)?;
        check::at_least(
            "envelope.max_argument_bytes",
            self.max_argument_bytes as u64,
            1,
        )
    }
}

impl Default for EnvelopeSection {
    fn default() -> Self {
        EnvelopeSection {
            max_arguments: Self::DEFAULT_MAX_ARGUMENTS,
            max_argument_bytes: Self::DEFAULT_MAX_ARGUMENT_BYTES,
        }
    }
}
