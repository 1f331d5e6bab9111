//! # Webhook delivery (the durable outbox, signed)
//!
//! Signed outgoing deliveries to a local receiver (actix-web on 127.0.0.1, answering 204):
//! - **Switchboard**: messages enqueued in the daemon's durable outbox (`outbound::outbox` on a
//!   SQLite store, WAL, `synchronous=FULL`), each delivered by a destination that does what the
//!   `api` native and the adapters' endpoints do per attempt (`relay::webhook::signed_post`:
//!   Standard Webhooks signature, then `Egress::send` under the egress policy), its row deleted
//!   once settled. 100 conversations (lanes, in order each), the outbox's default 64 attempts
//!   in flight.
//! - **Baseline**, same run, same receiver: a bare loop of signed `reqwest` POSTs (the same
//!   signing), 64 at once.
//! - **Throughput**: 20,000 messages, as fast as they go: deliveries/s, and the ratio.
//! - **Latency at 1,000 deliveries/s**: 5,000 messages paced one per millisecond; enqueue (or
//!   request start) to settled (or response): p50, p99; the p99 added is the difference.
//! - Targets: ratio ≥ 0.5x; p99 added ≤ 10 ms at 1,000 deliveries/s.
//!
//! Custom main. Without `--bench` (as under `cargo test --benches`) it runs a small smoke
//! version.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use reqwest::header::HeaderMap;
use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::Idn;
use switchboard::outbound::outbox::{
    Attempt, Destination, Destinations, Outbox, OutboxError, OutboxItem, OutboxSettings, Settled,
};
use switchboard::outbound::{Egress, EgressPolicy, Signer, SigningKey};
use switchboard::relay::webhook::{signed_post, Endpoint};
use switchboard::store::Store;
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LANES: usize = 100;
const IN_FLIGHT: usize = 64;

/// The receiver: 204 to every POST.
fn receiver() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new().default_service(web::to(|| async { HttpResponse::NoContent().finish() }))
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    format!("http://{}/hook", rx.recv().unwrap())
}

/// What every attempt does: sign, POST under the egress policy; tells when each settles.
struct Bench {
    url: String,
    egress: Egress,
    settled: mpsc::UnboundedSender<(uuid::Uuid, Instant)>,
}

impl Destination for Bench {
    fn deliver(&self, item: &OutboxItem, _attempt: u32) -> BoxFuture<'static, Attempt> {
        let endpoint = Endpoint {
            url: ("url", Some(self.url.clone())),
            secret: ("secret", Some(SECRET.into())),
            previous_secret: None,
            headers: None,
            timeout_seconds: None,
        };
        let (request, options) = signed_post(endpoint, item).expect("a usable endpoint");
        let egress = self.egress.clone();
        async move { Attempt::of_sent(egress.send(request, &options).await) }.boxed()
    }

    fn settled(&self, item: &OutboxItem, outcome: &Settled) {
        assert!(matches!(outcome, Settled::Delivered(_)), "{outcome:?}");
        let _ = self.settled.send((item.id, Instant::now()));
    }
}

fn payload(n: usize) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"type": "send_message", "timestamp": "2026-12-07T10:00:00.000Z",
        "data": {"command_act_id": uuid::Uuid::now_v7(), "persona_id": n, "connector_idn": "bot",
                 "arguments": {"text": "Yes, from 10:00 to 16:00."}}}),
    )
    .unwrap()
}

/// Enqueues message `n`, waiting while the outbox's queue is full; answers when it was taken.
async fn enqueue(outbox: &Outbox, n: usize) -> (uuid::Uuid, Instant) {
    loop {
        let item = OutboxItem::new(
            Idn::known("default"),
            "bench:receiver",
            format!("p{}", n % LANES),
            payload(n),
        );
        let id = item.id;
        let at = Instant::now();
        match outbox.enqueue(item) {
            Ok(durable) => {
                tokio::spawn(async move { durable.await.expect("committed") });
                return (id, at);
            }
            Err(OutboxError::Full) => tokio::time::sleep(Duration::from_micros(200)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&v, 0.50), percentile(&v, 0.99))
}

/// The outbox run: `n` messages, paced `every` apart (zero: as fast as they go). Answers the
/// deliveries per second and the latencies (ms).
async fn outbox_run(url: &str, n: usize, every: Duration) -> (f64, Vec<f64>) {
    let dir = std::env::temp_dir().join(format!("sb-bench-webhooks-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("bench.db"), 64, 5000).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let egress = Egress::new(EgressPolicy::new(
        EgressPolicy::parse_allow(["127.0.0.1"]).unwrap(),
    ));
    let destination = Arc::new(Bench {
        url: url.to_owned(),
        egress,
        settled: tx,
    });
    let outbox = Outbox::start(
        store,
        Arc::new(MemoryDeadLetters::new(16)),
        Destinations::new().register("bench", destination),
        OutboxSettings::default(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let sent = Arc::new(Mutex::new(std::collections::HashMap::with_capacity(n)));
    let s = sent.clone();
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_micros(1)));
        for i in 0..n {
            if !every.is_zero() {
                tick.tick().await;
            }
            let (id, at) = enqueue(&outbox, i).await;
            s.lock().unwrap().insert(id, at);
        }
        outbox
    });
    let mut latencies = Vec::with_capacity(n);
    let mut pending = Vec::new();
    let mut last = started;
    for _ in 0..n {
        let (id, at) = rx.recv().await.expect("every message settles");
        last = at;
        pending.push((id, at));
    }
    let outbox = producer.await.unwrap();
    let sent = sent.lock().unwrap();
    for (id, at) in pending {
        let from = sent[&id];
        latencies.push(at.duration_since(from).as_secs_f64() * 1000.0);
    }
    drop(outbox);
    let _ = std::fs::remove_dir_all(&dir);
    (
        n as f64 / last.duration_since(started).as_secs_f64(),
        latencies,
    )
}

/// One bare signed POST.
async fn bare_post(client: &reqwest::Client, url: &str, signer: &Signer, n: usize) {
    let body = payload(n);
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    signer
        .sign(
            &mut headers,
            &uuid::Uuid::now_v7().to_string(),
            chrono::Utc::now().timestamp(),
            &body,
        )
        .unwrap();
    let r = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// The baseline: `n` bare signed POSTs, `IN_FLIGHT` at once, or paced `every` apart.
async fn bare_run(url: &str, n: usize, every: Duration) -> (f64, Vec<f64>) {
    let client = reqwest::Client::new();
    let signer = Arc::new(Signer::new(SigningKey::parse(SECRET).unwrap()));
    let started = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    if every.is_zero() {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (client, url, signer, next, latencies) = (
                    client.clone(),
                    url.to_owned(),
                    signer.clone(),
                    next.clone(),
                    latencies.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let at = Instant::now();
                        bare_post(&client, &url, &signer, i).await;
                        latencies
                            .lock()
                            .unwrap()
                            .push(at.elapsed().as_secs_f64() * 1000.0);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    } else {
        let mut tick = tokio::time::interval(every);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            let (client, url, signer, latencies) = (
                client.clone(),
                url.to_owned(),
                signer.clone(),
                latencies.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let at = Instant::now();
                bare_post(&client, &url, &signer, i).await;
                latencies
                    .lock()
                    .unwrap()
                    .push(at.elapsed().as_secs_f64() * 1000.0);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    (rate, latencies)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (burst, paced) = if full { (20_000, 5_000) } else { (500, 200) };
    let url = receiver();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm both paths (connections, the store's file).
        bare_run(&url, 200, Duration::ZERO).await;
        outbox_run(&url, 200, Duration::ZERO).await;

        let (base_rate, _) = bare_run(&url, burst, Duration::ZERO).await;
        let (rate, _) = outbox_run(&url, burst, Duration::ZERO).await;
        println!("webhook_delivery: baseline (bare signed reqwest POSTs, {IN_FLIGHT} at once): {base_rate:.0} deliveries/s ({burst})");
        println!("webhook_delivery: outbox (durable, signed, {LANES} lanes): {rate:.0} deliveries/s ({burst})");
        println!(
            "webhook_delivery: ratio {:.2}x of baseline (target >= 0.5x)",
            rate / base_rate
        );

        let every = Duration::from_millis(1);
        let (_, base) = bare_run(&url, paced, every).await;
        let (_, ours) = outbox_run(&url, paced, every).await;
        let ((b50, b99), (o50, o99)) = (ms(base), ms(ours));
        println!("webhook_delivery: at 1,000/s ({paced}): baseline p50 {b50:.2} ms, p99 {b99:.2} ms; outbox p50 {o50:.2} ms, p99 {o99:.2} ms; p99 added {:.2} ms (target <= 10 ms)", o99 - b99);
    });
}
