//! A Prometheus histogram with fixed buckets whose counts are sharded per thread
//! ([`super::thread_slot`]): a sample is a plain load and store on cache lines of the recording
//! thread's own.
//!
//! metrics-exporter-prometheus keeps every histogram sample in a lock-free bucket until a scrape
//! or an upkeep drains it; each push pins a crossbeam epoch and contends with the other workers
//! for the same block. On the throughput bench that was a fifth of the engine's CPU at three
//! samples per event, and without scrapes the samples piled up. Here a sample only bumps a
//! bucket count and a sum, so memory is fixed at registration and a scrape adds up the shards.

use std::sync::atomic::{AtomicU64, Ordering};

use super::thread_slot::{add, add_f64, thread_slot, SHARDS};

/// Buckets a histogram can have, `+Inf` included.
pub const MAX_BUCKETS: usize = 24;

/// One thread's counts, inline and alone on their cache lines (a separate allocation per shard
/// would let two shards' counts share a line).
#[repr(align(128))]
struct Shard {
    /// `counts[i]` counts samples in `(bounds[i-1], bounds[i]]`; `counts[bounds.len()]` those
    /// above every bound (the `+Inf` bucket). Not cumulative: a scrape makes them so.
    counts: [AtomicU64; MAX_BUCKETS],
    /// The sum of the samples, as `f64` bits.
    sum: AtomicU64,
}

impl Shard {
    fn new() -> Self {
        Shard {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

/// What a scrape reads of a histogram: cumulative counts per upper bound, the count and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, samples <= bound)`, in ascending order, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Every sample (the `+Inf` bucket).
    pub count: u64,
    pub sum: f64,
}

/// A histogram over fixed upper bounds.
pub struct ShardedHistogram {
    bounds: &'static [f64],
    shards: Box<[Shard]>,
}

impl ShardedHistogram {
    /// `bounds` ascending; a sample `v` lands in the first bucket whose bound is `>= v`.
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() < MAX_BUCKETS, "at most {MAX_BUCKETS} buckets");
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        ShardedHistogram {
            bounds,
            shards: (0..SHARDS).map(|_| Shard::new()).collect(),
        }
    }

    /// Records one sample. NaN is ignored (it belongs to no bucket).
    pub fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|b| *b < value);
        let slot = thread_slot();
        let shard = &self.shards[slot];
        add(&shard.counts[bucket], slot, 1);
        add_f64(&shard.sum, slot, value);
    }

    /// Adds the shards up. Counts recorded while this runs may be missed by the sum or the
    /// buckets but never counted twice; the count is always the `+Inf` bucket.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = vec![0u64; self.bounds.len() + 1];
        let mut sum = 0.0;
        for shard in self.shards.iter() {
            for (total, c) in counts.iter_mut().zip(shard.counts.iter()) {
                *total += c.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(shard.sum.load(Ordering::Relaxed));
        }
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&counts)
            .map(|(bound, c)| {
                cumulative += c;
                (*bound, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: cumulative + counts[self.bounds.len()],
            sum,
        }
    }
}

impl metrics::HistogramFn for ShardedHistogram {
    fn record(&self, value: f64) {
        ShardedHistogram::record(self, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const BOUNDS: &[f64] = &[0.1, 1.0, 10.0];

    #[test]
    fn a_sample_lands_in_the_first_bucket_whose_bound_is_at_least_it() {
        let h = ShardedHistogram::new(BOUNDS);
        for v in [0.05, 0.1, 0.5, 1.0, 10.0, 11.0, f64::NAN] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.1, 2), (1.0, 4), (10.0, 5)]);
        assert_eq!(s.count, 6, "NaN is not counted; 11.0 is only in +Inf");
        assert!((s.sum - 22.65).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn samples_from_many_threads_all_count() {
        // More threads than shards: some own a shard, the rest share the last one.
        let h = Arc::new(ShardedHistogram::new(BOUNDS));
        let threads: Vec<_> = (0..SHARDS * 2)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        h.record(if (i + t) % 2 == 0 { 0.5 } else { 5.0 });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        let n = (SHARDS * 2 * 10_000) as u64;
        assert_eq!(s.count, n);
        assert_eq!(s.buckets, vec![(0.1, 0), (1.0, n / 2), (10.0, n)]);
        assert!((s.sum - (n / 2) as f64 * 5.5).abs() < 1e-6, "{}", s.sum);
    }
}
