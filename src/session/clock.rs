//! A session's clock: when it was last seen, or that it ended, in one atomic word. A connector
//! actor touches the clocks of its live sessions without any lock; whoever ends a session (the
//! sweeper, `conversation_ended`) swaps the word to [`ENDED`]. Both are compare-and-swap on the
//! same word, so a touch and an end never both win: a touch that lands first keeps the session
//! alive (the sweeper's swap fails and it looks again next round), a touch that comes second
//! sees the end and starts a new session.

use std::sync::atomic::{AtomicU64, Ordering};

/// The word of an ended session.
const ENDED: u64 = u64::MAX;

/// Nanoseconds since the session table's base instant, or [`ENDED`].
#[derive(Debug)]
pub struct SessionClock(AtomicU64);

impl SessionClock {
    pub fn new(now_ns: u64) -> Self {
        SessionClock(AtomicU64::new(now_ns.min(ENDED - 1)))
    }

    /// Notes activity at `now_ns`; `false` if the session has ended.
    pub fn touch(&self, now_ns: u64) -> bool {
        let now = now_ns.min(ENDED - 1);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seen| {
                (seen != ENDED).then_some(seen.max(now))
            })
            .is_ok()
    }

    /// Ends the session if it has not been seen since `before_ns`; `true` if it ended now.
    pub fn end_if_idle(&self, before_ns: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seen| {
                (seen != ENDED && seen <= before_ns).then_some(ENDED)
            })
            .is_ok()
    }

    /// Ends the session; `true` if it was live.
    pub fn end(&self) -> bool {
        self.0.swap(ENDED, Ordering::AcqRel) != ENDED
    }

    pub fn ended(&self) -> bool {
        self.0.load(Ordering::Acquire) == ENDED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_keeps_a_session_from_ending_as_idle() {
        let c = SessionClock::new(10);
        assert!(c.touch(50));
        assert!(!c.end_if_idle(40), "seen at 50, after the idle cut at 40");
        assert!(c.end_if_idle(50));
        assert!(c.ended());
    }

    #[test]
    fn an_ended_session_refuses_touches() {
        let c = SessionClock::new(10);
        assert!(c.end());
        assert!(!c.touch(20));
        assert!(!c.end(), "ends once");
        assert!(!c.end_if_idle(u64::MAX - 1));
    }

    #[test]
    fn time_never_runs_backwards() {
        let c = SessionClock::new(100);
        assert!(c.touch(50));
        assert!(!c.end_if_idle(99), "still seen at 100");
    }
}
