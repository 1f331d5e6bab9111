//! # Subscription index rebuild
//!
//! **Measures**
//! 1. `SubscriptionIndex::build` of 1M subscriptions (100k flows; same generator as
//!    `index_lookup`, see `gen/mod.rs`), with criterion (10 flat samples); the drop of the built
//!    index is left out of the timing.
//! 2. That dispatch continues during a rebuild: the index sits in an `ArcSwap`, as in the
//!    dispatcher. One thread looks keys up in a loop (`load()` + `lookup` with pre-built
//!    scopes, as connector actors do) while another builds a new index and `store`s it (which
//!    also drops the old one, as `Dispatcher::swap_index` does). Lookups/s and the worst
//!    single-lookup latency (an `Instant` per lookup, loop overhead included) during the
//!    rebuilds are compared with the same loop running alone.
//!
//! **Baseline**: the lookup loop without a concurrent rebuild, same run.
//!
//! **Target**: build < 1 s. Dispatch must keep running during the rebuild (no stall: the worst
//! lookup stays far below the build time).

mod gen;

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{Criterion, SamplingMode};

use gen::{Key, Vocab};
use switchboard::routing::index::{ScopeKey, SubscriptionIndex};

const SUBSCRIPTIONS: usize = 1_000_000;
const KEYS: usize = 1 << 16;
const MASK: usize = KEYS - 1;
const TARGET_BUILD: Duration = Duration::from_secs(1);
const REBUILDS: usize = 3;
const ALONE: Duration = Duration::from_secs(2);

const WARMING: u8 = 0;
const RECORDING: u8 = 1;
const STOP: u8 = 2;

#[derive(Debug, Default, Clone, Copy)]
struct LoopStats {
    lookups: u64,
    elapsed: Duration,
    max: Duration,
    over_100us: u64,
    over_1ms: u64,
}

impl LoopStats {
    fn rate(&self) -> f64 {
        self.lookups as f64 / self.elapsed.as_secs_f64()
    }

    fn add(&mut self, o: &LoopStats) {
        self.lookups += o.lookups;
        self.elapsed += o.elapsed;
        self.max = self.max.max(o.max);
        self.over_100us += o.over_100us;
        self.over_1ms += o.over_1ms;
    }
}

/// Looks keys up until `phase` is `STOP`; counts only while it is `RECORDING`.
fn lookup_loop(
    index: &ArcSwap<SubscriptionIndex>,
    scopes: &[ScopeKey],
    vocab: &Vocab,
    keys: &[Key],
    phase: &AtomicU8,
) -> LoopStats {
    let mut stats = LoopStats::default();
    let mut n = 0usize;
    let mut started: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            break;
        }
        let k = keys[n & MASK];
        n = n.wrapping_add(1);
        {
            let idx = index.load();
            let m = idx.lookup(
                &scopes[k.connector as usize],
                vocab.events[k.event as usize].as_str(),
            );
            black_box((m.exact.len(), m.iter().next().map(|x| x.flow.id)));
        }
        let now = Instant::now();
        if p == RECORDING {
            if started.is_none() {
                started = Some(now);
            } else {
                let took = now - last;
                stats.lookups += 1;
                stats.max = stats.max.max(took);
                stats.over_100us += u64::from(took > Duration::from_micros(100));
                stats.over_1ms += u64::from(took > Duration::from_millis(1));
            }
        }
        last = now;
    }
    stats.elapsed = started.map(|s| last - s).unwrap_or_default();
    stats
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let index_vocab = Vocab::new();
    let key_vocab = Vocab::new();
    let scopes = key_vocab.scopes();
    let specs = gen::sub_specs(SUBSCRIPTIONS, 0x5eed ^ SUBSCRIPTIONS as u64);
    let flows = gen::flows(&index_vocab, &specs);
    let keys = gen::keys(&specs, KEYS, 0xcafe ^ SUBSCRIPTIONS as u64);
    drop(specs);

    // 1. Build time.
    let builds: RefCell<Vec<Duration>> = RefCell::default();
    {
        let mut group = c.benchmark_group("index_rebuild");
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.bench_function("build_1M", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let index = SubscriptionIndex::build(&flows);
                    let took = t.elapsed();
                    total += took;
                    builds.borrow_mut().push(took);
                    drop(black_box(index));
                }
                total
            })
        });
        group.finish();
    }
    c.final_summary();

    // 2. Dispatch during a rebuild.
    let swap = ArcSwap::from_pointee(SubscriptionIndex::build(&flows));
    let phase = AtomicU8::new(WARMING);
    let run_loop = |record: &dyn Fn(&AtomicU8)| -> LoopStats {
        phase.store(WARMING, Ordering::SeqCst);
        thread::scope(|s| {
            let looper = s.spawn(|| lookup_loop(&swap, &scopes, &key_vocab, &keys, &phase));
            thread::sleep(Duration::from_millis(200)); // warm the loop's caches
            record(&phase);
            phase.store(STOP, Ordering::SeqCst);
            looper.join().expect("lookup thread")
        })
    };

    let alone = run_loop(&|phase| {
        phase.store(RECORDING, Ordering::SeqCst);
        thread::sleep(ALONE);
    });

    let mut during = LoopStats::default();
    let mut windows = Vec::new();
    for _ in 0..REBUILDS {
        let window: RefCell<(Duration, Duration)> = RefCell::default();
        let stats = run_loop(&|phase| {
            phase.store(RECORDING, Ordering::SeqCst);
            let t0 = Instant::now();
            let index = Arc::new(SubscriptionIndex::build(&flows));
            let built = t0.elapsed();
            swap.store(index); // drops the old index here, unless a reader still holds it
            *window.borrow_mut() = (built, t0.elapsed());
        });
        during.add(&stats);
        windows.push(window.into_inner());
    }

    // Summary.
    let mut b = builds.into_inner();
    b.sort();
    println!();
    println!(
        "index_rebuild summary ({SUBSCRIPTIONS} subscriptions, {} flows)",
        flows.len()
    );
    if b.is_empty() {
        println!("  build: (filtered out)");
    } else {
        let med = b[b.len() / 2];
        println!(
            "  build: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} builds; target < {} ms: {}",
            med.as_secs_f64() * 1e3,
            b[0].as_secs_f64() * 1e3,
            b[b.len() - 1].as_secs_f64() * 1e3,
            b.len(),
            TARGET_BUILD.as_millis(),
            if med < TARGET_BUILD { "OK" } else { "MISSES TARGET" }
        );
    }
    for (n, (built, total)) in windows.iter().enumerate() {
        println!(
            "  rebuild {}: build {:.0} ms, build + store + old index dropped {:.0} ms",
            n + 1,
            built.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
    }
    let show = |name: &str, s: &LoopStats| {
        println!(
            "  lookups {name}: {:.2} M/s ({} lookups in {:.2} s), worst single lookup {:.1} µs, \
             {} over 100 µs, {} over 1 ms",
            s.rate() / 1e6,
            s.lookups,
            s.elapsed.as_secs_f64(),
            s.max.as_secs_f64() * 1e6,
            s.over_100us,
            s.over_1ms
        );
    };
    show("alone (baseline)", &alone);
    show(&format!("during {REBUILDS} rebuilds"), &during);
    println!(
        "  dispatch during rebuild runs at {:.2}x its rate alone; worst lookup {:.1} µs vs {:.1} µs alone",
        during.rate() / alone.rate(),
        during.max.as_secs_f64() * 1e6,
        alone.max.as_secs_f64() * 1e6
    );
}
