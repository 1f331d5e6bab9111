//! The dedupe window: a repeated `external_event_id` within the window is acknowledged and not
//! routed again. A repeat is the same key on another event (a republished copy); the same event
//! delivered again (a JetStream redelivery, an inbox replay) is not a repeat: whether it was
//! handed on before is for the delivery's own bookkeeping. Bounded by time and by count; past
//! the count, the oldest keys leave early.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;
use uuid::Uuid;

pub struct DedupeWindow {
    window: Duration,
    capacity: usize,
    seen: FxHashMap<Arc<str>, Uuid>,
    order: VecDeque<(Instant, Arc<str>)>,
}

impl DedupeWindow {
    pub fn new(window: Duration, capacity: usize) -> Self {
        DedupeWindow {
            window,
            capacity: capacity.max(1),
            seen: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` came with another event than `event` within the window; remembers it if
    /// it is new.
    pub fn is_repeat(&mut self, key: &str, event: Uuid, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.window && self.order.len() < self.capacity {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        if let Some(first) = self.seen.get(key) {
            return *first != event;
        }
        let key: Arc<str> = Arc::from(key);
        self.seen.insert(key.clone(), event);
        self.order.push_back((now, key));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn repeats_inside_the_window_only() {
        let mut d = DedupeWindow::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(!d.is_repeat("a", ev(1), t0));
        assert!(d.is_repeat("a", ev(2), t0 + Duration::from_secs(5)));
        assert!(!d.is_repeat("b", ev(3), t0 + Duration::from_secs(5)));
        assert!(!d.is_repeat("a", ev(4), t0 + Duration::from_secs(11)));
    }

    #[test]
    fn the_same_event_delivered_again_is_not_a_repeat() {
        let mut d = DedupeWindow::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(!d.is_repeat("a", ev(1), t0));
        assert!(!d.is_repeat("a", ev(1), t0 + Duration::from_secs(1)));
        assert!(d.is_repeat("a", ev(2), t0 + Duration::from_secs(2)));
        assert!(!d.is_repeat("a", ev(1), t0 + Duration::from_secs(3)));
    }

    #[test]
    fn bounded_by_capacity() {
        let mut d = DedupeWindow::new(Duration::from_secs(3600), 2);
        let t = Instant::now();
        assert!(!d.is_repeat("a", ev(1), t));
        assert!(!d.is_repeat("b", ev(2), t));
        assert!(!d.is_repeat("c", ev(3), t));
        assert!(d.seen.len() <= 2);
        assert!(
            !d.is_repeat("a", ev(4), t),
            "a left early, past the capacity"
        );
    }
}
