//! # Timers (`program_timer`)
//!
//! **Firing** (in process): an actix `System` running the engine (2 workers) with the
//! `program_timer` native on the daemon's SQLite store (WAL, `synchronous=FULL`), one running
//! `program_timer` connector, and one flow subscribing `timer` with a completing in-process
//! runner that notes when each invocation reaches it.
//! - Burst: 100,000 one-shot timers (10,000 personas) due evenly within one second, starting 3 s
//!   after start. Figures: fires per second from the first due time to the last invocation, and
//!   the lateness of invocations (runner time minus due time), p50 / p99 / max.
//! - Steady: 10,000 timers due one per millisecond (1,000/s over 10 s): lateness p50 / p99.
//! - Capacity (no target): the burst's 100,000 timers all due at one instant, so the rate is
//!   how fast the daemon drains them, not how fast they fall due.
//! - Baseline, same run, same schedules: a plain tokio `DelayQueue` on the same runtime firing
//!   the same due times into a bounded channel read by a task (no store, no routing).
//! - Targets: burst ≥ 50,000 fires/s with lateness p99 ≤ 50 ms; steady lateness p99 ≤ 5 ms.
//!
//! **Pending** (the real daemon binary): 1,000,000 timers due in a year are written into a
//! fresh store, then `switchboard serve` starts on it. Figures: resident memory once ready,
//! above the same binary's on an empty store (the idle baseline, same run); time to ready,
//! against the empty store's. Target: ≤ 200 MB above idle.
//!
//! Custom main. Without `--bench` (as under `cargo test --benches`) it runs a small smoke
//! version. `BENCH_PENDING=0` skips the daemon part.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/daemon.rs"]
mod daemon;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::{
    Flow, Idn, InterruptMode, Name, RunnerSpec, SkillSelector, Subscription,
};
use switchboard::invocation::Outcome;
use switchboard::natives::component::{NativeSupport, StartGate};
use switchboard::natives::program_timer::book::StoredBook;
use switchboard::natives::program_timer::service::{LatePolicy, Settings, LOAD_LIMIT};
use switchboard::natives::program_timer::ProgramTimer;
use switchboard::relay::ChannelSink;
use switchboard::skill_runner::in_process::FnRunner;
use switchboard::skill_runner::RunnerRegistry;
use switchboard::store::{Store, Written};
use switchboard::{Engine, EngineConfig, EngineParts};
use tokio_util::time::DelayQueue;

const PERSONAS: u128 = 10_000;

/// Writes `due_ms` timers into `store` in one transaction per 50,000.
async fn write_timers(store: &Store, due_ms: Vec<i64>) {
    for (c, chunk) in due_ms.chunks(50_000).enumerate() {
        let chunk = chunk.to_vec();
        let offset = c * 50_000;
        store
            .write(move |tx| {
                let mut st = tx.prepare_cached(
                    "INSERT INTO timers (account, connector, persona, name, due_ms, interval_ms,
                     repeatable, event, arguments, session)
                     VALUES ('default', 'timers', ?1, ?2, ?3, NULL, 0, 'timer', '[]', NULL)",
                )?;
                for (k, due) in chunk.iter().enumerate() {
                    let k = offset + k;
                    let persona = uuid::Uuid::from_u128((k as u128) % PERSONAS + 1);
                    st.execute(rusqlite::params![persona.to_string(), format!("t{k}"), due])?;
                }
                Ok(Written::Done)
            })
            .await
            .expect("timers written");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Firing {
    /// Fires per second, from the first due time to the last arrival.
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn summarize(mut late_ms: Vec<f64>, first_due_ms: i64, last_arrival_ms: i64) -> Firing {
    late_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let span = ((last_arrival_ms - first_due_ms).max(1)) as f64 / 1000.0;
    Firing {
        rate: late_ms.len() as f64 / span,
        p50_ms: percentile(&late_ms, 0.5),
        p99_ms: percentile(&late_ms, 0.99),
        max_ms: late_ms.last().copied().unwrap_or(f64::NAN),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The engine with the timer native on a fresh store holding timers due at `due_ms`.
fn engine_firing(due_ms: Vec<i64>) -> Firing {
    let n = due_ms.len();
    let first_due = *due_ms.iter().min().unwrap();
    let dir = daemon::temp_dir("bench-timers");
    actix_rt::System::new().block_on(async move {
        let store = Store::open(&dir.join("switchboard.db"), 65_536, 5_000).expect("store");
        write_timers(&store, due_ms).await;
        let arrivals: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let last = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let (a, l) = (arrivals.clone(), last.clone());
        let runner = FnRunner::new(move |inv| {
            let now = now_ms();
            let due = inv
                .event
                .event
                .arguments
                .get("fireAt")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
                .unwrap_or(now);
            a.lock().unwrap().push((now - due) as f64);
            l.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
            (Outcome::Completed, Vec::new())
        });
        let (open, start) = StartGate::new();
        let (sink, _commands) = ChannelSink::new(16);
        let engine = Engine::start(
            EngineConfig {
                workers: 2,
                inflight_limit: 200_000,
                ..Default::default()
            },
            EngineParts {
                runners: Arc::new(RunnerRegistry::new(Arc::new(runner))),
                relay: Arc::new(sink).into(),
                natives: vec![ProgramTimer::component_with(
                    Some(Arc::new(StoredBook::new(store.clone()))),
                    Settings {
                        window: Duration::from_secs(60),
                        grace: Duration::from_secs(60),
                        late: LatePolicy::FireOnce,
                        load_limit: LOAD_LIMIT,
                        max_per_account: usize::MAX,
                    },
                )],
                support: NativeSupport {
                    started: start,
                    ..NativeSupport::default()
                },
                dead_letters: Arc::new(MemoryDeadLetters::new(10_000)),
                sessions: None,
                acts: None,
                state: None,
            },
        );
        let account = Idn::known("default");
        let view = engine
            .create_connector(&account, "program_timer", "timers", "Timers", &[])
            .unwrap();
        engine.run_connector(view.id).unwrap();
        engine
            .put_flow(Flow {
                account,
                agent: Name::known("Bench"),
                flow: Name::known("Timers"),
                runner: RunnerSpec::Default,
                invocation_timeout: None,
                state_fields: Vec::new(),
                subscriptions: vec![Subscription {
                    event: Idn::known("timer"),
                    integration: Some(Idn::known("program_timer")),
                    connector: None,
                    skill: SkillSelector::Skill(Name::known("OnTimer")),
                    interrupt_mode: InterruptMode::Queue,
                }],
            })
            .await
            .unwrap();
        open.open_now();
        let deadline = Instant::now() + Duration::from_secs(120);
        while arrivals.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "timers did not all fire in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let late = std::mem::take(&mut *arrivals.lock().unwrap());
        drop(engine);
        summarize(
            late,
            first_due,
            last.load(std::sync::atomic::Ordering::Relaxed),
        )
    })
}

/// The baseline: the same due times in a `DelayQueue` on a 2-worker runtime, fired into a
/// channel a task reads.
fn baseline_firing(due_ms: Vec<i64>) -> Firing {
    let n = due_ms.len();
    let first_due = *due_ms.iter().min().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<i64>(1024);
        let reader = tokio::spawn(async move {
            let mut late = Vec::with_capacity(n);
            let mut last = 0;
            while let Some(due) = rx.recv().await {
                let now = now_ms();
                late.push((now - due) as f64);
                last = now;
                if late.len() == n {
                    break;
                }
            }
            (late, last)
        });
        let mut queue = DelayQueue::with_capacity(n);
        let base_ms = now_ms();
        let base = tokio::time::Instant::now();
        for due in due_ms {
            queue.insert_at(
                due,
                base + Duration::from_millis((due - base_ms).max(0) as u64),
            );
        }
        use futures_util::StreamExt;
        while let Some(expired) = queue.next().await {
            tx.send(expired.into_inner()).await.unwrap();
        }
        let (late, last) = reader.await.unwrap();
        summarize(late, first_due, last)
    })
}

fn line(name: &str, f: &Firing) {
    println!(
        "  {name:<34} {:>9.0} fires/s   lateness p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
        f.rate, f.p50_ms, f.p99_ms, f.max_ms
    );
}

/// Starts the daemon on `dir` (a store already there, or none); returns its resident memory
/// once ready (after a pause for the first refill) and the time to ready.
fn daemon_figures(dir: &std::path::Path) -> (u64, Duration) {
    let t = Instant::now();
    let d = daemon::DaemonProcess::start(dir, &[]);
    let ready = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let bytes = daemon::resident_bytes(d.child.id());
    (bytes, ready)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (burst_n, steady_n, pending_n) = if bench {
        (100_000usize, 10_000usize, 1_000_000usize)
    } else {
        (2_000, 500, 10_000)
    };
    println!("timers summary");
    if !bench {
        println!("  (smoke run without --bench: the figures are not meaningful)");
    }
    let burst = |n: usize| {
        let t0 = now_ms() + 3_000;
        (0..n)
            .map(|k| t0 + (k as i64 * 1_000) / n as i64)
            .collect::<Vec<_>>()
    };
    let steady = |n: usize| {
        let t0 = now_ms() + 3_000;
        (0..n).map(|k| t0 + k as i64).collect::<Vec<_>>()
    };
    let instant = |n: usize| vec![now_ms() + 3_000; n];
    let b_base = baseline_firing(burst(burst_n));
    let b = engine_firing(burst(burst_n));
    let c_base = baseline_firing(instant(burst_n));
    let c = engine_firing(instant(burst_n));
    let s_base = baseline_firing(steady(steady_n));
    let s = engine_firing(steady(steady_n));
    println!("  burst: {burst_n} timers due within 1 s");
    line("program_timer (SQLite, routed)", &b);
    line("baseline (DelayQueue -> channel)", &b_base);
    println!(
        "    ratio {:.2}x the baseline's rate; target >= 50000 fires/s: {}; p99 <= 50 ms: {}",
        b.rate / b_base.rate,
        if b.rate >= 50_000.0 {
            "OK"
        } else {
            "MISSES TARGET"
        },
        if b.p99_ms <= 50.0 {
            "OK"
        } else {
            "MISSES TARGET"
        }
    );
    println!("  capacity: {burst_n} timers due at one instant");
    line("program_timer (SQLite, routed)", &c);
    line("baseline (DelayQueue -> channel)", &c_base);
    println!("    ratio {:.2}x the baseline's rate", c.rate / c_base.rate);
    println!("  steady: {steady_n} timers at 1000/s");
    line("program_timer (SQLite, routed)", &s);
    line("baseline (DelayQueue -> channel)", &s_base);
    println!(
        "    target p99 <= 5 ms: {}",
        if s.p99_ms <= 5.0 {
            "OK"
        } else {
            "MISSES TARGET"
        }
    );

    if std::env::var("BENCH_PENDING").as_deref() == Ok("0") {
        return;
    }
    // The idle baseline: the daemon on an empty store.
    let idle_dir = daemon::temp_dir("bench-timers-idle");
    let (idle_rss, idle_ready) = daemon_figures(&idle_dir);
    // The same with `pending_n` timers due in a year.
    let dir = daemon::temp_dir("bench-timers-pending");
    let t = Instant::now();
    actix_rt::System::new().block_on(async {
        let store = Store::open(&dir.join("switchboard.db"), 65_536, 5_000).expect("store");
        let year = now_ms() + 365 * 86_400_000;
        write_timers(&store, (0..pending_n as i64).map(|k| year + k).collect()).await;
        store.flush().await.unwrap();
    });
    let written = t.elapsed();
    let (pending_rss, pending_ready) = daemon_figures(&dir);
    let above = pending_rss.saturating_sub(idle_rss) as f64 / 1e6;
    println!(
        "  pending: {pending_n} timers due in a year (written in {:.1} s)",
        written.as_secs_f64()
    );
    println!(
        "    resident memory once ready: {:.1} MB, idle baseline {:.1} MB: {:.1} MB above; target <= 200 MB: {}",
        pending_rss as f64 / 1e6,
        idle_rss as f64 / 1e6,
        above,
        if above <= 200.0 { "OK" } else { "MISSES TARGET" }
    );
    println!(
        "    time to ready: {:.2} s, idle baseline {:.2} s ({:.2}x)",
        pending_ready.as_secs_f64(),
        idle_ready.as_secs_f64(),
        pending_ready.as_secs_f64() / idle_ready.as_secs_f64()
    );
}
