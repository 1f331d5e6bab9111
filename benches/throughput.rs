//! # End-to-end event throughput, in process
//!
//! **Measures** the whole engine: an actix `System` with `workers: 2` and
//! `inflight_limit: 100_000`, 8 running `sandbox` connectors, one flow subscribing
//! `user_message` on `sandbox` (connector null, skill `Reply`) with the completing in-process
//! runner. N pre-built events (default 500k; `BENCH_EVENTS` overrides) from 10k personas
//! (external_id = persona number) are submitted round-robin over the connectors with
//! `Ingress::submit_batch`, 100 at a time as the NATS consumer hands over a pull, each with a
//! settle closure counting settlements. Wall time runs from the first submit to the last
//! settlement (an event settles when its invocation starts). The first event of each persona
//! also routes `session_started` (nobody subscribes to it here). The daemon's metrics recorder
//! is installed, so every counter and histogram the engine records is paid for as in
//! production. The run is done twice: cold (10k flow instances and sessions are created during
//! it) and warm (they exist). The target is judged on the cold run.
//!
//! **Baseline**, same process, same N and events, run before and after the engine (the
//! better of the two counts): a chain of plain bounded tokio mpsc hops of
//! the same depth, each stage one task on a 2-worker multi-thread runtime, the producer on the
//! calling thread as the engine's submit loop is: ingress → connector stage → flow-instance
//! stage → runner stage → back to a completion stage (4 hops) carrying an `Arc` of the same
//! `Event` type.
//!
//! **Targets**: ≥ 500,000 events/s, and ≥ 0.5× the baseline.
//!
//! Custom main (no criterion). Without `--bench` (as under `cargo test --benches`) it runs a
//! small smoke version only. `BENCH_ENGINE_ONLY=1` skips the baseline (for profiling).

/// The daemon binary's allocator (src/main.rs), so the engine is measured as it runs; the
/// baseline runs in the same process with the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use switchboard::admission::delivery::{Settle, Settlement};
use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::{
    Event, Flow, Idn, InterruptMode, Name, RunnerSpec, SkillSelector, Subscription,
};
use switchboard::relay::ChannelSink;
use switchboard::skill_runner::in_process::FnRunner;
use switchboard::skill_runner::RunnerRegistry;
use switchboard::telemetry::counter::ShardedCounter;
use switchboard::{Engine, EngineConfig, EngineParts};

const DEFAULT_EVENTS: usize = 500_000;
const SMOKE_EVENTS: usize = 2_000;
const PERSONAS: usize = 10_000;
const CONNECTORS: usize = 8;
const HOP_CAPACITY: usize = 1024;
/// Events handed over per `submit_batch`, as the NATS consumer hands over what one pull
/// brought (at most its default `pull_batch`). `BENCH_SUBMIT_BATCH=1` submits one at a time
/// with `Ingress::submit`, as HTTP ingest does.
const SUBMIT_BATCH: usize = 100;
const TARGET_RATE: f64 = 500_000.0;
const TARGET_RATIO: f64 = 0.5;

/// Settlements, counted by every settle closure (leaked: no refcount traffic per event). The
/// count is a sharded counter, one cache line per settling thread: the bench's bookkeeping must
/// not become a contended atomic the engine's workers pay for (the baseline counts in one task).
#[derive(Default)]
struct Done {
    settled: ShardedCounter,
    redelivered: AtomicUsize,
}

impl Done {
    fn settle(&self, s: Settlement) {
        if s == Settlement::Redeliver {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        self.settled.increment(1);
    }

    fn total(&self) -> usize {
        self.settled.value() as usize
    }

    /// Waits until `target` settlements have been counted, looking every 100 µs (at most
    /// 0.1 ms added to a run of half a second).
    async fn reached(&self, target: usize) {
        while self.total() < target {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
}

fn events(n: usize) -> Vec<Event> {
    let account = Idn::known("default");
    let sandbox = Idn::known("sandbox");
    let user_message = Idn::known("user_message");
    let connectors: Vec<Idn> = (0..CONNECTORS)
        .map(|c| Idn::known(&format!("bench_{c}")))
        .collect();
    (0..n)
        .map(|k| {
            Event::from_actor(
                account.clone(),
                sandbox.clone(),
                connectors[k % CONNECTORS].clone(),
                user_message.clone(),
                (k % PERSONAS).to_string(),
            )
            .with_argument("text", "hello")
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Run {
    total: Duration,
    submit: Duration,
}

impl Run {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.total.as_secs_f64()
    }
}

/// Runs the engine over `rounds` (each a Vec of events); returns one figure per round.
fn engine_runs(rounds: Vec<Vec<Event>>, submit_batch: usize) -> (Vec<Run>, String) {
    actix_rt::System::new().block_on(async move {
        let (sink, _commands) = ChannelSink::new(1024);
        let dead_letters = Arc::new(MemoryDeadLetters::new(10_000));
        let engine = Engine::start(
            EngineConfig {
                workers: 2,
                inflight_limit: 100_000,
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
        for c in 0..CONNECTORS {
            let view = engine
                .create_connector(&account, "sandbox", &format!("bench_{c}"), "Bench", &[])
                .expect("create connector");
            engine.run_connector(view.id).expect("run connector");
        }
        engine
            .put_flow(Flow {
                account: account.clone(),
                agent: Name::known("Bench"),
                flow: Name::known("Main"),
                runner: RunnerSpec::Default,
                invocation_timeout: None,
                state_fields: Vec::new(),
                subscriptions: vec![Subscription {
                    event: Idn::known("user_message"),
                    integration: Some(Idn::known("sandbox")),
                    connector: None,
                    skill: SkillSelector::Skill(Name::known("Reply")),
                    interrupt_mode: InterruptMode::Queue,
                }],
            })
            .await
            .expect("put flow");

        let done: &'static Done = Box::leak(Box::default());
        let mut runs = Vec::new();
        for events in rounds {
            let n = events.len();
            let before = done.total();
            let start = Instant::now();
            let settle = || -> Option<Box<dyn Settle>> {
                Some(Box::new(move |s: Settlement| done.settle(s)))
            };
            let mut events = events.into_iter().peekable();
            if submit_batch == 1 {
                // As HTTP ingest admits: one event per call.
                for e in events.by_ref() {
                    engine
                        .ingress()
                        .submit(e, settle())
                        .await
                        .expect("admitted");
                }
            }
            while events.peek().is_some() {
                let batch: Vec<_> = events
                    .by_ref()
                    .take(submit_batch)
                    .map(|e| (e, settle()))
                    .collect();
                for r in engine.ingress().submit_batch(batch).await {
                    r.expect("admitted");
                }
            }
            let submit = start.elapsed();
            done.reached(before + n).await;
            runs.push(Run {
                total: start.elapsed(),
                submit,
            });
        }
        let check = format!(
            "{} flow instances live, {} sessions, {} redelivered, {} dead letters",
            engine.flow_instances(),
            engine
                .sessions(&switchboard::domain::Idn::known("default"))
                .len(),
            done.redelivered.load(Ordering::Relaxed),
            dead_letters.len()
        );
        (runs, check)
    })
}

/// The plain-tokio chain: producer → connector → flow instance → runner → completion.
fn baseline_run(events: Vec<Event>) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let n = events.len();
    rt.block_on(async move {
        let (to_connector, mut connector_rx) = mpsc::channel::<Arc<Event>>(HOP_CAPACITY);
        let (to_instance, mut instance_rx) = mpsc::channel::<Arc<Event>>(HOP_CAPACITY);
        let (to_runner, mut runner_rx) = mpsc::channel::<Arc<Event>>(HOP_CAPACITY);
        let (to_completion, mut completion_rx) = mpsc::channel::<Arc<Event>>(HOP_CAPACITY);
        let finished = Arc::new(Notify::new());
        tokio::spawn(async move {
            while let Some(e) = connector_rx.recv().await {
                let _ = to_instance.send(e).await;
            }
        });
        tokio::spawn(async move {
            while let Some(e) = instance_rx.recv().await {
                let _ = to_runner.send(e).await;
            }
        });
        tokio::spawn(async move {
            while let Some(e) = runner_rx.recv().await {
                let _ = to_completion.send(e).await;
            }
        });
        let f = finished.clone();
        tokio::spawn(async move {
            let mut count = 0usize;
            while let Some(e) = completion_rx.recv().await {
                drop(e);
                count += 1;
                if count == n {
                    f.notify_one();
                }
            }
        });
        let start = Instant::now();
        for e in events {
            to_connector.send(Arc::new(e)).await.expect("chain alive");
        }
        let submit = start.elapsed();
        finished.notified().await;
        Run {
            total: start.elapsed(),
            submit,
        }
    })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = if bench {
        std::env::var("BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_EVENTS)
    } else {
        SMOKE_EVENTS
    };

    // The daemon's metrics recorder, as `switchboard serve` installs it: the engine pays for
    // its telemetry here as it does in production. `BENCH_RECORDER=stock` installs the stock
    // metrics-exporter-prometheus recorder instead (the same buckets, its upkeep running every
    // 5 s), the alternative ARCHITECTURE.md's telemetry decision was measured against.
    let _exporter = install_recorder();
    let submit_batch = std::env::var("BENCH_SUBMIT_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SUBMIT_BATCH)
        .max(1);
    let t = Instant::now();
    let rounds = vec![events(n), events(n)];
    let baseline_events = (events(n), events(n));
    eprintln!(
        "throughput: {n} events × 4 built in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The baseline runs before and after the engine; the better run counts (the machine may
    // be shared, so this favours the baseline).
    if std::env::var_os("BENCH_ENGINE_ONLY").is_some() {
        // For profiling: the engine alone, after a pause that marks where it starts.
        std::thread::sleep(Duration::from_secs(1));
        eprintln!("engine only: {:?}", engine_runs(rounds, submit_batch).0);
        return;
    }
    let base_before = baseline_run(baseline_events.0);
    let (runs, check) = engine_runs(rounds, submit_batch);
    let base_after = baseline_run(baseline_events.1);
    let base = if base_before.total <= base_after.total {
        base_before
    } else {
        base_after
    };

    let (cold, warm) = (runs[0], runs[1]);
    let base_rate = base.rate(n);
    println!();
    println!("throughput summary ({n} events, {PERSONAS} personas, {CONNECTORS} connectors)");
    if !bench {
        println!("  (smoke run without --bench: the figures are not meaningful)");
    }
    let line = |name: &str, r: &Run, vs_baseline: bool| {
        println!(
            "  {name:<30} {:>10.0} events/s  ({:.3} s; submit loop {:.3} s){}",
            r.rate(n),
            r.total.as_secs_f64(),
            r.submit.as_secs_f64(),
            if vs_baseline {
                format!("  {:.2}x baseline", r.rate(n) / base_rate)
            } else {
                String::new()
            }
        );
    };
    line("engine, cold", &cold, true);
    line("engine, warm", &warm, true);
    line("baseline (4 tokio hops), best", &base, false);
    println!(
        "  (baseline runs: {:.0} before, {:.0} after the engine, events/s)",
        base_before.rate(n),
        base_after.rate(n)
    );
    println!("  engine state after the runs: {check}");
    let rate_ok = cold.rate(n) >= TARGET_RATE;
    let ratio_ok = cold.rate(n) / base_rate >= TARGET_RATIO;
    println!(
        "  target >= {TARGET_RATE:.0} events/s: {}; target >= {TARGET_RATIO}x baseline: {}",
        if rate_ok { "OK" } else { "MISSES TARGET" },
        if ratio_ok { "OK" } else { "MISSES TARGET" }
    );
}

/// The recorder the run pays for: the daemon's (default) or the stock one (`BENCH_RECORDER=stock`).
fn install_recorder() -> Option<switchboard::telemetry::exporter::Exporter> {
    if std::env::var("BENCH_RECORDER").as_deref() == Ok("stock") {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        use switchboard::telemetry::metrics as m;
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), m::SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets(m::COUNT_BUCKETS))
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            handle.run_upkeep();
        });
        metrics::set_global_recorder(recorder).expect("one recorder");
        eprintln!("recorder: stock metrics-exporter-prometheus, upkeep every 5 s");
        return None;
    }
    Some(switchboard::telemetry::exporter::Exporter::install().expect("one recorder"))
}
