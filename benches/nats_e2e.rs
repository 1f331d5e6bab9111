//! End to end through NATS JetStream on this machine.
//!
//! - Measured: an adapter publishes 200-byte events as fast as JetStream acknowledges them
//!   (pipelined, at most 256 unacknowledged), the daemon (release binary, NATS transport)
//!   routes them to a `queue` flow, a runner consumes the invocations and completes at once.
//! - Baseline, same run, same server: the same publishing of the same payloads to a plain work
//!   queue stream, consumed and acknowledged with no daemon in between.
//! - Reported: events/s of both and the ratio (target: at least 0.7x), and the latency from
//!   publish to consumption (p50, p99) of both; the p99 added latency is the difference.
//! - Then open loop: both paths again at half the daemon's maximum rate (events made and
//!   stamped when due, so a slow path cannot slow the load); target p99 added ≤ 10 ms.
//!
//! `BENCH_EVENTS` (default 20000) sets the flood's count, `BENCH_PACED_SECONDS` (default 10)
//! the open loop's length. Needs `nats-server`
//! (`.ci/install-test-deps` installs it).

#[path = "../tests/common/daemon.rs"]
mod daemon;
#[path = "../tests/common/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use switchboard::transport::client::Client;
use switchboard::wire::envelope::{ArgumentWire, ArgumentsWire, Encoding, EventEnvelope};
use switchboard::wire::invocation::{InvocationBatchWire, ResultBatchWire};

const WINDOW: usize = 256;

fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Microseconds since the event's publisher stamped it (`sent_us`, see [`envelope`]).
fn latency_us(e: &EventEnvelope) -> u64 {
    let ArgumentsWire::List(a) = &e.arguments else {
        unreachable!("the benchmark publishes arguments as a list")
    };
    micros_now().saturating_sub(a[1].value.parse().unwrap())
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

/// A payload of about 200 bytes carrying its publish time.
fn envelope(n: usize) -> EventEnvelope {
    let mut e = nats::user_message(
        &format!("user-{}", n % 1000),
        &format!("message number {n:08} from the benchmark"),
    );
    if let ArgumentsWire::List(args) = &mut e.arguments {
        args.push(ArgumentWire {
            name: "sent_us".into(),
            value: micros_now().to_string().into(),
        });
    }
    e
}

/// Publishes `n` events made by `make` on `js`, as fast as JetStream acknowledges them (at
/// most `WINDOW` unacknowledged) when `rate` is `None`, else open loop at `rate` events/s
/// (each event made, and so stamped, when it is due: a slow path does not slow the load).
async fn publish(
    js: &jetstream::Context,
    n: usize,
    rate: Option<f64>,
    make: impl Fn(usize) -> (String, Bytes),
) {
    let (acks_tx, mut acks_rx) =
        tokio::sync::mpsc::channel::<jetstream::context::PublishAckFuture>(WINDOW);
    let acks = tokio::spawn(async move {
        while let Some(a) = acks_rx.recv().await {
            a.await.unwrap();
        }
    });
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    while sent < n {
        let due = match rate {
            None => n,
            Some(r) => ((started.elapsed().as_secs_f64() * r) as usize + 1).min(n),
        };
        while sent < due {
            let (subject, payload) = make(sent);
            let mut h = async_nats::HeaderMap::new();
            h.insert("Content-Type", "application/msgpack");
            let ack = js.publish_with_headers(subject, h, payload).await.unwrap();
            acks_tx.send(ack).await.unwrap();
            sent += 1;
        }
        if rate.is_some() && sent < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(acks_tx);
    acks.await.unwrap();
}

/// One path from publisher to consumer: events published on `subject`, each one's latency
/// reported on `latencies` by the consumer at the far end.
struct Pipe {
    js: jetstream::Context,
    subject: &'static str,
    latencies: tokio::sync::mpsc::UnboundedReceiver<u64>,
}

impl Pipe {
    /// Sends `n` events (flood when `rate` is `None`, else open loop at `rate`/s); answers
    /// the events/s from the first publish to the last consumption, and the latencies.
    async fn run(&mut self, n: usize, rate: Option<f64>) -> (f64, Vec<u64>) {
        let started = Instant::now();
        let subject = self.subject;
        let sending = publish(&self.js, n, rate, |i| {
            (
                subject.into(),
                Bytes::from(Encoding::MessagePack.encode(&envelope(i))),
            )
        });
        let latencies = &mut self.latencies;
        let taking = async {
            let mut lat = Vec::with_capacity(n);
            while lat.len() < n {
                lat.push(latencies.recv().await.unwrap());
            }
            lat
        };
        let ((), lat) = tokio::join!(sending, taking);
        (n as f64 / started.elapsed().as_secs_f64(), lat)
    }
}

/// The baseline: a plain work-queue stream, consumed and acknowledged.
async fn baseline(url: &str) -> Pipe {
    let c = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(c);
    let s = js
        .get_or_create_stream(stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    let cons: consumer::PullConsumer = s
        .get_or_create_consumer(
            "bench",
            consumer::pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (tx, latencies) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut msgs = cons
            .stream()
            .max_messages_per_batch(100)
            .messages()
            .await
            .unwrap();
        while let Some(m) = msgs.next().await {
            let m = m.unwrap();
            let e: EventEnvelope = Encoding::MessagePack.decode(&m.payload).unwrap();
            let _ = tx.send(latency_us(&e));
            m.ack().await.unwrap();
        }
    });
    Pipe {
        js,
        subject: "bench.events.default.telegram.bot",
        latencies,
    }
}

/// Through the daemon: a `queue` flow on the connector `telegram/bot`, whose invocations a
/// queue runner takes from the invocations stream and answers on the results stream.
async fn through_daemon(url: &str, d: &daemon::DaemonProcess) -> Pipe {
    let (http, base) = (d.client(), d.base.as_str());
    let r: serde_json::Value = http
        .post(format!("{base}/v1/integrations/telegram/connectors"))
        .json(&json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}))
        .send().await.unwrap().json().await.unwrap();
    http.post(format!(
        "{base}/v1/integrations/connectors/{}/run",
        r["id"].as_str().unwrap()
    ))
    .send()
    .await
    .unwrap();
    let flow = json!({"runner": {"kind": "queue"}, "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram"}]});
    assert!(http
        .put(format!("{base}/v1/flows/Bot/Main"))
        .json(&flow)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    let runner = Client::connect(url, "sb", Encoding::MessagePack)
        .await
        .unwrap();
    let inbox = runner
        .invocations("SB_INVOCATIONS", "bench_runner", "default", "Bot")
        .await
        .unwrap();
    let (tx, latencies) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut msgs = inbox
            .stream()
            .max_messages_per_batch(100)
            .messages()
            .await
            .unwrap();
        while let Some(m) = msgs.next().await {
            let m = m.unwrap();
            let batch: InvocationBatchWire = Encoding::MessagePack.decode(&m.payload).unwrap();
            let mut results = Vec::with_capacity(batch.invocations.len());
            for inv in &batch.invocations {
                let _ = tx.send(latency_us(&inv.event));
                results.push(nats::completed(inv.invocation_id));
            }
            let mut h = async_nats::HeaderMap::new();
            h.insert("Content-Type", "application/msgpack");
            runner
                .js
                .publish_with_headers(
                    "sb.results.default",
                    h,
                    Bytes::from(Encoding::MessagePack.encode(&ResultBatchWire { v: 1, results })),
                )
                .await
                .unwrap();
            m.ack().await.unwrap();
        }
    });
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    Pipe {
        js,
        subject: "sb.events.default.telegram.bot",
        latencies,
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let paced_seconds: f64 = std::env::var("BENCH_PACED_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let dir = daemon::temp_dir("bench-nats");
    let server = nats::NatsServer::start(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut plain = rt.block_on(baseline(&server.url()));
    let (base_rate, mut base_lat) = rt.block_on(plain.run(n, None));
    let env = server.daemon_env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    env.push(("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info"));
    let ack_pending = std::env::var("BENCH_MAX_ACK_PENDING").unwrap_or_else(|_| "1000".into());
    let pull_batch = std::env::var("BENCH_PULL_BATCH").unwrap_or_else(|_| "100".into());
    env.push(("SWITCHBOARD_TRANSPORT__NATS__MAX_ACK_PENDING", &ack_pending));
    env.push(("SWITCHBOARD_TRANSPORT__NATS__PULL_BATCH", &pull_batch));
    let d = daemon::DaemonProcess::start(&dir, &env);
    let mut ours = rt.block_on(through_daemon(&server.url(), &d));
    let (rate, mut lat) = rt.block_on(ours.run(n, None));
    // An earlier build (`SB_PREVIOUS_BIN`), when given, on a server of its own: what a change
    // costs, in the same run.
    let mut previous = std::env::var_os("SB_PREVIOUS_BIN").map(|bin| {
        let dir = daemon::temp_dir("bench-nats-previous");
        let server = nats::NatsServer::start(&dir);
        let mut env: Vec<(String, String)> = server.daemon_env();
        env.push(("SWITCHBOARD_LOG__LEVEL".into(), "warn,switchboard=info".into()));
        env.push((
            "SWITCHBOARD_TRANSPORT__NATS__MAX_ACK_PENDING".into(),
            ack_pending.clone(),
        ));
        env.push((
            "SWITCHBOARD_TRANSPORT__NATS__PULL_BATCH".into(),
            pull_batch.clone(),
        ));
        let d = daemon::DaemonProcess::builder(&dir)
            .binary(bin)
            .envs(env)
            .start();
        let mut pipe = rt.block_on(through_daemon(&server.url(), &d));
        let (rate, mut lat) = rt.block_on(pipe.run(n, None));
        let (p50, p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
        println!("nats_e2e: previous build (SB_PREVIOUS_BIN): {rate:.0} events/s, latency p50 {p50:.2} ms, p99 {p99:.2} ms ({n} events)");
        (server, d, pipe, rate)
    });
    let (b50, b99) = (pct(&mut base_lat, 0.50), pct(&mut base_lat, 0.99));
    let (d50, d99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
    println!("nats_e2e: baseline (JetStream publish → consume+ack): {base_rate:.0} events/s, latency p50 {b50:.2} ms, p99 {b99:.2} ms ({n} events)");
    println!("nats_e2e: switchboard (adapter → daemon → queue runner): {rate:.0} events/s, latency p50 {d50:.2} ms, p99 {d99:.2} ms ({n} events)");
    println!(
        "nats_e2e: ratio {:.2}x of baseline (target >= 0.7x); p99 added latency {:.2} ms (flood)",
        rate / base_rate,
        d99 - b99
    );
    // Open loop at half the daemon's maximum, both paths at the same rate.
    let half = rate / 2.0;
    let paced = ((half * paced_seconds) as usize).max(1);
    let (_, mut base_lat) = rt.block_on(plain.run(paced, Some(half)));
    let (_, mut lat) = rt.block_on(ours.run(paced, Some(half)));
    let (b50, b99) = (pct(&mut base_lat, 0.50), pct(&mut base_lat, 0.99));
    let (d50, d99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
    println!("nats_e2e: open loop at {half:.0} events/s ({paced} events): baseline p50 {b50:.2} ms, p99 {b99:.2} ms; switchboard p50 {d50:.2} ms, p99 {d99:.2} ms; p99 added {:.2} ms (target <= 10 ms)", d99 - b99);
    if let Some((_, _, pipe, previous_rate)) = &mut previous {
        println!(
            "nats_e2e: this build / previous build (flood): {:.2}x",
            rate / *previous_rate
        );
        let (_, mut lat) = rt.block_on(pipe.run(paced, Some(half)));
        let (p50, p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
        println!("nats_e2e: open loop, previous build: p50 {p50:.2} ms, p99 {p99:.2} ms; p99 added {:.2} ms", p99 - b99);
    }
    drop(d);
    drop(previous);
    std::thread::sleep(Duration::from_millis(100));
}
