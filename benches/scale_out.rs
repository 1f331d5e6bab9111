//! Scale-out on one partitioned events stream (issue 25): how much faster three daemons go than
//! one.
//!
//! - Setup: a recent nats-server (`nats-server-2`, `.ci/install-test-deps` installs it), the
//!   release daemon with `transport.nats.partitions = 24`, a `queue` flow on a webhook runner
//!   that takes `BENCH_RUNNER_MS` (default 20) per invocation. Each daemon is latency-bound as a
//!   real one is by its runners: `engine.inflight_limit = BENCH_INFLIGHT` (default 4) events at
//!   once, so the rate of one daemon is about `inflight / runner time`, whatever the cores.
//! - Measured: the daemons started and holding their shares of the partitions,
//!   `BENCH_EVENTS` (default 4,800) `user_message` events over 96 personas are published
//!   (pipelined; the stream takes them far faster than the daemons invoke them), timed from the
//!   first invocation to the last one at the runner: one daemon, then (on a fresh server)
//!   three daemons.
//! - Baseline, same run: the one daemon. Reported: events/s of both and the ratio (target:
//!   at least 2.4x), with the distinct events invoked (all of them: nothing lost).
//!
//! Without `--bench` (as `cargo test --benches` runs it) a small run checks that it works.

#[path = "../tests/common/daemon.rs"]
mod daemon;
#[path = "../tests/common/nats.rs"]
mod nats;
#[path = "../tests/common/runner_server.rs"]
mod runner_server;
#[path = "../tests/common/wait.rs"]
mod wait;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon::DaemonProcess;
use nats::{user_message, NatsServer};
use runner_server::{argument, completed, RunnerServer};
use serde_json::json;
use switchboard::transport::client::Client;
use switchboard::wire::envelope::Encoding;

const PARTITIONS: u32 = 24;
const PERSONAS: usize = 96;
/// Events published and not yet acknowledged by the stream, at most.
const WINDOW: usize = 256;

/// What the runner saw: (event text, when).
type Log = Arc<Mutex<Vec<(String, Instant)>>>;

fn runner(delay: Duration) -> (RunnerServer, Log) {
    let mut runner = RunnerServer::start_slow(delay, |_| (200, completed(json!([]))));
    let log: Log = Arc::default();
    let mut rx = std::mem::replace(&mut runner.rx, tokio::sync::mpsc::unbounded_channel().1);
    let l = log.clone();
    actix_rt::spawn(async move {
        while let Some(r) = rx.recv().await {
            let text = argument(&r.json["event"], "text").unwrap_or_default();
            l.lock().unwrap().push((text, Instant::now()));
        }
    });
    (runner, log)
}

/// A daemon of the run, configured over its API like the others.
async fn start(
    base: &Path,
    i: usize,
    nats: &NatsServer,
    runner: &RunnerServer,
    inflight: usize,
) -> DaemonProcess {
    let dir = base.join(format!("d{i}"));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    let d = DaemonProcess::builder(&dir)
        .envs(nats.daemon_env())
        .envs([
            ("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info".to_owned()),
            (
                "SWITCHBOARD_TRANSPORT__NATS__PARTITIONS",
                PARTITIONS.to_string(),
            ),
            ("SWITCHBOARD_ENGINE__INFLIGHT_LIMIT", inflight.to_string()),
            // Each daemon is configured over its own API, its runner path naming it: each
            // keeps its own control plane bucket.
            (
                "SWITCHBOARD_TRANSPORT__NATS__CONTROL_BUCKET",
                format!("SB_CONTROL_{i}"),
            ),
        ])
        .start();
    d.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/d{i}", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram", "interrupt_mode": "queue"}]});
    d.put_flow("Bot", "Main", &flow).await;
    d
}

/// Publishes `events` events round-robin over the personas, pipelined.
async fn publish(url: &str, events: usize) {
    let adapter = Client::connect(url, "sb", Encoding::MessagePack)
        .await
        .unwrap();
    let adapter = Arc::new(adapter);
    let mut inflight = tokio::task::JoinSet::new();
    for n in 0..events {
        if inflight.len() >= WINDOW {
            inflight.join_next().await.unwrap().unwrap();
        }
        let a = adapter.clone();
        inflight.spawn(async move {
            let p = n % PERSONAS;
            let e = user_message(&format!("persona-{p}"), &format!("{p}:{n}"));
            a.publish_event(&e, Some(&format!("ev-{n}"))).await.unwrap();
        });
    }
    while let Some(r) = inflight.join_next().await {
        r.unwrap();
    }
}

/// One run with `daemons` daemons: events/s from the first invocation to the last, and how many
/// distinct events were invoked.
async fn run(daemons: usize, events: usize, delay: Duration, inflight: usize) -> (f64, usize) {
    let dir = daemon::temp_dir(&format!("bench-scale-{daemons}"));
    let nats = NatsServer::start_recent(&dir);
    let (runner, log) = runner(delay);
    let mut ds = Vec::new();
    for i in 0..daemons {
        ds.push(start(&dir, i, &nats, &runner, inflight).await);
    }
    // Every daemon with its share before the first event: the run measures the split.
    let share = PARTITIONS as usize / daemons;
    wait::eventually_explained(
        &format!("{daemons} daemon(s) owning {share} partitions each"),
        Duration::from_secs(60),
        || {
            let ds = &ds;
            async move {
                for d in ds {
                    let owned = d.metric("switchboard_partitions_owned").await?;
                    (owned as usize == share).then_some(())?;
                }
                Some(())
            }
        },
        || async { String::new() },
    )
    .await;
    // Pipelined: the stream takes them far faster than the daemons invoke them.
    publish(&nats.url(), events).await;
    let seen = || {
        log.lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .len()
    };
    wait::eventually_explained(
        &format!("{events} events invoked through {daemons} daemon(s)"),
        Duration::from_secs(600),
        || {
            let n = seen();
            async move { (n >= events).then_some(()) }
        },
        || {
            let n = seen();
            async move { format!("{n} invoked") }
        },
    )
    .await;
    let log = log.lock().unwrap().clone();
    let first = log.iter().map(|(_, t)| *t).min().unwrap();
    let last = log.iter().map(|(_, t)| *t).max().unwrap();
    let rate = log.len() as f64 / (last - first).as_secs_f64().max(1e-9);
    drop(ds);
    (rate, seen_distinct(&log))
}

fn seen_distinct(log: &[(String, Instant)]) -> usize {
    log.iter().map(|(t, _)| t).collect::<BTreeSet<_>>().len()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = if bench {
        env("BENCH_EVENTS", 4_800) as usize
    } else {
        240
    };
    let delay = Duration::from_millis(env("BENCH_RUNNER_MS", 20));
    let inflight = env("BENCH_INFLIGHT", 4) as usize;
    actix_rt::System::new().block_on(async move {
        let t = Instant::now();
        let (one, one_seen) = run(1, events, delay, inflight).await;
        let (three, three_seen) = run(3, events, delay, inflight).await;
        assert_eq!(one_seen, events, "one daemon lost events");
        assert_eq!(three_seen, events, "three daemons lost events");
        println!(
            "scale_out: {events} events, {PERSONAS} personas, {PARTITIONS} partitions, runner {} ms, inflight {inflight} per daemon ({:.0} s)",
            delay.as_millis(),
            t.elapsed().as_secs_f64()
        );
        println!("  one daemon (baseline)  {one:>8.0} events/s ({one_seen} distinct invoked)");
        println!("  three daemons          {three:>8.0} events/s ({three_seen} distinct invoked)");
        println!("  ratio                  {:>8.2}x (target >= 2.4x)", three / one);
    });
}
