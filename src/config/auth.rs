//! `[auth]` and `[metrics]`: where the first admin token is written, how long a token is
//! trusted from cache, and which conveniences work without a token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};
pub use crate::api::listener::{AutoWord, Switch};

/// API tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Where the first start writes an admin token (mode 0600) when the store has no token;
    /// empty: `admin.token` beside `store.path`.
    pub admin_token_file: PathBuf,
    /// How long a token read from the store is trusted before it is read again (a token
    /// revoked by `switchboard token revoke` beside a running daemon stops working within
    /// this time; one revoked over the API stops at once), in milliseconds.
    pub cache_ttl_ms: u64,
}

impl AuthConfig {
    pub const DEFAULT_ADMIN_TOKEN_FILE: &'static str = "";
    pub const DEFAULT_CACHE_TTL_MS: u64 = 5_000;
    /// The file name used beside the database when `admin_token_file` is empty.
    pub const ADMIN_TOKEN_FILE_NAME: &'static str = "admin.token";

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }

    /// The admin token file for a store at `store_path`.
    pub fn admin_token_path(&self, store_path: &Path) -> PathBuf {
        if self.admin_token_file.as_os_str().is_empty() {
            store_path
                .parent()
                .unwrap_or(Path::new(""))
                .join(Self::ADMIN_TOKEN_FILE_NAME)
        } else {
            self.admin_token_file.clone()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::between("auth.cache_ttl_ms", self.cache_ttl_ms, 0, 3_600_000)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_token_file: Self::DEFAULT_ADMIN_TOKEN_FILE.into(),
            cache_ttl_ms: Self::DEFAULT_CACHE_TTL_MS,
        }
    }
}

/// `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether `GET /metrics` needs a token with `metrics:read`: `true`, `false`, or
    /// `"auto"` (needed unless `http.listen` is a loopback address).
    pub require_token: Switch,
}

impl MetricsConfig {
    pub const DEFAULT_REQUIRE_TOKEN: Switch = Switch::AUTO;

    /// Whether a scrape of a listener on `listen` needs a token.
    pub fn token_required(&self, listen: SocketAddr) -> bool {
        self.require_token.resolve(listen, false)
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            require_token: Self::DEFAULT_REQUIRE_TOKEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_listener() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let m = MetricsConfig::default();
        assert!(!m.token_required(lo));
        assert!(m.token_required(any));
        let forced = MetricsConfig {
            require_token: Switch::Set(true),
        };
        assert!(forced.token_required(lo));
        for (text, want) in [
            ("true", Switch::Set(true)),
            ("false", Switch::Set(false)),
            ("\"auto\"", Switch::AUTO),
        ] {
            assert_eq!(serde_json::from_str::<Switch>(text).unwrap(), want);
        }
        let e = serde_json::from_str::<Switch>("\"sometimes\"").unwrap_err();
        assert!(e.to_string().contains("true, false or \"auto\""), "{e}");
        assert_eq!(
            AuthConfig::default().admin_token_path(Path::new("/var/lib/sb/switchboard.db")),
            Path::new("/var/lib/sb/admin.token")
        );
    }
}
