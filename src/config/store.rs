//! `[store]`: the SQLite database and the key that encrypts the secrets stored in it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// The SQLite store and its secret key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite database file (relative paths: to the working directory).
    pub path: PathBuf,
    /// File holding the 32-byte secret key; created with a fresh random key (mode 0600) when
    /// missing.
    pub secret_key_file: PathBuf,
    /// Name of an environment variable that, when set, holds the key (base64 of 32 bytes) and
    /// wins over [`Self::secret_key_file`].
    pub secret_key_env: String,
    /// How long a statement waits for a locked database, in milliseconds.
    pub busy_timeout_ms: u64,
}

impl StoreConfig {
    pub const DEFAULT_PATH: &'static str = "switchboard.db";
    pub const DEFAULT_SECRET_KEY_FILE: &'static str = "switchboard.key";
    pub const DEFAULT_SECRET_KEY_ENV: &'static str = "SWITCHBOARD_SECRET_KEY";
    pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5_000;

    /// [`Self::busy_timeout_ms`] as a duration.
    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::non_empty("store.path", &self.path.to_string_lossy())?;
        check::non_empty(
            "store.secret_key_file",
            &self.secret_key_file.to_string_lossy(),
        )?;
        check::non_empty("store.secret_key_env", &self.secret_key_env)?;
        if self.secret_key_env.contains(['=', '\0']) {
            return Err(ConfigError::invalid(
                "store.secret_key_env",
                format!(
                    "{:?} is not an environment variable name",
                    self.secret_key_env
                ),
            ));
        }
        check::positive_ms("store.busy_timeout_ms", self.busy_timeout_ms)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: Self::DEFAULT_PATH.into(),
            secret_key_file: Self::DEFAULT_SECRET_KEY_FILE.into(),
            secret_key_env: Self::DEFAULT_SECRET_KEY_ENV.to_owned(),
            busy_timeout_ms: Self::DEFAULT_BUSY_TIMEOUT_MS,
        }
    }
}
