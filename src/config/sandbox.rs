//! `[sandbox]`: the sandbox integration (a test chat inside the daemon).

use serde::{Deserialize, Serialize};

/// The sandbox integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Whether the sandbox integration is served.
    pub enabled: bool,
    /// Whether the built-in demo runner answers sandbox flows.
    pub demo_runner: bool,
}

impl SandboxConfig {
    pub const DEFAULT_ENABLED: bool = true;
    pub const DEFAULT_DEMO_RUNNER: bool = false;
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: Self::DEFAULT_ENABLED,
            demo_runner: Self::DEFAULT_DEMO_RUNNER,
        }
    }
}
