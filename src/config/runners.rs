//! `[runners]`: skill runners reached over the network (webhook runners): timeout, retries,
//! and how long a rotated signing secret keeps signing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// Network skill runners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnersConfig {
    /// Deadline of one request to a runner, unless the flow sets its own, in milliseconds.
    pub default_timeout_ms: u64,
    /// Attempts of one request at most (1: no retry), unless the flow sets its own.
    pub default_max_attempts: u32,
    /// First retry delay, in milliseconds; later ones grow (exponential backoff) up to
    /// [`Self::backoff_max_ms`].
    pub backoff_initial_ms: u64,
    /// Largest retry delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// After a flow's runner secret is rotated, how long the secret it replaced signs too
    /// (a second `v1,` signature), in milliseconds; 0: not at all.
    pub secret_overlap_ms: u64,
}

impl RunnersConfig {
    pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 100;
    pub const DEFAULT_BACKOFF_MAX_MS: u64 = 5_000;
    pub const DEFAULT_SECRET_OVERLAP_MS: u64 = 24 * 60 * 60 * 1000;

    /// [`Self::default_timeout_ms`] as a duration.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.default_timeout_ms)
    }

    /// [`Self::backoff_initial_ms`] as a duration.
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms)
    }

    /// [`Self::backoff_max_ms`] as a duration.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::positive_ms("runners.default_timeout_ms", self.default_timeout_ms)?;
        check::at_least(
            "runners.default_max_attempts",
            u64::from(self.default_max_attempts),
            1,
        )?;
        check::positive_ms("runners.backoff_initial_ms", self.backoff_initial_ms)?;
        check::positive_ms("runners.backoff_max_ms", self.backoff_max_ms)?;
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(ConfigError::invalid(
                "runners.backoff_initial_ms",
                format!(
                    "must not exceed runners.backoff_max_ms ({} > {})",
                    self.backoff_initial_ms, self.backoff_max_ms
                ),
            ));
        }
        Ok(())
    }
}

impl Default for RunnersConfig {
    fn default() -> Self {
        RunnersConfig {
            default_timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            default_max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff_initial_ms: Self::DEFAULT_BACKOFF_INITIAL_MS,
            backoff_max_ms: Self::DEFAULT_BACKOFF_MAX_MS,
            secret_overlap_ms: Self::DEFAULT_SECRET_OVERLAP_MS,
        }
    }
}
