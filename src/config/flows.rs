//! `[flows]`: where flow documents are loaded from at start.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// Flow documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Directory of flow documents (relative paths: to the working directory).
    pub dir: PathBuf,
}

impl FlowsConfig {
    pub const DEFAULT_DIR: &'static str = "config/flows";

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::non_empty("flows.dir", &self.dir.to_string_lossy())
    }
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            dir: Self::DEFAULT_DIR.into(),
        }
    }
}
