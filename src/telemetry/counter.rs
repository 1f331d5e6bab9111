//! A Prometheus counter sharded per thread ([`super::thread_slot`]): an increment is a plain
//! load and store on a cache line of the incrementing thread's own, where the exporter's
//! counter is two contended atomic adds (the value and its generation).

use std::sync::atomic::{AtomicU64, Ordering};

use super::thread_slot::{add, thread_slot, SHARDS, SHARED};

#[repr(align(128))]
struct Shard(AtomicU64);

/// A monotonic counter.
pub struct ShardedCounter {
    shards: Box<[Shard]>,
}

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter {
            shards: (0..SHARDS).map(|_| Shard(AtomicU64::new(0))).collect(),
        }
    }
}

impl ShardedCounter {
    pub fn increment(&self, n: u64) {
        let slot = thread_slot();
        add(&self.shards[slot].0, slot, n);
    }

    /// The sum of the shards. Increments made while this runs may be missed, never counted
    /// twice.
    pub fn value(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

impl metrics::CounterFn for ShardedCounter {
    fn increment(&self, n: u64) {
        ShardedCounter::increment(self, n)
    }

    /// Raises the counter to `value` if it is below (a counter never goes down): the difference
    /// goes to the shared shard.
    fn absolute(&self, value: u64) {
        let shared = &self.shards[SHARED].0;
        let _ = shared.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
            let others = self.value().wrapping_sub(s);
            (value > others.wrapping_add(s)).then(|| value - others)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::CounterFn;
    use std::sync::Arc;

    #[test]
    fn increments_from_many_threads_all_count() {
        let c = Arc::new(ShardedCounter::default());
        let threads: Vec<_> = (0..SHARDS * 2)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| c.increment(3)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.value(), (SHARDS * 2 * 10_000 * 3) as u64);
    }

    #[test]
    fn absolute_only_raises() {
        let c = ShardedCounter::default();
        c.increment(5);
        CounterFn::absolute(&c, 3);
        assert_eq!(c.value(), 5);
        CounterFn::absolute(&c, 12);
        assert_eq!(c.value(), 12);
        c.increment(1);
        assert_eq!(c.value(), 13);
    }
}
