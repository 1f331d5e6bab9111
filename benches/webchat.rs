//! # Web chat: socket.io clients of `newo_chat`, their memory and their pushes
//!
//! **Measured**: the real daemon binary (release build, a process of its own on 127.0.0.1) with
//! a running `newo_chat` connector and one actor (create-actor) per client. The clients: one
//! Node process of official `socket.io-client` 4.8.x sockets (`tests/fixtures/socketio/load.js`,
//! WebSocket transport), one socket per actor, connected to the connector's socket.io listener
//! (`newo_chat.listen`), at most 128 connecting at once.
//! - **Memory**: the daemon's RSS (`VmRSS` of its `/proc/<pid>/status`) once its actors exist,
//!   then once every socket is connected and the RSS holds still (sampled every 0.5 s until
//!   four samples agree within 1%, at most 30 s; the same rule for the baseline): the growth
//!   per socket.
//! - **Pushes**: `send_message` commands for the actors, spread round-robin over the clients,
//!   sent open loop at a fixed rate through the daemon's command path (`POST /v1/commands` with
//!   the actor's `persona_id`, the admin token: the command stage, then the native's push to
//!   the actor's sockets, as a skill's command reaches it, without a runner's round trip in the
//!   figure). Each command carries `sent_us`, CLOCK_MONOTONIC in µs stamped right before it is
//!   posted; the client subtracts it from its own CLOCK_MONOTONIC (`process.hrtime`) on
//!   arrival: delivery latency p50 / p99 / max. One second's worth first, to warm up (not
//!   counted).
//!
//! **Baseline**, same run, same clients, same commands: the official Node `socket.io` server
//! 4.8.x (`tests/fixtures/socketio/server.js`, one process) taking the same `POST
//! /v1/commands` bodies and emitting each to its actor's sockets with the same payload.
//!
//! **Targets**: ≤ 30 KB of daemon RSS per socket; at least the baseline's rate with p99 ≤ 20 ms.
//!
//! Sizes: `WEBCHAT_CLIENTS` (default 10,000), `WEBCHAT_RATE` (commands/s, default 5,000),
//! `WEBCHAT_SECONDS` (default 10); `WEBCHAT_MEMORY_ONLY=1` measures the memory only (no
//! pushes), `WEBCHAT_NO_BASELINE=1` skips the Node server (to iterate; figures for the table
//! always come with their baseline). Needs `node` and the fixture's packages (`bash
//! .ci/install-test-deps`). The process's open-file limit is raised to its hard limit (the
//! daemon and the Node processes inherit it). Custom main; without `--bench` (as under `cargo
//! test --benches`) a small smoke version runs.

#[path = "../tests/common/daemon.rs"]
mod daemon;
#[path = "../tests/common/socketio.rs"]
mod socketio;
#[path = "../tests/common/wait.rs"]
mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

const ORIGIN: &str = "https://app.example.com";
/// Sockets connecting at once, at most.
const WINDOW: usize = 128;
const TARGET_KB_PER_SOCKET: f64 = 30.0;
const TARGET_P99_MS: f64 = 20.0;
/// How often the resident memory is sampled while it settles.
const SETTLE_EVERY: Duration = Duration::from_millis(500);
/// Samples that must agree: two seconds' worth.
const SETTLE_SAMPLES: usize = 4;
/// How far apart they may be: 1% of the largest.
const SETTLE_SPREAD: f64 = 0.01;
/// Longest wait for the memory to settle (then the last sample counts, with a warning).
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// CLOCK_MONOTONIC in µs: the clock Node's `process.hrtime` reads too.
fn now_us() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC)");
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

/// Raises the soft open-file limit to the hard one; answers it.
fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid rlimit to read into and from.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
    l.rlim_cur
}

/// The socket.io fixture's directory (fails, never skips, when it is not installed).
fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/socketio");
    for package in ["socket.io-client", "socket.io"] {
        assert!(
            dir.join(format!("node_modules/{package}/package.json"))
                .is_file(),
            "the webchat bench needs node and {package} in {}; run `bash .ci/install-test-deps`",
            dir.display()
        );
    }
    dir
}

/// A Node process of the fixture speaking JSON lines (`load.js`, `server.js`).
struct Node {
    child: Child,
    stdin: ChildStdin,
    reports: mpsc::UnboundedReceiver<Value>,
}

impl Node {
    fn start(script: &str, env: &[(&str, &str)]) -> Node {
        let (child, stdin, reports) = socketio::spawn(script, &["--max-old-space-size=4096"], env);
        Node {
            child,
            stdin,
            reports,
        }
    }

    fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next report, within `limit`.
    async fn next(&mut self, what: &str, limit: Duration) -> Value {
        wait::within(what, limit, self.reports.recv())
            .await
            .unwrap_or_else(|| panic!("the node process ended before {what}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One side's figures.
struct Figures {
    connected: usize,
    failed: usize,
    rss_before: u64,
    rss_after: u64,
    sent: usize,
    send_rate: f64,
    /// Received per second, from the first command sent to the last message received.
    delivered_rate: f64,
    refused: usize,
    received: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    disconnected: u64,
}

impl Figures {
    fn kb_per_socket(&self) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / 1024.0 / self.connected.max(1) as f64
    }
}

/// The server side of a run: where its socket.io listener and command path are.
struct Side<'a> {
    pid: u32,
    sockets: &'a str,
    commands: String,
    token: Option<&'a str>,
    secret: &'a str,
}

/// The command for actor `persona`, stamped now.
fn command(persona: &str) -> Value {
    json!({"v": 1, "integration_idn": "newo_chat", "connector_idn": "web",
           "command_idn": "send_message", "persona_id": persona,
           "arguments": [{"name": "text", "value": "Yes, we are open from 10:00 to 16:00."},
                         {"name": "user_actor_id", "value": persona},
                         {"name": "sent_us", "value": now_us().to_string()}]})
}

/// Posts `count` commands at `rate` per second, open loop, over `actors` round-robin from
/// `offset`; answers how many were sent, in how long, and how many were not accepted.
async fn push(
    http: &reqwest::Client,
    side: &Side<'_>,
    actors: &[(String, String)],
    rate: u64,
    count: usize,
    offset: usize,
) -> (Duration, usize) {
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count {
        tick.tick().await;
        let due = ((start.elapsed().as_micros() as u64 * rate) / 1_000_000) as usize;
        while sent < due.min(count) {
            let persona = &actors[(offset + sent) % actors.len()].1;
            let mut r = http.post(&side.commands).json(&command(persona));
            if let Some(t) = side.token {
                r = r.bearer_auth(t);
            }
            let refused = refused.clone();
            tasks.spawn(async move {
                // (The body read to its end: only then does the connection go back to the pool.)
                let answer = async {
                    let res = r.send().await?;
                    let accepted = res.status().as_u16() == 202;
                    res.bytes().await.map(|_| accepted)
                };
                match tokio::time::timeout(Duration::from_secs(30), answer).await {
                    Ok(Ok(true)) => {}
                    other => {
                        if refused.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("webchat: a command was not accepted: {other:?}");
                        }
                    }
                }
            });
            sent += 1;
        }
    }
    let took = start.elapsed();
    while tasks.join_next().await.is_some() {}
    (took, refused.load(Ordering::Relaxed))
}

/// The resident memory of `pid` once it holds still: sampled every `SETTLE_EVERY`, the last
/// `SETTLE_SAMPLES` within `SETTLE_SPREAD` of each other (freed buffers given back, a
/// collector run), for at most `SETTLE_LIMIT`. The same rule for the daemon and the baseline.
async fn settled_rss(pid: u32) -> u64 {
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        tokio::time::sleep(SETTLE_EVERY).await;
        samples.push(daemon::resident_bytes(pid));
        let last = &samples[samples.len().saturating_sub(SETTLE_SAMPLES)..];
        let (lo, hi) = (
            *last.iter().min().unwrap() as f64,
            *last.iter().max().unwrap() as f64,
        );
        if last.len() == SETTLE_SAMPLES && hi - lo <= hi * SETTLE_SPREAD {
            return *samples.last().unwrap();
        }
        if start.elapsed() >= SETTLE_LIMIT {
            eprintln!("webchat: RSS of {pid} did not settle within {SETTLE_LIMIT:?}: {samples:?}");
            return *samples.last().unwrap();
        }
    }
}

/// Connects a client per actor to `side`, measures its RSS growth, then pushes `rate` × `seconds`
/// commands (after a second's warm-up) and reads the latencies the clients saw.
async fn run(
    side: Side<'_>,
    actors: &[(String, String)],
    rate: u64,
    seconds: u64,
    memory_only: bool,
) -> Figures {
    let mut clients = Node::start("load.js", &[]);
    let rss_before = daemon::resident_bytes(side.pid);
    clients.send(
        json!({"op": "connect", "url": side.sockets, "window": WINDOW,
                        "query": {"client_secret": side.secret, "origin": ORIGIN},
                        "actors": actors}),
    );
    let r = clients
        .next("every client connected", Duration::from_secs(600))
        .await;
    let connected = r["ok"].as_u64().unwrap_or(0) as usize;
    let failed = r["failed"].as_u64().unwrap_or(0) as usize;
    if failed > 0 {
        eprintln!(
            "webchat: {failed} clients not connected: {}",
            r["first_error"]
        );
    }
    let rss_after = settled_rss(side.pid).await;
    if memory_only {
        clients.send(json!({"op": "close"}));
        return Figures {
            connected,
            failed,
            rss_before,
            rss_after,
            sent: 0,
            send_rate: f64::NAN,
            delivered_rate: f64::NAN,
            refused: 0,
            received: 0,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
            disconnected: 0,
        };
    }

    let http = reqwest::Client::new();
    let warm = rate as usize;
    // The clients report what arrived by then, all or not; the bench waits a little longer.
    let patience = Duration::from_secs(seconds + 60);
    let limit = patience + Duration::from_secs(30);
    let expect = |count: usize| json!({"op": "expect", "count": count, "timeout_ms": patience.as_millis() as u64});
    clients.send(expect(warm));
    let (_, refused) = push(&http, &side, actors, rate, warm, 0).await;
    let done = clients.next("the warm-up's messages", limit).await;
    if done["received"].as_u64() != Some(warm as u64) || refused > 0 {
        eprintln!("webchat: warm-up: {refused} commands not accepted; {done}");
    }

    let count = (rate * seconds) as usize;
    clients.send(expect(count));
    let first = now_us();
    let (took, refused) = push(&http, &side, actors, rate, count, warm).await;
    let done = clients.next("every message", limit).await;
    let received = done["received"].as_u64().unwrap_or(0);
    let last = done["last_us"].as_u64().unwrap_or(first);
    clients.send(json!({"op": "close"}));
    let ms = |k: &str| done[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    Figures {
        connected,
        failed,
        rss_before,
        rss_after,
        sent: count,
        send_rate: count as f64 / took.as_secs_f64(),
        delivered_rate: received as f64 / (last.saturating_sub(first).max(1) as f64 / 1e6),
        refused,
        received,
        p50_ms: ms("p50_us"),
        p99_ms: ms("p99_us"),
        max_ms: ms("max_us"),
        disconnected: done["disconnected"].as_u64().unwrap_or(0),
    }
}

/// The daemon's socket.io listener, from its log.
async fn socket_base(d: &daemon::DaemonProcess) -> String {
    wait::eventually(
        "the socket.io listener's address",
        wait::PATIENCE,
        || async {
            d.logs.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "socket.io listening")
                    .then(|| format!("http://{}", v["fields"]["address"].as_str().unwrap()))
            })
        },
    )
    .await
}

/// Creates and runs the `newo_chat` connector `web`; answers its client secret.
async fn chat_connector(d: &daemon::DaemonProcess) -> String {
    let http = d.client();
    let v: Value = http
        .post(d.url("/v1/integrations/newo_chat/connectors"))
        .json(&json!({"title": "Web", "connector_idn": "web",
                      "settings": [{"idn": "domain", "value": ORIGIN}]}))
        .send()
        .await
        .expect("create the connector")
        .json()
        .await
        .expect("its answer");
    let secret = v["revealed"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("a client secret: {v}"))
        .to_owned();
    let id = v["id"].as_str().unwrap();
    let s = http
        .post(d.url(&format!("/v1/integrations/connectors/{id}/run")))
        .send()
        .await
        .expect("run the connector")
        .status();
    assert!(s.is_success(), "{s}");
    secret
}

/// Creates `n` actors (`create-actor`, 32 at once); answers (external_id, actor id) each.
async fn actors(d: &daemon::DaemonProcess, secret: &str, n: usize) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let url = d.url("/api/internal/v1/talking-head/create-actor");
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let r = http.post(&url).header("origin", ORIGIN).json(
                &json!({"name": format!("Visitor {i}"), "external_id": format!("visitor-{i}"),
                              "connector_idn": "web", "client_secret": secret}),
            );
            set.spawn(async move {
                let v: Value = r
                    .send()
                    .await
                    .expect("create-actor")
                    .json()
                    .await
                    .expect("its answer");
                (
                    i,
                    v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned(),
                )
            });
        }
        let mut got: Vec<(usize, String)> = set.join_all().await;
        got.sort();
        out.extend(got.into_iter().map(|(i, id)| (format!("visitor-{i}"), id)));
    }
    out
}

fn print(name: &str, f: &Figures) {
    println!(
        "  {name:<34} sockets {} ({} failed); RSS {:.1} -> {:.1} MB: {:.1} KB per socket",
        f.connected,
        f.failed,
        f.rss_before as f64 / 1e6,
        f.rss_after as f64 / 1e6,
        f.kb_per_socket()
    );
    println!(
        "  {:<34} {} commands sent at {:.0}/s ({} not accepted), {} received at {:.0}/s ({} sockets dropped); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        "", f.sent, f.send_rate, f.refused, f.received, f.delivered_rate, f.disconnected, f.p50_ms, f.p99_ms, f.max_ms
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (clients, rate, seconds) = if bench {
        (
            env("WEBCHAT_CLIENTS", 10_000) as usize,
            env("WEBCHAT_RATE", 5_000),
            env("WEBCHAT_SECONDS", 10),
        )
    } else {
        (50, 200, 1)
    };
    let memory_only = std::env::var_os("WEBCHAT_MEMORY_ONLY").is_some_and(|v| v == "1");
    let baseline = std::env::var_os("WEBCHAT_NO_BASELINE").is_none_or(|v| v != "1");
    let nofile = raise_nofile();
    fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = daemon::temp_dir("bench-webchat");
        let lots = "1000000";
        let d = daemon::DaemonProcess::builder(&dir)
            .envs([
                ("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info"),
                // One machine holds every client: the public API's per-IP and per-secret
                // rates would refuse all but the first few.
                ("SWITCHBOARD_NEWO_CHAT__IP_PER_SECOND", lots),
                ("SWITCHBOARD_NEWO_CHAT__IP_BURST", lots),
                ("SWITCHBOARD_NEWO_CHAT__SECRET_PER_SECOND", lots),
                ("SWITCHBOARD_NEWO_CHAT__SECRET_BURST", lots),
            ])
            .start();
        let sockets = socket_base(&d).await;
        let secret = chat_connector(&d).await;
        let t = Instant::now();
        let actors = actors(&d, &secret, clients).await;
        eprintln!("webchat: {clients} actors created in {:.1} s", t.elapsed().as_secs_f64());

        // Baseline first: the Node socket.io server, same clients, same commands.
        let base = if baseline {
            let mut server = Node::start(
                "server.js",
                &[("WEBCHAT_SECRET", &secret), ("WEBCHAT_ORIGIN", ORIGIN)],
            );
            let listening = server
                .next("the baseline server listening", Duration::from_secs(30))
                .await;
            let port = listening["port"].as_u64().unwrap();
            let base_url = format!("http://127.0.0.1:{port}");
            let base = run(
                Side {
                    pid: listening["pid"].as_u64().unwrap() as u32,
                    sockets: &base_url,
                    commands: format!("{base_url}/v1/commands"),
                    token: None,
                    secret: &secret,
                },
                &actors,
                rate,
                seconds,
                memory_only,
            )
            .await;
            drop(server);
            Some(base)
        } else {
            None
        };

        let ours = run(
            Side {
                pid: d.child.id(),
                sockets: &sockets,
                commands: d.url("/v1/commands"),
                token: Some(&d.token),
                secret: &secret,
            },
            &actors,
            rate,
            seconds,
            memory_only,
        )
        .await;

        println!(
            "webchat: {clients} socket.io clients (websocket), send_message at {rate}/s for {seconds} s (open file limit {nofile})"
        );
        if !bench {
            println!("  (smoke run without --bench: the figures are not meaningful)");
        }
        if let Some(base) = &base {
            print("baseline (Node socket.io 4.8)", base);
        }
        print("switchboard newo_chat", &ours);
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        let base_kb = base.as_ref().map_or(f64::NAN, Figures::kb_per_socket);
        println!(
            "  RSS per socket {:.1} KB (target <= {TARGET_KB_PER_SOCKET} KB: {}; baseline {:.1} KB, ratio {:.2}x)",
            ours.kb_per_socket(),
            verdict(ours.kb_per_socket() <= TARGET_KB_PER_SOCKET),
            base_kb,
            ours.kb_per_socket() / base_kb
        );
        if memory_only {
            println!("  (memory only: no pushes)");
            return;
        }
        let all = |f: &Figures| f.received as usize >= f.sent && f.refused == 0;
        let (base_rate, base_p99, base_all) = base.as_ref().map_or((f64::NAN, f64::NAN, false), |b| {
            (b.delivered_rate, b.p99_ms, all(b))
        });
        println!(
            "  delivered rate {:.0}/s vs baseline {:.0}/s (ratio {:.2}x); p99 {:.2} ms vs baseline {:.2} ms (target <= {TARGET_P99_MS} ms and <= baseline's: {}); all delivered: {} (baseline: {})",
            ours.delivered_rate,
            base_rate,
            ours.delivered_rate / base_rate,
            ours.p99_ms,
            base_p99,
            verdict(ours.p99_ms <= TARGET_P99_MS && (base.is_none() || ours.p99_ms <= base_p99)),
            all(&ours),
            base_all
        );
    });
}
