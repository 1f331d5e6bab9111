//! `[sandbox]`: the sandbox integration's config section (a test chat inside the daemon), a
//! section of `config::Config`.

use serde::{Deserialize, Serialize};

use crate::api::listener::Switch;

/// The sandbox integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Whether the sandbox integration is served.
    pub enabled: bool,
    /// Whether the built-in demo runner answers sandbox flows.
    pub demo_runner: bool,
    /// Whether the sandbox page's socket works without a token (as the `default` account's
    /// sandbox): `true`, `false`, or `"auto"` (only when `http.listen` is a loopback address,
    /// and then only for pages served from a loopback host). Otherwise the page asks for a
    /// token with `events:write`.
    pub without_token: Switch,
}

impl SandboxConfig {
    pub const DEFAULT_ENABLED: bool = true;
    pub const DEFAULT_DEMO_RUNNER: bool = false;
    pub const DEFAULT_WITHOUT_TOKEN: Switch = Switch::AUTO;

    /// Whether the socket is open without a token on a listener on `listen` (the listener a
    /// request came in on: `http.listen`, bound).
    pub fn open_without_token(&self, listen: std::net::SocketAddr) -> bool {
        self.without_token.resolve(listen, true)
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: Self::DEFAULT_ENABLED,
            demo_runner: Self::DEFAULT_DEMO_RUNNER,
            without_token: Self::DEFAULT_WITHOUT_TOKEN,
        }
    }
}
