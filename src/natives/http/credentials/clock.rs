//! The credentials' clock: wall-clock milliseconds read from tokio's clock, anchored to the
//! wall clock when the native is built. Expiries, refreshes, the daily sweep and the pending
//! flows' 10 minutes all read it, so they agree, and tests run them on tokio's paused clock.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    /// A clock reading the wall clock now, moving with tokio's.
    pub fn start() -> Clock {
        Clock {
            base_ms: Utc::now().timestamp_millis(),
            base: Instant::now(),
        }
    }

    /// Now, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }

    /// Unix milliseconds `d` from now.
    pub fn after(&self, d: Duration) -> i64 {
        self.now_ms() + d.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_moves_with_tokio_s_clock() {
        let clock = Clock::start();
        let t0 = clock.now_ms();
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(clock.now_ms() - t0, 86_400_000);
        assert_eq!(clock.after(Duration::from_secs(1)) - t0, 86_401_000);
    }
}
