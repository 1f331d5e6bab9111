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
//!    rebuilds are compared with the same loop running alone. For comparison the rebuilds are
//!    repeated with the old index freed by the writer (`swap`, wait for readers to let go,
//!    drop), which shows what a reader pays when it ends up freeing the old index.
//!
//! **Baseline**: the lookup loop without a concurrent rebuild, same run.
//!
//! **Target**: build < 1 s. Dispatch must keep running during the rebuild (no stall: the worst
//! lookup stays far below the build time).
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a 10k-subscription smoke version.

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
use switchboard::routing::index::{FlowRoute, ScopeKey, SubscriptionIndex};

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

/// Build time, and time spent in `publish` (swapping in the new index, and freeing the old
/// one if this thread ends up doing it), per rebuild.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    build: Duration,
    publish: Duration,
}

/// Runs the lookup loop on its own thread around the closure it is given, which moves the loop
/// from warming to recording; returns what was recorded.
type RunLoop<'a> = dyn Fn(&dyn Fn(&AtomicU8)) -> LoopStats + 'a;

/// Runs `count` rebuilds under the lookup loop; `publish` swaps the new index in.
fn rebuilds(
    count: usize,
    run_loop: &RunLoop<'_>,
    publish: &dyn Fn(Arc<SubscriptionIndex>),
    flows: &[Arc<FlowRoute>],
) -> (LoopStats, Vec<Window>) {
    let mut during = LoopStats::default();
    let mut windows = Vec::new();
    for _ in 0..count {
        let window: RefCell<Window> = RefCell::default();
        let stats = run_loop(&|phase| {
            phase.store(RECORDING, Ordering::SeqCst);
            let t0 = Instant::now();
            let index = Arc::new(SubscriptionIndex::build(flows));
            let built = t0.elapsed();
            publish(index);
            *window.borrow_mut() = Window {
                build: built,
                publish: t0.elapsed() - built,
            };
        });
        during.add(&stats);
        windows.push(window.into_inner());
    }
    (during, windows)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    // Without `--bench` (`cargo test --benches`): a small smoke version.
    let bench = std::env::args().any(|a| a == "--bench");
    let (subscriptions, rebuild_count, alone_for) = if bench {
        (SUBSCRIPTIONS, REBUILDS, ALONE)
    } else {
        (10_000, 1, Duration::from_millis(100))
    };
    let index_vocab = Vocab::new();
    let key_vocab = Vocab::new();
    let scopes = key_vocab.scopes();
    let specs = gen::sub_specs(subscriptions, 0x5eed ^ subscriptions as u64);
    let flows = gen::flows(&index_vocab, &specs);
    let keys = gen::keys(&specs, KEYS, 0xcafe ^ subscriptions as u64);
    drop(specs);

    // 1. Build time.
    let builds: RefCell<Vec<Duration>> = RefCell::default();
    {
        let mut group = c.benchmark_group("index_rebuild");
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.bench_function(if bench { "build_1M" } else { "build_10k" }, |b| {
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
        thread::sleep(alone_for);
    });

    // As `Dispatcher::swap_index` does: `store`, which drops the old index unless a reader
    // still holds a guard on it, in which case that reader frees it.
    let (as_dispatcher, windows) =
        rebuilds(rebuild_count, &run_loop, &|index| swap.store(index), &flows);
    // For comparison: swap, wait until readers let go of the old index, free it here.
    let (writer_drops, fixed_windows) = rebuilds(
        rebuild_count,
        &run_loop,
        &|index| {
            let mut old = swap.swap(index);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(index) => {
                        drop(index);
                        break;
                    }
                    Err(still_shared) => {
                        old = still_shared;
                        thread::yield_now();
                    }
                }
            }
        },
        &flows,
    );

    // Summary.
    let mut b = builds.into_inner();
    b.sort();
    println!();
    println!(
        "index_rebuild summary ({subscriptions} subscriptions, {} flows)",
        flows.len()
    );
    if !bench {
        println!("  (smoke run without --bench: the figures are not meaningful)");
    }
    if b.is_empty() {
        println!("  build: (filtered out)");
    } else {
        let med = b[b.len() / 2];
        println!(
            "  build: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} builds; target < {} ms: {}",
            ms(med),
            ms(b[0]),
            ms(b[b.len() - 1]),
            b.len(),
            TARGET_BUILD.as_millis(),
            if med < TARGET_BUILD { "OK" } else { "MISSES TARGET" }
        );
    }
    let show_windows = |name: &str, w: &[Window]| {
        for (n, w) in w.iter().enumerate() {
            println!(
                "  {name} rebuild {}: build {:.0} ms, publish {:.1} ms{}",
                n + 1,
                ms(w.build),
                ms(w.publish),
                if w.publish < Duration::from_millis(5) {
                    " (≈0: the old index was freed elsewhere, by the lookup thread)"
                } else {
                    " (includes freeing the old index)"
                }
            );
        }
    };
    show_windows("store()", &windows);
    show_windows("swap + writer-side drop", &fixed_windows);
    let show = |name: &str, s: &LoopStats| {
        println!(
            "  lookups {name:<40} {:>5.2} M/s ({:.2}x alone; {} lookups in {:.2} s), worst single \
             lookup {:.1} µs, {} over 100 µs, {} over 1 ms",
            s.rate() / 1e6,
            s.rate() / alone.rate(),
            s.lookups,
            s.elapsed.as_secs_f64(),
            s.max.as_secs_f64() * 1e6,
            s.over_100us,
            s.over_1ms
        );
    };
    show("alone (baseline)", &alone);
    show("during rebuilds, store() as the dispatcher", &as_dispatcher);
    show("during rebuilds, writer-side drop", &writer_drops);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
