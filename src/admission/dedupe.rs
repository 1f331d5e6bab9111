//! The dedupe window: a repeated `external_event_id` within the window is acknowledged and not
//! routed again. Bounded by time and by count; past the count, the oldest keys leave early.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashSet;
use tokio::time::Instant;

pub struct DedupeWindow {
    window: Duration,
    capacity: usize,
    seen: FxHashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl DedupeWindow {
    pub fn new(window: Duration, capacity: usize) -> Self {
        DedupeWindow {
            window,
            capacity: capacity.max(1),
            seen: FxHashSet::default(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` was seen within the window; remembers it if not.
    pub fn is_repeat(&mut self, id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.window && self.order.len() < self.capacity {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        if self.seen.contains(id) {
            return true;
        }
        self.seen.insert(id.to_owned());
        self.order.push_back((now, id.to_owned()));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_inside_the_window_only() {
        let mut d = DedupeWindow::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(!d.is_repeat("a", t0));
        assert!(d.is_repeat("a", t0 + Duration::from_secs(5)));
        assert!(!d.is_repeat("b", t0 + Duration::from_secs(5)));
        assert!(!d.is_repeat("a", t0 + Duration::from_secs(11)));
    }

    #[test]
    fn bounded_by_capacity() {
        let mut d = DedupeWindow::new(Duration::from_secs(3600), 2);
        let t = Instant::now();
        assert!(!d.is_repeat("a", t));
        assert!(!d.is_repeat("b", t));
        assert!(!d.is_repeat("c", t));
        assert!(d.seen.len() <= 2);
        assert!(!d.is_repeat("a", t), "a left early, past the capacity");
    }
}
