//! The `program_timer` native's metric names, their descriptions, and the handles its service
//! holds.

use metrics::{counter, gauge, histogram, Counter, Histogram};

pub const TIMERS_PENDING: &str = "switchboard_timers_pending";
pub const TIMERS_FIRED_TOTAL: &str = "switchboard_timers_fired_total";
pub const TIMERS_CANCELLED_TOTAL: &str = "switchboard_timers_cancelled_total";
pub const TIMER_LATENESS_SECONDS: &str = "switchboard_timer_lateness_seconds";

/// Registers the descriptions (called by the telemetry's `describe` at start, through the
/// component).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(TIMERS_PENDING, "Timers set and not yet done, in the store.");
    describe_counter!(TIMERS_FIRED_TOTAL, "Timer firings handed to routing.");
    describe_counter!(
        TIMERS_CANCELLED_TOTAL,
        "Timers cancelled, by reason (command, session_ended, connector_deleted, broken: one that could not be re-armed)."
    );
    describe_histogram!(
        TIMER_LATENESS_SECONDS,
        Unit::Seconds,
        "How late timers fired after their due time."
    );
}

/// The timer service's handles, resolved once.
pub struct TimerMetrics {
    fired: Counter,
    lateness: Histogram,
}

impl TimerMetrics {
    pub fn new() -> Self {
        TimerMetrics {
            fired: counter!(TIMERS_FIRED_TOTAL),
            lateness: histogram!(TIMER_LATENESS_SECONDS),
        }
    }

    /// A timer fired, `late` seconds after it was due.
    pub fn fired(&self, late: f64) {
        self.fired.increment(1);
        self.lateness.record(late);
    }
}

impl Default for TimerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A timer was cancelled: by a command, or because its session ended.
pub fn timer_cancelled(reason: &'static str) {
    counter!(TIMERS_CANCELLED_TOTAL, "reason" => reason).increment(1);
}

/// Timers pending in the store.
pub fn timers_pending(n: usize) {
    gauge!(TIMERS_PENDING).set(n as f64);
}
