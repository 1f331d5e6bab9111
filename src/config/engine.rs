//! `[engine]`: the routing engine's actors, deadlines and capacities; becomes an
//! [`EngineConfig`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};
use crate::engine::EngineConfig;

/// Milliseconds of a default duration, at compile time.
const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The engine section; see [`EngineConfig`] for what each value does. Durations are in
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Worker arbiters (threads) for connector actors and flow shards; 0: the current one.
    pub workers: usize,
    /// Deadline of one skill invocation.
    pub invocation_timeout_ms: u64,
    /// A flow instance with nothing to do retires after this long.
    pub flow_idle_timeout_ms: u64,
    /// A session without events ends (`session_ended`, reason `idle`) after this long.
    pub session_idle_timeout_ms: u64,
    /// How often idle sessions are looked for.
    pub session_sweep_interval_ms: u64,
    /// Events waiting in one flow instance at most.
    pub max_pending_per_flow_instance: usize,
    /// Events in flight in the whole engine at most (backpressure).
    pub inflight_limit: usize,
    /// Repeats of an `external_event_id` inside this window are dropped.
    pub dedupe_window_ms: u64,
    /// Event ids remembered for the dedupe window at most.
    pub dedupe_capacity: usize,
    /// How long a command act id is remembered to route its result back.
    pub command_act_ttl_ms: u64,
    /// Command act ids remembered at most.
    pub command_act_capacity: usize,
    /// A flow state value (`set_state`) older than this reads as unset.
    pub flow_state_ttl_ms: u64,
    /// Flow state values kept at most; past it the oldest leave.
    pub flow_state_capacity: usize,
}

impl EngineSection {
    pub const DEFAULT_WORKERS: usize = 2;
    pub const DEFAULT_INVOCATION_TIMEOUT_MS: u64 = ms(EngineConfig::DEFAULT_INVOCATION_TIMEOUT);
    pub const DEFAULT_FLOW_IDLE_TIMEOUT_MS: u64 = ms(EngineConfig::DEFAULT_FLOW_IDLE_TIMEOUT);
    pub const DEFAULT_SESSION_IDLE_TIMEOUT_MS: u64 = ms(EngineConfig::DEFAULT_SESSION_IDLE_TIMEOUT);
    pub const DEFAULT_SESSION_SWEEP_INTERVAL_MS: u64 =
        ms(EngineConfig::DEFAULT_SESSION_SWEEP_INTERVAL);
    pub const DEFAULT_MAX_PENDING_PER_FLOW_INSTANCE: usize = EngineConfig::DEFAULT_MAX_PENDING;
    pub const DEFAULT_INFLIGHT_LIMIT: usize = EngineConfig::DEFAULT_INFLIGHT_LIMIT;
    pub const DEFAULT_DEDUPE_WINDOW_MS: u64 = ms(EngineConfig::DEFAULT_DEDUPE_WINDOW);
    pub const DEFAULT_DEDUPE_CAPACITY: usize = EngineConfig::DEFAULT_DEDUPE_CAPACITY;
    pub const DEFAULT_COMMAND_ACT_TTL_MS: u64 = ms(EngineConfig::DEFAULT_ACT_TTL);
    pub const DEFAULT_COMMAND_ACT_CAPACITY: usize = EngineConfig::DEFAULT_ACT_CAPACITY;
    pub const DEFAULT_FLOW_STATE_TTL_MS: u64 = ms(EngineConfig::DEFAULT_FLOW_STATE_TTL);
    pub const DEFAULT_FLOW_STATE_CAPACITY: usize = EngineConfig::DEFAULT_FLOW_STATE_CAPACITY;

    /// The engine's own settings.
    pub fn to_engine_config(&self) -> EngineConfig {
        EngineConfig {
            workers: self.workers,
            invocation_timeout: Duration::from_millis(self.invocation_timeout_ms),
            flow_idle_timeout: Duration::from_millis(self.flow_idle_timeout_ms),
            session_idle_timeout: Duration::from_millis(self.session_idle_timeout_ms),
            session_sweep_interval: Duration::from_millis(self.session_sweep_interval_ms),
            max_pending_per_flow_instance: self.max_pending_per_flow_instance,
            inflight_limit: self.inflight_limit,
            dedupe_window: Duration::from_millis(self.dedupe_window_ms),
            dedupe_capacity: self.dedupe_capacity,
            command_act_ttl: Duration::from_millis(self.command_act_ttl_ms),
            command_act_capacity: self.command_act_capacity,
            flow_state_ttl: Duration::from_millis(self.flow_state_ttl_ms),
            flow_state_capacity: self.flow_state_capacity,
            // Not configuration: boot reads the daemon's key from the store.
            persona_key: crate::domain::PersonaKey::Unkeyed,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("engine.invocation_timeout_ms", self.invocation_timeout_ms),
            ("engine.flow_idle_timeout_ms", self.flow_idle_timeout_ms),
            (
                "engine.session_idle_timeout_ms",
                self.session_idle_timeout_ms,
            ),
            (
                "engine.session_sweep_interval_ms",
                self.session_sweep_interval_ms,
            ),
            ("engine.dedupe_window_ms", self.dedupe_window_ms),
            ("engine.command_act_ttl_ms", self.command_act_ttl_ms),
            ("engine.flow_state_ttl_ms", self.flow_state_ttl_ms),
        ] {
            check::positive_ms(key, value)?;
        }
        for (key, value) in [
            (
                "engine.max_pending_per_flow_instance",
                self.max_pending_per_flow_instance,
            ),
            ("engine.inflight_limit", self.inflight_limit),
            ("engine.dedupe_capacity", self.dedupe_capacity),
            ("engine.command_act_capacity", self.command_act_capacity),
            ("engine.flow_state_capacity", self.flow_state_capacity),
        ] {
            check::at_least(key, value as u64, 1)?;
        }
        Ok(())
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            workers: Self::DEFAULT_WORKERS,
            invocation_timeout_ms: Self::DEFAULT_INVOCATION_TIMEOUT_MS,
            flow_idle_timeout_ms: Self::DEFAULT_FLOW_IDLE_TIMEOUT_MS,
            session_idle_timeout_ms: Self::DEFAULT_SESSION_IDLE_TIMEOUT_MS,
            session_sweep_interval_ms: Self::DEFAULT_SESSION_SWEEP_INTERVAL_MS,
            max_pending_per_flow_instance: Self::DEFAULT_MAX_PENDING_PER_FLOW_INSTANCE,
            inflight_limit: Self::DEFAULT_INFLIGHT_LIMIT,
            dedupe_window_ms: Self::DEFAULT_DEDUPE_WINDOW_MS,
            dedupe_capacity: Self::DEFAULT_DEDUPE_CAPACITY,
            command_act_ttl_ms: Self::DEFAULT_COMMAND_ACT_TTL_MS,
            command_act_capacity: Self::DEFAULT_COMMAND_ACT_CAPACITY,
            flow_state_ttl_ms: Self::DEFAULT_FLOW_STATE_TTL_MS,
            flow_state_capacity: Self::DEFAULT_FLOW_STATE_CAPACITY,
        }
    }
}
