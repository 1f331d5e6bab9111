//! # Memory per idle connector actor and per live flow instance
//!
//! **Measures**, with a counting global allocator (live bytes as requested from the allocator,
//! and live blocks; the allocator's own per-block overhead, ~8-16 bytes with glibc, is not in
//! the byte figure), inside an actix `System` with `workers: 0` and a one-hour
//! `flow_idle_timeout`:
//! - (a) 100k `sandbox` connectors are created (stopped); live bytes are taken; all are run
//!   (one connector actor each) and, once the actors are started, live bytes are taken again:
//!   the difference / 100k is the cost of one idle running connector actor.
//! - (b) A flow subscribing `bench_ping` on `system/system` (completing runner) is put; 100k
//!   events are submitted on `system/system` from 100k distinct external ids (an internal
//!   connector: no session is created). Once all are settled and the invocation reports are
//!   processed, the live-bytes difference / 100k is the cost of one live, idle flow instance
//!   (its actor, its slot in the directory, its pending idle timer).
//!
//! The daemon's metrics recorder is installed, as in production.
//!
//! **Baseline**: the live bytes just before each step (a delta measurement).
//!
//! **Targets**: ≤ 2048 bytes per connector actor and ≤ 2048 bytes per flow instance.
//!
//! Custom main (no criterion). Without `--bench` (as under `cargo test --benches`) it runs with
//! 1k of each only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use switchboard::admission::delivery::Settlement;
use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::{
    Event, Flow, Idn, InterruptMode, Name, RunnerSpec, SkillSelector, Subscription,
};
use switchboard::relay::ChannelSink;
use switchboard::skill_runner::in_process::FnRunner;
use switchboard::skill_runner::RunnerRegistry;
use switchboard::{Engine, EngineConfig, EngineParts};

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// `System`, counting live bytes and blocks.
struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Debug, Clone, Copy)]
struct Live {
    bytes: isize,
    blocks: isize,
}

fn live() -> Live {
    Live {
        bytes: LIVE_BYTES.load(Ordering::SeqCst),
        blocks: LIVE_BLOCKS.load(Ordering::SeqCst),
    }
}

/// Lets every spawned actor start and every queued message run (`workers: 0`: all of them
/// live on this thread).
async fn quiesce() {
    for _ in 0..5 {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        tokio::task::yield_now().await;
    }
}

const TARGET_BYTES: f64 = 2048.0;

struct Figure {
    name: &'static str,
    bytes: f64,
    blocks: f64,
}

fn per_unit(name: &'static str, before: Live, after: Live, n: usize) -> Figure {
    Figure {
        name,
        bytes: (after.bytes - before.bytes) as f64 / n as f64,
        blocks: (after.blocks - before.blocks) as f64 / n as f64,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = if bench { 100_000 } else { 1_000 };
    // The daemon's metrics recorder, as `switchboard serve` installs it, so the handles each
    // connector and flow holds are real ones.
    let _exporter = switchboard::telemetry::exporter::Exporter::install().expect("one recorder");

    let (figures, check) = actix_rt::System::new().block_on(async move {
        let (sink, _commands) = ChannelSink::new(1024);
        let dead_letters = Arc::new(MemoryDeadLetters::new(10_000));
        let engine = Engine::start(
            EngineConfig {
                workers: 0,
                flow_idle_timeout: Duration::from_secs(3600),
                ..Default::default()
            },
            EngineParts {
                runners: Arc::new(RunnerRegistry::new(Arc::new(FnRunner::completing()))),
                relay: Arc::new(sink).into(),
                natives: Vec::new(),
                support: Default::default(),
                dead_letters: dead_letters.clone(),
                sessions: None,
                acts: None,
                state: None,
            },
        );
        let account = Idn::known("default");

        // (a) Idle running connector actors.
        let ids: Vec<uuid::Uuid> = (0..n)
            .map(|c| {
                engine
                    .create_connector(&account, "sandbox", &format!("c{c}"), "Bench", &[])
                    .expect("create connector")
                    .id
            })
            .collect();
        quiesce().await;
        let before = live();
        for id in &ids {
            engine.run_connector(*id).expect("run connector");
        }
        quiesce().await;
        let after = live();
        let connectors = per_unit("idle running connector actor", before, after, n);

        // (b) Live flow instances.
        let system = Idn::known("system");
        let ping = Idn::known("bench_ping");
        engine
            .put_flow(Flow {
                account: account.clone(),
                agent: Name::known("Bench"),
                flow: Name::known("Ping"),
                runner: RunnerSpec::Default,
                invocation_timeout: None,
                state_fields: Vec::new(),
                subscriptions: vec![Subscription {
                    event: ping.clone(),
                    integration: Some(system.clone()),
                    connector: Some(system.clone()),
                    skill: SkillSelector::Skill(Name::known("Reply")),
                    interrupt_mode: InterruptMode::Queue,
                }],
            })
            .await
            .expect("put flow");
        let settled: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let redelivered: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let all_settled: &'static Notify = Box::leak(Box::new(Notify::new()));
        quiesce().await;
        let before = live();
        for p in 0..n {
            let event = Event::from_actor(
                account.clone(),
                system.clone(),
                system.clone(),
                ping.clone(),
                format!("user_{p}"),
            );
            engine
                .ingress()
                .submit(
                    event,
                    Some(Box::new(move |s: Settlement| {
                        if s == Settlement::Redeliver {
                            redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        if settled.fetch_add(1, Ordering::AcqRel) + 1 == n {
                            all_settled.notify_one();
                        }
                    })),
                )
                .await
                .expect("admitted");
        }
        all_settled.notified().await;
        quiesce().await;
        let after = live();
        let instances = per_unit("live idle flow instance", before, after, n);
        let check = format!(
            "{} flow instances live (expected {n}), {} sessions (expected 0), {} redelivered, \
             {} dead letters",
            engine.flow_instances(),
            engine
                .sessions(&switchboard::domain::Idn::known("default"))
                .len(),
            redelivered.load(Ordering::Relaxed),
            dead_letters.len()
        );
        assert_eq!(engine.flow_instances(), n, "one flow instance per persona");
        (vec![connectors, instances], check)
    });

    println!();
    println!("memory summary ({n} of each; requested bytes, allocator overhead excluded)");
    if !bench {
        println!("  (smoke run without --bench: the figures are not meaningful)");
    }
    for f in &figures {
        println!(
            "  {:<30} {:>8.0} bytes in {:>5.1} blocks  (target <= {TARGET_BYTES:.0}: {})",
            f.name,
            f.bytes,
            f.blocks,
            if f.bytes <= TARGET_BYTES {
                "OK"
            } else {
                "MISSES TARGET"
            }
        );
    }
    println!("  {check}");
}
