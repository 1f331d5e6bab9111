//! `[limits]`: what one account may hold (connectors, flows, API tokens, timers), and how many
//! flows get metric series of their own. A write past a limit is refused naming the limit's
//! key; nothing already held is taken away when a limit is lowered.

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// Per-account quotas and the bound on per-flow metric series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connectors one account may have (its internal ones not counted).
    pub connectors_per_account: u64,
    /// Flows one account may have (stored and, for the home account, from files).
    pub flows_per_account: u64,
    /// API tokens one account may have.
    pub tokens_per_account: u64,
    /// Timers one account may hold over all its `program_timer` connectors and personas.
    pub timers_per_account: u64,
    /// Flows (by agent and flow name) with metric series of their own; the invocations of
    /// flows past it are counted under `agent="_other", flow="_other"`. It bounds per-connector
    /// series (natives' requests) the same way.
    pub flow_series: u64,
}

impl LimitsConfig {
    pub const DEFAULT_CONNECTORS_PER_ACCOUNT: u64 = 100;
    pub const DEFAULT_FLOWS_PER_ACCOUNT: u64 = 200;
    pub const DEFAULT_TOKENS_PER_ACCOUNT: u64 = 100;
    pub const DEFAULT_TIMERS_PER_ACCOUNT: u64 = 1_000_000;
    pub const DEFAULT_FLOW_SERIES: u64 = 200;

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::at_least(
            "limits.connectors_per_account",
            self.connectors_per_account,
            1,
        )?;
        check::at_least("limits.flows_per_account", self.flows_per_account, 1)?;
        check::at_least("limits.tokens_per_account", self.tokens_per_account, 1)?;
        check::at_least("limits.timers_per_account", self.timers_per_account, 1)?;
        check::between("limits.flow_series", self.flow_series, 1, 100_000)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            connectors_per_account: Self::DEFAULT_CONNECTORS_PER_ACCOUNT,
            flows_per_account: Self::DEFAULT_FLOWS_PER_ACCOUNT,
            tokens_per_account: Self::DEFAULT_TOKENS_PER_ACCOUNT,
            timers_per_account: Self::DEFAULT_TIMERS_PER_ACCOUNT,
            flow_series: Self::DEFAULT_FLOW_SERIES,
        }
    }
}
