//! # `send_request` round trip, in process
//!
//! **Measures** the native `http` integration inside the whole engine (an actix `System`,
//! `workers: 2`): an in-process runner answers with a `send_request` command on an http
//! connector (`base_url` a local actix-web server on 127.0.0.1, the connector's bearer token
//! injected, `max_in_flight` 64, `max_requests_per_second` 10,000, the most a connector may
//! have: requests spread over 8 such connectors), the native sends it through
//! the egress toolkit, and the `magic_http_response` comes back, routed, to the runner. A round
//! trip is timed from the runner's answer to the runner receiving the response event (the
//! answer carries its time in `targetAction`).
//!
//! - **Closed loop**: 64 conversations (personas), each answering its `magic_http_response`
//!   with the next `send_request`, N round trips in all (default 20,000; `BENCH_REQUESTS`):
//!   requests/s and p99.
//! - **Open loop at 1,000 requests/s** for `BENCH_SECONDS` (default 5): a `user_message` every
//!   millisecond, over 1,000 personas, each answered with one `send_request`: p99.
//!
//! **Baseline**, same run, same server: the same requests sent directly with `reqwest` (one
//! pooled client): 64 tasks in a closed loop, then one request a millisecond.
//!
//! **Targets**: ≥ 0.5× the direct rate; p99 added ≤ 5 ms at 1,000 requests/s.
//!
//! Custom main (no criterion). Without `--bench` (as under `cargo test --benches`) it runs a
//! small smoke version only.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use tokio::sync::Notify;

use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::{
    Command, Event, Flow, Idn, InterruptMode, Name, RunnerSpec, SkillSelector, Subscription,
};
use switchboard::natives::component::NativeSupport;
use switchboard::outbound::policy::EgressPolicy;
use switchboard::outbound::Egress;
use switchboard::relay::ChannelSink;
use switchboard::skill_runner::in_process::FnRunner;
use switchboard::skill_runner::{Outcome, RunnerRegistry};
use switchboard::{Engine, EngineConfig, EngineParts};

const CONVERSATIONS: usize = 64;
const OPEN_PERSONAS: usize = 1_000;
const OPEN_RATE: u64 = 1_000;
const TARGET_RATIO: f64 = 0.5;
const TARGET_ADDED_P99_MS: f64 = 5.0;

/// The local API: 200 with a small JSON body, on its own thread and actix system (one worker).
fn server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new().default_service(web::to(|| async {
                    HttpResponse::Ok().json(serde_json::json!({"id": 1, "name": "Ada"}))
                }))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind the local API");
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        })
    });
    format!("http://{}", rx.recv().unwrap())
}

/// Round-trip times (µs), and when the last one arrived.
#[derive(Default)]
struct Samples {
    times: Mutex<Vec<u64>>,
    count: AtomicUsize,
    done: Notify,
}

impl Samples {
    fn add(&self, us: u64, target: usize) {
        self.times.lock().unwrap().push(us);
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == target {
            self.done.notify_one();
        }
    }

    fn take(&self) -> Vec<u64> {
        self.count.store(0, Ordering::SeqCst);
        std::mem::take(&mut *self.times.lock().unwrap())
    }
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    open_p50_ms: f64,
    open_p99_ms: f64,
    open_n: usize,
}

/// What the runner does with a `magic_http_response`: the closed loop sends the next request
/// (until `remaining` runs out), the open loop nothing.
struct Loop {
    remaining: AtomicUsize,
    target: AtomicUsize,
}

/// The http connectors the requests are spread over: one connector's rate is capped at
/// 10,000/s (its `max_requests_per_second` at most), which the direct baseline passes.
const API_CONNECTORS: usize = 8;

/// The next request, on connector `api<n mod API_CONNECTORS>`.
fn send_request(account: &Idn, t0: Instant, n: usize) -> Command {
    Command::new(
        account.clone(),
        Idn::known("http"),
        Idn::parse("connector_idn", &format!("api{}", n % API_CONNECTORS))
            .expect("a connector idn"),
        Idn::known("send_request"),
    )
    .with_argument("method", "GET")
    .with_argument("url", "users/1")
    .with_argument("targetAction", t0.elapsed().as_nanos().to_string())
}

/// Through the engine's `http` native.
fn through_send_request(base: &str, n: usize, open_seconds: u64) -> Figures {
    let base = base.to_owned();
    actix_rt::System::new().block_on(async move {
        let t0 = Instant::now();
        let samples = Arc::new(Samples::default());
        let control = Arc::new(Loop {
            remaining: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
        });
        let account = Idn::known("default");
        let (s, c, a) = (samples.clone(), control.clone(), account.clone());
        let next = AtomicUsize::new(0);
        let runner = FnRunner::new(move |inv| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let e = &inv.event.event;
            if e.event.as_str() == "magic_http_response" {
                let sent: u128 = e
                    .arguments
                    .get("targetAction")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let us = (t0.elapsed().as_nanos().saturating_sub(sent) / 1000) as u64;
                s.add(us, c.target.load(Ordering::SeqCst));
                let more = c
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                    .is_ok();
                if more {
                    return (Outcome::Completed, vec![send_request(&a, t0, n)]);
                }
                return (Outcome::Completed, Vec::new());
            }
            if e.event.as_str() == "user_message" {
                return (Outcome::Completed, vec![send_request(&a, t0, n)]);
            }
            (Outcome::Completed, Vec::new())
        });
        let (sink, _commands) = ChannelSink::new(1024);
        let allow = vec!["127.0.0.1/32".parse().unwrap()];
        let engine = Engine::start(
            EngineConfig {
                workers: 2,
                inflight_limit: 100_000,
                ..Default::default()
            },
            EngineParts {
                runners: Arc::new(RunnerRegistry::new(Arc::new(runner))),
                relay: Arc::new(sink).into(),
                natives: vec![switchboard::natives::http::component()],
                support: NativeSupport {
                    egress: Egress::new(EgressPolicy::new(allow)),
                    ..NativeSupport::default()
                },
                dead_letters: Arc::new(MemoryDeadLetters::new(10_000)),
                sessions: None,
                acts: None,
                state: None,
            },
        );
        let chat = engine
            .create_connector(&account, "sandbox", "chat", "Chat", &[])
            .expect("create the chat");
        engine.run_connector(chat.id).expect("run the chat");
        let settings: Vec<(String, String)> = [
            ("base_url", format!("{base}/v1")),
            ("auth_type", "bearer".into()),
            ("auth_token", "bench-token".into()),
            ("max_in_flight", CONVERSATIONS.to_string()),
            ("max_requests_per_second", "10000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for k in 0..API_CONNECTORS {
            let api = engine
                .create_connector(&account, "http", &format!("api{k}"), "API", &settings)
                .expect("create the http connector");
            engine
                .run_connector(api.id)
                .expect("run the http connector");
        }
        let subscribe = |event: &str, integration: &str| Subscription {
            event: Idn::known(event),
            integration: Some(Idn::known(integration)),
            connector: None,
            skill: SkillSelector::Skill(Name::known("Call")),
            interrupt_mode: InterruptMode::Queue,
        };
        engine
            .put_flow(Flow {
                account: account.clone(),
                agent: Name::known("Bench"),
                flow: Name::known("Main"),
                runner: RunnerSpec::Default,
                invocation_timeout: None,
                state_fields: Vec::new(),
                subscriptions: vec![
                    subscribe("user_message", "sandbox"),
                    subscribe("magic_http_response", "http"),
                ],
            })
            .await
            .expect("put the flow");
        let message = |persona: usize| {
            Event::from_actor(
                account.clone(),
                Idn::known("sandbox"),
                Idn::known("chat"),
                Idn::known("user_message"),
                format!("user-{persona}"),
            )
            .with_argument("text", "hello")
        };

        // Closed loop: each conversation's first request from a user message, the rest from
        // the runner's answers to the responses.
        control.target.store(n, Ordering::SeqCst);
        control.remaining.store(n - CONVERSATIONS, Ordering::SeqCst);
        let start = Instant::now();
        for p in 0..CONVERSATIONS {
            engine
                .ingress()
                .submit(message(p), None)
                .await
                .expect("admitted");
        }
        samples.done.notified().await;
        let took = start.elapsed();
        let mut closed = samples.take();

        // Open loop: one user message a millisecond, over many personas.
        let total = (OPEN_RATE * open_seconds) as usize;
        control.remaining.store(0, Ordering::SeqCst);
        control.target.store(total, Ordering::SeqCst);
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / OPEN_RATE));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for k in 0..total {
            tick.tick().await;
            engine
                .ingress()
                .submit(message(CONVERSATIONS + k % OPEN_PERSONAS), None)
                .await
                .expect("admitted");
        }
        tokio::time::timeout(Duration::from_secs(30), samples.done.notified())
            .await
            .expect("every open-loop response within 30 s");
        let mut open = samples.take();
        Figures {
            rps: n as f64 / took.as_secs_f64(),
            p50_ms: pct(&mut closed, 0.50),
            p99_ms: pct(&mut closed, 0.99),
            open_p50_ms: pct(&mut open, 0.50),
            open_p99_ms: pct(&mut open, 0.99),
            open_n: open.len(),
        }
    })
}

/// Directly with `reqwest`, the same requests (the same bearer header) to the same server.
fn direct(base: &str, n: usize, open_seconds: u64) -> Figures {
    let url = format!("{base}/v1/users/1");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let client = reqwest::Client::new();
            let get = |client: reqwest::Client, url: String| async move {
                let t = Instant::now();
                let r = client
                    .get(&url)
                    .bearer_auth("bench-token")
                    .send()
                    .await
                    .expect("the local API answers");
                let _ = r.bytes().await.expect("its body");
                t.elapsed().as_micros() as u64
            };
            let start = Instant::now();
            let tasks: Vec<_> = (0..CONVERSATIONS)
                .map(|i| {
                    let (client, url) = (client.clone(), url.clone());
                    let share = n / CONVERSATIONS + usize::from(i < n % CONVERSATIONS);
                    tokio::spawn(async move {
                        let mut times = Vec::with_capacity(share);
                        for _ in 0..share {
                            times.push(get(client.clone(), url.clone()).await);
                        }
                        times
                    })
                })
                .collect();
            let mut closed = Vec::with_capacity(n);
            for t in tasks {
                closed.extend(t.await.unwrap());
            }
            let took = start.elapsed();

            let total = (OPEN_RATE * open_seconds) as usize;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / OPEN_RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::with_capacity(total);
            for _ in 0..total {
                tick.tick().await;
                tasks.push(tokio::spawn(get(client.clone(), url.clone())));
            }
            let mut open = Vec::with_capacity(total);
            for t in tasks {
                open.push(t.await.unwrap());
            }
            Figures {
                rps: n as f64 / took.as_secs_f64(),
                p50_ms: pct(&mut closed, 0.50),
                p99_ms: pct(&mut closed, 0.99),
                open_p50_ms: pct(&mut open, 0.50),
                open_p99_ms: pct(&mut open, 0.99),
                open_n: open.len(),
            }
        })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, seconds) = if bench {
        (
            env("BENCH_REQUESTS", 20_000) as usize,
            env("BENCH_SECONDS", 5),
        )
    } else {
        (640, 1)
    };
    let n = n.max(CONVERSATIONS);
    let base = server();
    // Warm the server and the loopback path once.
    let _ = direct(&base, CONVERSATIONS, 0);
    let d = direct(&base, n, seconds);
    let s = through_send_request(&base, n, seconds);
    let ratio = s.rps / d.rps;
    let added = s.open_p99_ms - d.open_p99_ms;
    println!(
        "http_send_request: {n} round trips, {CONVERSATIONS} conversations; open loop {} at {OPEN_RATE}/s",
        s.open_n
    );
    println!(
        "  send_request: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; at {OPEN_RATE}/s p50 {:.2} ms, p99 {:.2} ms",
        s.rps, s.p50_ms, s.p99_ms, s.open_p50_ms, s.open_p99_ms
    );
    println!(
        "  direct reqwest: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; at {OPEN_RATE}/s p50 {:.2} ms, p99 {:.2} ms",
        d.rps, d.p50_ms, d.p99_ms, d.open_p50_ms, d.open_p99_ms
    );
    println!(
        "  ratio {ratio:.2}x (target ≥ {TARGET_RATIO}x: {}); p99 added at {OPEN_RATE}/s {added:.2} ms (target ≤ {TARGET_ADDED_P99_MS} ms: {})",
        if ratio >= TARGET_RATIO { "met" } else { "missed" },
        if added <= TARGET_ADDED_P99_MS { "met" } else { "missed" },
    );
}
