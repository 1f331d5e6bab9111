//! `[dead_letters]`: how much of a refused body is kept, and how long and how many dead letters
//! stay, per account.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// Dead-letter retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLettersConfig {
    /// Of a body that never decoded (or was too large, or of an unsupported type), the bytes
    /// kept in its dead letter; the rest is counted, not kept.
    pub max_raw_bytes: usize,
    /// Most dead letters kept per account; past it the account's oldest go first.
    pub max_count: u64,
    /// Most payload bytes kept per account; past it the account's oldest go first.
    pub max_bytes: u64,
    /// Dead letters older than this many hours go.
    pub max_age_hours: u64,
}

impl DeadLettersConfig {
    pub const DEFAULT_MAX_RAW_BYTES: usize = 4096;
    pub const DEFAULT_MAX_COUNT: u64 = 100_000;
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
    pub const DEFAULT_MAX_AGE_HOURS: u64 = 30 * 24;

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_hours * 3600)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::between(
            "dead_letters.max_raw_bytes",
            self.max_raw_bytes as u64,
            0,
            16 * 1024 * 1024,
        )?;
        check::at_least("dead_letters.max_count", self.max_count, 1)?;
        check::at_least("dead_letters.max_bytes", self.max_bytes, 1024)?;
        check::at_least("dead_letters.max_age_hours", self.max_age_hours, 1)
    }
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        DeadLettersConfig {
            max_raw_bytes: Self::DEFAULT_MAX_RAW_BYTES,
            max_count: Self::DEFAULT_MAX_COUNT,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age_hours: Self::DEFAULT_MAX_AGE_HOURS,
        }
    }
}
