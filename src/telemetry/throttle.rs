//! Rate-limited warnings: a condition that can repeat per event under overload (a full queue,
//! a store that keeps failing) logs at WARN at most once per interval, with how many times it
//! was passed over since.
//!
//! ```ignore
//! static FULL: Throttle = Throttle::new();
//! if let Some(suppressed) = FULL.allow(Throttle::EVERY) {
//!     tracing::warn!(suppressed, "the queue is full");
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

pub struct Throttle {
    /// When it last allowed a line (milliseconds since the process's first use; 0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// The usual interval between two lines of one kind.
    pub const EVERY: Duration = Duration::from_secs(10);

    pub const fn new() -> Self {
        Throttle {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines passed over since the last one)` when a line may be logged now.
    pub fn allow(&self, every: Duration) -> Option<u64> {
        let now = millis();
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < every.as_millis() as u64 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One thread wins the slot; the others count as passed over.
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let t = Throttle::new();
        assert_eq!(t.allow(Duration::from_secs(3600)), Some(0));
        assert_eq!(t.allow(Duration::from_secs(3600)), None);
        assert_eq!(t.allow(Duration::from_secs(3600)), None);
        assert_eq!(
            t.allow(Duration::ZERO),
            Some(2),
            "the two passed over are reported"
        );
    }
}
