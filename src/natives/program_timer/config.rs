//! `[timers]`: the native `program_timer` integration's own config section, declared on its registration
//! line (`natives::section`), read by config load under that key, errors naming the key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::service::{Settings, LOAD_LIMIT};
use crate::natives::section::{Invalid, NativeSection};

/// What to do with a repeating timer that fell due while the daemon was down (late by more
/// than the grace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Fire once, late (with `lateBySeconds`), then go on from the schedule.
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

    /// The service's settings, with `max_per_account` from `limits.timers_per_account`.
    pub fn settings(&self, max_per_account: u64) -> Settings {
        Settings {
            window: Duration::from_millis(self.window_ms),
            grace: Duration::from_millis(self.grace_ms),
            late: self.late_policy,
            load_limit: LOAD_LIMIT,
            max_per_account: usize::try_from(max_per_account).unwrap_or(usize::MAX),
        }
    }
}

impl NativeSection for TimersConfig {
    const KEY: &'static str = "timers";

    fn validate(&self) -> Result<(), Invalid> {
        Invalid::between("timers.window_ms", self.window_ms, 1_000, 86_400_000)?;
        Invalid::between("timers.grace_ms", self.grace_ms, 0, 86_400_000)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_out_of_range_are_refused_naming_the_key() {
        fn check(config: TimersConfig, expected: Result<(), (&str, &str)>) {
            let got = config.validate();
            let got = got
                .as_ref()
                .map(|_| ())
                .map_err(|e| (e.key, e.reason.as_str()));
            assert_eq!(got, expected, "{config:?}");
        }
        let with = |window_ms, grace_ms| TimersConfig {
            window_ms,
            grace_ms,
            ..TimersConfig::default()
        };
        check(TimersConfig::default(), Ok(()));
        check(
            with(999, 0),
            Err(("timers.window_ms", "must be at least 1000")),
        );
        check(
            with(86_400_001, 0),
            Err(("timers.window_ms", "must be at most 86400000")),
        );
        check(
            with(1_000, 86_400_001),
            Err(("timers.grace_ms", "must be at most 86400000")),
        );
        check(with(1_000, 0), Ok(()));
    }

    #[test]
    fn settings_follow_the_section_and_the_account_limit() {
        let config = TimersConfig {
            window_ms: 5_000,
            grace_ms: 2_000,
            late_policy: LatePolicy::Skip,
        };
        let s = config.settings(7);
        assert_eq!(
            (s.window, s.grace, s.late, s.load_limit, s.max_per_account),
            (
                Duration::from_secs(5),
                Duration::from_secs(2),
                LatePolicy::Skip,
                LOAD_LIMIT,
                7
            )
        );
    }
}
