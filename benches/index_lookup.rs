//! # Subscription index lookup
//!
//! **Measures** `SubscriptionIndex::lookup` at 1k, 100k and 1M subscriptions (10k connectors
//! over 8 integrations, 500 event idns, 10 subscriptions per flow, a quarter of them with a
//! null scope; see `gen/mod.rs`). Keys are 64k pre-generated `(connector, event)` pairs real
//! traffic would produce, cycled. Variants:
//! - `index_new_scope`: a `ScopeKey::new` built per lookup from the three `Idn`s (Arc clones):
//!   the honest cost for a caller holding strings.
//! - `index_prebuilt_scope`: a pre-built `ScopeKey` per connector, as connector actors hold.
//! - `index_prebuilt_plus_arc_clones` (informative, no target): the pre-built scope plus the
//!   three `Idn` clone/drop pairs `ScopeKey::new` does, to split its cost from hashing.
//! - `index_iter_all` (informative, no target): pre-built scope, then every match iterated as
//!   dispatch does, which includes the cross-tier per-flow precedence filter.
//!
//! The index variants consume the tier sizes and the first match's flow id.
//!
//! **Baseline**, same run: an `FxHashMap<(String, String, String), Vec<usize>>` holding every
//! exact subscription key plus every lookup key (a flattened, one-probe map: the ideal), looked
//! up by a pre-built `&(String, String, String)` from the same key list; consumes the list size
//! and its first element.
//!
//! **Target**: index / baseline ≤ 1.5× at every size (both index variants are reported).
//!
//! Without `--bench` (as under `cargo test --benches`) only the 1k size runs, once.

mod gen;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use rustc_hash::FxHashMap;

use gen::{Key, SubSpec, Tier, Vocab};
use switchboard::routing::index::{FlowId, Matches, ScopeKey, SubscriptionIndex};

const KEYS: usize = 1 << 16;
const MASK: usize = KEYS - 1;
const SIZES: [(usize, &str); 3] = [(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")];
const TARGET_RATIO: f64 = 1.5;

type BaselineMap = FxHashMap<(String, String, String), Vec<usize>>;

/// ns per lookup of every `iter_custom` call, by variant and size.
type Samples = RefCell<BTreeMap<(&'static str, &'static str), Vec<f64>>>;

fn record(samples: &Samples, variant: &'static str, size: &'static str, d: Duration, iters: u64) {
    samples
        .borrow_mut()
        .entry((variant, size))
        .or_default()
        .push(d.as_nanos() as f64 / iters.max(1) as f64);
}

/// The median of the recorded per-call figures (robust to warm-up calls).
fn median(samples: &Samples, variant: &'static str, size: &'static str) -> Option<f64> {
    let mut v = samples.borrow().get(&(variant, size))?.clone();
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

#[inline(always)]
fn consume(m: &Matches<'_>) -> (usize, Option<FlowId>) {
    (
        m.exact.len() + m.integration.len() + m.any.len(),
        m.iter().next().map(|x| x.flow.id),
    )
}

fn strings(vocab: &Vocab, connector: usize, event: usize) -> (String, String, String) {
    (
        vocab.integrations[Vocab::integration_of(connector)].to_string(),
        vocab.connectors[connector].to_string(),
        vocab.events[event].to_string(),
    )
}

fn baseline_map(vocab: &Vocab, specs: &[SubSpec], keys: &[Key]) -> BaselineMap {
    let mut map = BaselineMap::default();
    for (n, s) in specs.iter().enumerate() {
        if let Tier::Exact { connector } = s.tier {
            map.entry(strings(vocab, connector as usize, s.event as usize))
                .or_default()
                .push(n);
        }
    }
    for (n, k) in keys.iter().enumerate() {
        map.entry(strings(vocab, k.connector as usize, k.event as usize))
            .or_insert_with(|| vec![n]);
    }
    map
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let samples = Samples::default();
    // Separate allocations for the index and for the keys (see gen/mod.rs).
    let index_vocab = Vocab::new();
    let key_vocab = Vocab::new();
    let scopes = key_vocab.scopes();
    let mut sizes_run = Vec::new();
    // Without `--bench` (`cargo test --benches`), criterion runs each routine once: keep the
    // smallest size only.
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = if bench { &SIZES[..] } else { &SIZES[..1] };

    for &(size, label) in sizes {
        let specs = gen::sub_specs(size, 0x5eed ^ size as u64);
        let flows = gen::flows(&index_vocab, &specs);
        let started = Instant::now();
        let index = SubscriptionIndex::build(&flows);
        let build = started.elapsed();
        let keys = gen::keys(&specs, KEYS, 0xcafe ^ size as u64);
        let map = baseline_map(&key_vocab, &specs, &keys);
        let baseline_keys: Vec<(String, String, String)> = keys
            .iter()
            .map(|k| strings(&key_vocab, k.connector as usize, k.event as usize))
            .collect();
        let hits = keys
            .iter()
            .filter(|k| {
                !index
                    .lookup(
                        &scopes[k.connector as usize],
                        key_vocab.events[k.event as usize].as_str(),
                    )
                    .is_empty()
            })
            .count();
        assert_eq!(hits, KEYS, "every generated key matches a subscription");
        assert!(baseline_keys.iter().all(|k| map.contains_key(k)));
        let fanout: usize = keys
            .iter()
            .map(|k| {
                index
                    .lookup(
                        &scopes[k.connector as usize],
                        key_vocab.events[k.event as usize].as_str(),
                    )
                    .iter()
                    .count()
            })
            .sum();
        eprintln!(
            "index_lookup {label}: {} subscriptions in {} flows, built in {:.0} ms; \
             {:.1} flows matched per key on average; baseline map holds {} keys",
            index.subscription_count(),
            index.flow_count(),
            build.as_secs_f64() * 1e3,
            fanout as f64 / KEYS as f64,
            map.len(),
        );

        let mut group = c.benchmark_group("index_lookup");
        group.bench_function(BenchmarkId::new("baseline_fxhashmap", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for n in 0..iters as usize {
                    let k = &baseline_keys[n & MASK];
                    let v = map.get(k);
                    black_box(v.map(|v| (v.len(), v.first().copied())));
                }
                let d = start.elapsed();
                record(&samples, "baseline", label, d, iters);
                d
            })
        });
        group.bench_function(BenchmarkId::new("index_new_scope", label), |b| {
            b.iter_custom(|iters| {
                let v = &key_vocab;
                let start = Instant::now();
                for n in 0..iters as usize {
                    let k = keys[n & MASK];
                    let c = k.connector as usize;
                    let scope = ScopeKey::new(
                        v.account.clone(),
                        v.integrations[Vocab::integration_of(c)].clone(),
                        v.connectors[c].clone(),
                    );
                    let m = index.lookup(&scope, v.events[k.event as usize].as_str());
                    black_box(consume(&m));
                }
                let d = start.elapsed();
                record(&samples, "new_scope", label, d, iters);
                d
            })
        });
        group.bench_function(BenchmarkId::new("index_prebuilt_scope", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for n in 0..iters as usize {
                    let k = keys[n & MASK];
                    let m = index.lookup(
                        &scopes[k.connector as usize],
                        key_vocab.events[k.event as usize].as_str(),
                    );
                    black_box(consume(&m));
                }
                let d = start.elapsed();
                record(&samples, "prebuilt", label, d, iters);
                d
            })
        });
        group.bench_function(
            BenchmarkId::new("index_prebuilt_plus_arc_clones", label),
            |b| {
                b.iter_custom(|iters| {
                    let v = &key_vocab;
                    let start = Instant::now();
                    for n in 0..iters as usize {
                        let k = keys[n & MASK];
                        let c = k.connector as usize;
                        // The three refcount round trips of `ScopeKey::new`, without its hashing.
                        black_box((
                            v.account.clone(),
                            v.integrations[Vocab::integration_of(c)].clone(),
                            v.connectors[c].clone(),
                        ));
                        let m = index.lookup(&scopes[c], v.events[k.event as usize].as_str());
                        black_box(consume(&m));
                    }
                    let d = start.elapsed();
                    record(&samples, "arc_clones", label, d, iters);
                    d
                })
            },
        );
        group.bench_function(BenchmarkId::new("index_iter_all", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for n in 0..iters as usize {
                    let k = keys[n & MASK];
                    let m = index.lookup(
                        &scopes[k.connector as usize],
                        key_vocab.events[k.event as usize].as_str(),
                    );
                    black_box(m.iter().map(|x| x.flow.id.0 as usize).sum::<usize>());
                }
                let d = start.elapsed();
                record(&samples, "iter_all", label, d, iters);
                d
            })
        });
        group.finish();
        sizes_run.push(label);
        // Free this size before building the next.
        drop((index, map, baseline_keys, flows));
    }
    c.final_summary();

    println!();
    println!(
        "index_lookup summary: median ns per lookup (ratio to the baseline); target <= {TARGET_RATIO}x"
    );
    println!(
        "{:>6} {:>9} {:>19} {:>19} {:>19} {:>19}",
        "size", "baseline", "ScopeKey::new", "prebuilt scope", "prebuilt+3 clones*", "iter all*"
    );
    let mut misses = Vec::new();
    for label in sizes_run {
        let Some(base) = median(&samples, "baseline", label) else {
            println!("{label:>6} (baseline filtered out)");
            continue;
        };
        let cell = |variant: &'static str| {
            median(&samples, variant, label)
                .map(|x| format!("{x:.1} ({:.2}x)", x / base))
                .unwrap_or_else(|| "-".into())
        };
        for (variant, name) in [
            ("new_scope", "ScopeKey::new"),
            ("prebuilt", "prebuilt scope"),
        ] {
            if let Some(x) = median(&samples, variant, label) {
                if x / base > TARGET_RATIO {
                    misses.push(format!("{name} at {label} ({:.2}x)", x / base));
                }
            }
        }
        println!(
            "{label:>6} {base:>9.1} {:>19} {:>19} {:>19} {:>19}",
            cell("new_scope"),
            cell("prebuilt"),
            cell("arc_clones"),
            cell("iter_all")
        );
    }
    println!("  * informative, no target: the pre-built scope plus the three Arc clone/drop pairs");
    println!("    of ScopeKey::new; and the pre-built scope with every match iterated.");
    if misses.is_empty() {
        println!("index_lookup: target met at every size");
    } else {
        println!("index_lookup: MISSES TARGET: {}", misses.join(", "));
    }
}
