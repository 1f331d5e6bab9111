//! Why a configuration was refused: every error names the key (`http.listen`) and, when known,
//! where its value came from (the file, an environment variable).

use std::fmt;
use std::path::PathBuf;

/// Where the value of a key came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// Not known (an error raised outside [`super::Config::load`]).
    #[default]
    Unknown,
    /// The built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable (`SWITCHBOARD_HTTP__LISTEN`).
    Env(String),
}

impl fmt::Display for Origin {
    /// Formats as a suffix: empty, or ` (in <file>)`, ` (from environment variable <NAME>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Unknown => Ok(()),
            Origin::Default => f.write_str(" (default)"),
            Origin::File(path) => write!(f, " (in {})", path.display()),
            Origin::Env(name) => write!(f, " (from environment variable {name})"),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file named explicitly (`--config PATH`) does not exist.
    #[error("config file {}: not found", path.display())]
    NotFound { path: PathBuf },

    /// The config file could not be read, or is not valid TOML.
    #[error("config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },

    /// A key no section declares (`htp`, `http.lisen`).
    #[error("unknown key \"{key}\"{origin}; expected one of: {}", expected.join(", "))]
    UnknownKey {
        key: String,
        /// The keys that are declared where the unknown one was found.
        expected: Vec<&'static str>,
        origin: Origin,
    },

    /// A value of the wrong type, or one that fails validation.
    #[error("{key}: {reason}{origin}")]
    Invalid {
        key: String,
        reason: String,
        origin: Origin,
    },

    /// Anything the loader could not tie to a key.
    #[error("configuration: {0}")]
    Other(String),
}

impl ConfigError {
    /// A validation error of `key`; the origin is filled in by [`super::Config::load`].
    pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
            origin: Origin::Unknown,
        }
    }

    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Where the offending value came from, if the error is about a key.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::UnknownKey { origin, .. } | ConfigError::Invalid { origin, .. } => {
                Some(origin)
            }
            _ => None,
        }
    }

    pub(crate) fn set_origin(&mut self, new: Origin) {
        if let ConfigError::UnknownKey { origin, .. } | ConfigError::Invalid { origin, .. } = self {
            *origin = new;
        }
    }
}

/// Checks of single values, each answering an error that names `key`.
pub(crate) mod check {
    use super::ConfigError;

    /// Durations and intervals: `0` is refused.
    pub fn positive_ms(key: &str, value: u64) -> Result<(), ConfigError> {
        if value == 0 {
            return Err(ConfigError::invalid(key, "must be greater than 0"));
        }
        Ok(())
    }

    /// Capacities and limits.
    pub fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
        if value < min {
            return Err(ConfigError::invalid(key, format!("must be at least {min}")));
        }
        Ok(())
    }

    /// Sizes with a ceiling.
    pub fn between(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
        if value > max {
            return Err(ConfigError::invalid(key, format!("must be at most {max}")));
        }
        at_least(key, value, min)
    }

    /// Names and paths.
    pub fn non_empty(key: &str, value: &str) -> Result<(), ConfigError> {
        if value.trim().is_empty() {
            return Err(ConfigError::invalid(key, "must not be empty"));
        }
        Ok(())
    }
}
