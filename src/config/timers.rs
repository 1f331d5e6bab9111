//! `[timers]`: the native `program_timer` integration's timer service.

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// What to do with a repeating timer that fell due while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Fire once, late, then go on from the schedule.
    FireOnce,
    /// Skip to the next interval without firing (one-shot timers always fire).
    Skip,
}

/// The timer service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// Timers due within this are held in memory; the rest stay in the store until then.
    pub window_ms: u64,
    /// How far in the past a `fireAt` may be (it then fires at once), and how late a firing
    /// may be and still count as on time.
    pub grace_ms: u64,
    /// A repeating timer that fell due while the daemon was down: `fire_once` or `skip`.
    pub late_policy: LatePolicy,
}

impl TimersConfig {
    pub const DEFAULT_WINDOW_MS: u64 = 60_000;
    pub const DEFAULT_GRACE_MS: u64 = 60_000;
    pub const DEFAULT_LATE_POLICY: LatePolicy = LatePolicy::FireOnce;

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::between("timers.window_ms", self.window_ms, 1_000, 86_400_000)?;
        check::between("timers.grace_ms", self.grace_ms, 0, 86_400_000)
    }
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            window_ms: Self::DEFAULT_WINDOW_MS,
            grace_ms: Self::DEFAULT_GRACE_MS,
            late_policy: Self::DEFAULT_LATE_POLICY,
        }
    }
}
