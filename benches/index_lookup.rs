//! # Subscription index lookup
//!
//! **Measures** `SubscriptionIndex::lookup` at 1k, 100k and 1M subscriptions (10k connectors
//! over 8 integrations, 500 event idns, 10 subscriptions per flow, a quarter of them with a
//! null scope; see `gen/mod.rs`). Keys are 64k pre-generated `(connector, event)` pairs real
//! traffic would produce, cycled. Variants:
//! - `index_new_scope`: `lookup_str` with the three scope strings, hashed per lookup: the
//!   honest cost for a caller holding strings (no pre-hashed scope).
//! - `index_prebuilt_scope`: a pre-built `ScopeKey` per connector, as connector actors hold.
//! - `index_prebuilt_plus_arc_clones` (informative, no target): the pre-built scope plus the
//!   three `Idn` clone/drop pairs `ScopeKey::new` does, to split its cost from hashing.
//! - `index_iter_all` (informative, no target): pre-built scope, then every match iterated as
//!   dispatch does, which includes the cross-tier per-flow precedence filter.
//!
//! The index variants consume the tier sizes and the first match's flow id (the `flow_id` a
//! match holds beside its route, as dispatch reads it: no pointer chase into the route).
//!
//! **Baseline**, same run: an `FxHashMap<(String, String, String), Vec<usize>>` holding every
//! exact subscription key plus every lookup key (a flattened, one-probe map: the ideal), looked
//! up by a pre-built `&(String, String, String)` from the same key list; consumes the list size
//! and its first element.
//!
//! **Figures**: criterion prints its own statistics per variant. The summary at the end comes
//! from a separate interleaved measurement (rounds of 64k lookups per variant, 4k for
//! `index_iter_all`, variants taking turns, best round kept): the machine may be shared, and interleaving spreads interference
//! over all variants while the best round filters it out.
//!
//! **Target**: index / baseline ≤ 1.5× at every size (both index variants are reported).
//!
//! Without `--bench` (as under `cargo test --benches`) only the 1k size runs, once.

mod gen;

use std::cell::Cell;
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
/// Interleaved rounds for the summary; each round runs every variant over the 64k keys.
const ROUNDS: usize = 15;
/// Keys per round for the iterate-everything variant.
const ITER_ALL_KEYS: usize = KEYS / 16;

type BaselineMap = FxHashMap<(String, String, String), Vec<usize>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Baseline,
    NewScope,
    Prebuilt,
    PrebuiltPlusArcClones,
    IterAll,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::Baseline,
        Variant::NewScope,
        Variant::Prebuilt,
        Variant::PrebuiltPlusArcClones,
        Variant::IterAll,
    ];

    fn id(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline_fxhashmap",
            Variant::NewScope => "index_new_scope",
            Variant::Prebuilt => "index_prebuilt_scope",
            Variant::PrebuiltPlusArcClones => "index_prebuilt_plus_arc_clones",
            Variant::IterAll => "index_iter_all",
        }
    }
}

/// Everything one size's lookups need.
struct Ctx<'a> {
    index: &'a SubscriptionIndex,
    vocab: &'a Vocab,
    scopes: &'a [ScopeKey],
    keys: &'a [Key],
    map: &'a BaselineMap,
    baseline_keys: &'a [(String, String, String)],
}

#[inline(always)]
fn consume(m: &Matches<'_>) -> (usize, Option<FlowId>) {
    (
        m.exact.len() + m.integration.len() + m.any.len(),
        m.iter().next().map(|x| x.flow_id),
    )
}

/// Runs `n` lookups of `variant` from key number `from`; returns the time they took.
#[inline(never)]
fn run(variant: Variant, ctx: &Ctx<'_>, from: usize, n: usize) -> Duration {
    let (index, v, scopes, keys) = (ctx.index, ctx.vocab, ctx.scopes, ctx.keys);
    let start = Instant::now();
    match variant {
        Variant::Baseline => {
            for i in from..from + n {
                let v = ctx.map.get(&ctx.baseline_keys[i & MASK]);
                black_box(v.map(|v| (v.len(), v.first().copied())));
            }
        }
        Variant::NewScope => {
            for i in from..from + n {
                let k = keys[i & MASK];
                let c = k.connector as usize;
                let m = index.lookup_str(
                    v.account.as_str(),
                    v.integrations[Vocab::integration_of(c)].as_str(),
                    v.connectors[c].as_str(),
                    v.events[k.event as usize].as_str(),
                );
                black_box(consume(&m));
            }
        }
        Variant::Prebuilt => {
            for i in from..from + n {
                let k = keys[i & MASK];
                let m = index.lookup(
                    &scopes[k.connector as usize],
                    v.events[k.event as usize].as_str(),
                );
                black_box(consume(&m));
            }
        }
        Variant::PrebuiltPlusArcClones => {
            for i in from..from + n {
                let k = keys[i & MASK];
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
        }
        Variant::IterAll => {
            for i in from..from + n {
                let k = keys[i & MASK];
                let m = index.lookup(
                    &scopes[k.connector as usize],
                    v.events[k.event as usize].as_str(),
                );
                black_box(m.iter().map(|x| x.flow_id.0 as usize).sum::<usize>());
            }
        }
    }
    start.elapsed()
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
    // Without `--bench` (`cargo test --benches`), criterion runs each routine once: keep the
    // smallest size only, and no summary rounds.
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = if bench { &SIZES[..] } else { &SIZES[..1] };
    // Separate allocations for the index and for the keys (see gen/mod.rs).
    let index_vocab = Vocab::new();
    let key_vocab = Vocab::new();
    let scopes = key_vocab.scopes();
    let mut summary: Vec<(&str, [f64; 5])> = Vec::new();

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
        let lookup = |k: &Key| {
            index.lookup(
                &scopes[k.connector as usize],
                key_vocab.events[k.event as usize].as_str(),
            )
        };
        let hits = keys.iter().filter(|k| !lookup(k).is_empty()).count();
        assert_eq!(hits, KEYS, "every generated key matches a subscription");
        assert!(baseline_keys.iter().all(|k| map.contains_key(k)));
        let fanout: usize = keys.iter().map(|k| lookup(k).iter().count()).sum();
        eprintln!(
            "index_lookup {label}: {} subscriptions in {} flows, built in {:.0} ms; \
             {:.1} flows matched per key on average; baseline map holds {} keys",
            index.subscription_count(),
            index.flow_count(),
            build.as_secs_f64() * 1e3,
            fanout as f64 / KEYS as f64,
            map.len(),
        );
        let ctx = Ctx {
            index: &index,
            vocab: &key_vocab,
            scopes: &scopes,
            keys: &keys,
            map: &map,
            baseline_keys: &baseline_keys,
        };

        // Criterion, one variant after another. Every call continues through the key list,
        // so short calls do not keep hitting the same (cached) few keys.
        let cursor = Cell::new(0usize);
        let mut group = c.benchmark_group("index_lookup");
        for variant in Variant::ALL {
            group.bench_function(BenchmarkId::new(variant.id(), label), |b| {
                b.iter_custom(|iters| {
                    let from = cursor.get();
                    cursor.set(from.wrapping_add(iters as usize) & MASK);
                    run(variant, &ctx, from, iters as usize)
                })
            });
        }
        group.finish();

        // The summary's figures: interleaved rounds, best round per variant.
        if bench {
            let mut best = [f64::INFINITY; 5];
            for round in 0..ROUNDS {
                for (slot, variant) in Variant::ALL.into_iter().enumerate() {
                    // Iterating every match is slow at 1M: a slice of the keys per round.
                    let (from, n) = match variant {
                        Variant::IterAll => (round * ITER_ALL_KEYS, ITER_ALL_KEYS),
                        _ => (0, KEYS),
                    };
                    let d = run(variant, &ctx, from, n);
                    best[slot] = best[slot].min(d.as_nanos() as f64 / n as f64);
                }
            }
            summary.push((label, best));
        }
        // Free this size before building the next.
        drop((index, map, baseline_keys, flows));
    }
    c.final_summary();

    if summary.is_empty() {
        return;
    }
    println!();
    println!(
        "index_lookup summary: ns per lookup, best of {ROUNDS} interleaved rounds of {KEYS} \
         (ratio to the baseline); target <= {TARGET_RATIO}x"
    );
    println!(
        "{:>6} {:>9} {:>19} {:>19} {:>19} {:>20}",
        "size", "baseline", "strings", "prebuilt scope", "prebuilt+3 clones*", "iter all*"
    );
    let mut misses = Vec::new();
    for (label, best) in &summary {
        let base = best[0];
        let cell = |slot: usize| format!("{:.1} ({:.2}x)", best[slot], best[slot] / base);
        for (slot, name) in [(1, "strings (lookup_str)"), (2, "prebuilt scope")] {
            if best[slot] / base > TARGET_RATIO {
                misses.push(format!("{name} at {label} ({:.2}x)", best[slot] / base));
            }
        }
        println!(
            "{label:>6} {base:>9.1} {:>19} {:>19} {:>19} {:>20}",
            cell(1),
            cell(2),
            cell(3),
            cell(4)
        );
    }
    println!(
        "  * informative, no target: the pre-built scope plus the three `Idn` clone/drop pairs"
    );
    println!("    of ScopeKey::new; and the pre-built scope with every match iterated.");
    if misses.is_empty() {
        println!("index_lookup: target met at every size");
    } else {
        println!("index_lookup: MISSES TARGET: {}", misses.join(", "));
    }
}
