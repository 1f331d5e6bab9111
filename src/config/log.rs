//! `[log]`: the format and filter of the daemon's log lines.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use super::error::{check, ConfigError};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive (`info`, `switchboard=debug,actix_web=warn`).
    pub level: String,
}

impl LogConfig {
    pub const DEFAULT_FORMAT: LogFormat = LogFormat::Plain;
    pub const DEFAULT_LEVEL: &'static str = "info";

    /// The filter [`Self::level`] describes.
    pub fn filter(&self) -> Result<EnvFilter, ConfigError> {
        EnvFilter::try_new(&self.level).map_err(|e| {
            ConfigError::invalid(
                "log.level",
                format!("invalid filter directive {:?}: {e}", self.level),
            )
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::non_empty("log.level", &self.level)?;
        // A directive without `=` must be a level: tracing reads a bare word as a target, so
        // `level = "warning"` would silence every line instead of being refused.
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        for directive in self
            .level
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            // (`target=level` directives are checked by the filter itself.)
            if !directive.contains('=')
                && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
            {
                return Err(ConfigError::invalid(
                    "log.level",
                    format!(
                        "{directive:?}: the level must be one of {} (target=level for one target)",
                        LEVELS.join(", ")
                    ),
                ));
            }
        }
        self.filter().map(drop)
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: Self::DEFAULT_FORMAT,
            level: Self::DEFAULT_LEVEL.to_owned(),
        }
    }
}
