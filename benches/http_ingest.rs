//! HTTP ingest: `POST /v1/events` on loopback, 64 connections (`BENCH_CONNECTIONS`), with wrk
//! (Debian's `wrk`).
//!
//! - Measured, twice: the real daemon binary (release build). Each event is made durable
//!   (SQLite inbox, WAL, `synchronous=FULL`, group commit) before its 202. "ingest": the events
//!   go to a running sandbox connector no flow subscribes to (admitted, durable, counted,
//!   unmatched). "ingest + routing": the demo flow answers every event, so each also runs an
//!   invocation, a `send_message` command and its `result_success` event.
//! - Baseline, same run, same machine, same wrk settings: a bare actix-web handler that decodes
//!   the same JSON envelope into an event and answers 202.
//! - Target: at least 0.7x the baseline's requests/s, with p99 under 10 ms (issue 21).
//!
//! `BENCH_SECONDS` (default 30) sets each run's length. Needs `wrk` (`.ci/install-test-deps`
//! installs it).

#[path = "../tests/common/daemon.rs"]
mod daemon;

use std::process::Command;

use actix_web::{web, App, HttpResponse, HttpServer};
use switchboard::wire::envelope::{EventEnvelope, Limits};

const SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("SB_TOKEN")
if token then wrk.headers["Authorization"] = "Bearer " .. token end
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"v":1,"integration_idn":"sandbox","connector_idn":"demo","event_idn":"user_message","actor":{"external_id":"u%d"},"arguments":{"text":"hello %d"}}', n % 1000, n)
  return wrk.format(nil, "/v1/events", nil, body)
end
"#;

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
}

fn ms(s: &str) -> f64 {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().unwrap() / 1000.0
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().unwrap()
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().unwrap() * 1000.0
    } else {
        f64::NAN
    }
}

/// wrk's connections: `BENCH_CONNECTIONS`, default 64. A durable 202 waits for its group
/// commit (an fsync of the WAL, about 1-2 ms on this machine's disk), so with 64 connections
/// the daemon cannot answer more than 64 requests per commit: more connections show what the
/// daemon does when the disk is not the bound.
fn connections() -> usize {
    std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// wrk against `base`; every request carries `token` (when given) as a bearer token.
fn wrk(base: &str, seconds: u64, script: &std::path::Path, token: Option<&str>) -> Run {
    let mut cmd = Command::new("wrk");
    if let Some(t) = token {
        cmd.env("SB_TOKEN", t);
    }
    let out = cmd
        .args([
            "-t2",
            &format!("-c{}", connections()),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(base)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    let find = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim_start()[prefix.len()..].trim().to_owned())
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Run {
        rps: find("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: find("50%").map(|v| ms(&v)).unwrap_or(f64::NAN),
        p99_ms: find("99%").map(|v| ms(&v)).unwrap_or(f64::NAN),
        requests,
        errors: find("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

async fn baseline_handler(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<EventEnvelope>(&body).map(|e| e.into_domain(Limits::default())) {
        Ok(Ok(e)) => {
            HttpResponse::Accepted().json(serde_json::json!({"id": e.id, "status": "accepted"}))
        }
        _ => HttpResponse::BadRequest().finish(),
    }
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = daemon::temp_dir("bench-http");
    let script = dir.join("post.lua");
    std::fs::write(&script, SCRIPT).unwrap();

    // Baseline: a bare actix-web handler in this process, on its own runtime threads.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new().route("/v1/events", web::post().to(baseline_handler))
            })
            .workers(2)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        })
    });
    let baseline_addr = rx.recv().unwrap();
    let base = wrk(&format!("http://{baseline_addr}"), seconds, &script, None);

    // Ingest only: a sandbox connector named `demo`, no flow.
    let plain_dir = daemon::temp_dir("bench-http-plain");
    let plain = daemon::DaemonProcess::start(
        &plain_dir,
        &[("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info")],
    );
    demo_connector(&plain);
    let ingest = wrk(&plain.base, seconds, &script, Some(&plain.token));
    drop(plain);

    // The same, on an earlier build without authentication (SB_PREVIOUS_BIN), when given: what
    // checking a token on every request costs, in the same run.
    let previous = std::env::var_os("SB_PREVIOUS_BIN").map(|bin| {
        let dir = daemon::temp_dir("bench-http-previous");
        let old = daemon::DaemonProcess::builder(&dir)
            .binary(bin)
            .env("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info")
            .start();
        demo_connector(&old);
        wrk(&old.base, seconds, &script, None)
    });

    let d = daemon::DaemonProcess::start(
        &dir,
        &[
            ("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true"),
            ("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info"),
        ],
    );
    let ours = wrk(&d.base, seconds, &script, Some(&d.token));
    let metrics = reqwest::blocking_get(&d.url("/metrics"));
    let received = metrics
        .lines()
        .filter(|l| {
            l.starts_with(
                "switchboard_events_received_total{integration=\"sandbox\",event=\"user_message\"",
            )
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();

    println!("http_ingest: baseline (bare actix-web, parse + 202): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests", base.rps, base.p50_ms, base.p99_ms, base.requests);
    println!("http_ingest: switchboard ingest (durable 202, admitted, unmatched): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} non-2xx; ratio {:.2}x (target >= 0.7x)", ingest.rps, ingest.p50_ms, ingest.p99_ms, ingest.requests, ingest.errors, ingest.rps / base.rps);
    if let Some(p) = &previous {
        println!("http_ingest: previous build, no authentication (SB_PREVIOUS_BIN): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} non-2xx; with authentication {:.2}x of it (target >= 0.90x)", p.rps, p.p50_ms, p.p99_ms, p.errors, ingest.rps / p.rps);
    }
    println!("http_ingest: switchboard ingest + routing (durable 202, routed, invoked): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} non-2xx", ours.rps, ours.p50_ms, ours.p99_ms, ours.requests, ours.errors);
    println!("http_ingest: ratio {:.2}x of baseline (target >= 0.7x); p99 {:.2} ms (target < 10 ms); events admitted by the daemon: {received:.0}", ours.rps / base.rps, ours.p99_ms);
}

/// Creates and runs the sandbox connector `demo` the wrk script posts to.
fn demo_connector(d: &daemon::DaemonProcess) {
    let created = reqwest::blocking_post(
        &d.url("/v1/integrations/sandbox/connectors"),
        r#"{"title":"Demo","connector_idn":"demo"}"#,
        &d.token,
    );
    let id = created
        .split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a connector id")
        .to_owned();
    reqwest::blocking_post(
        &d.url(&format!("/v1/integrations/connectors/{id}/run")),
        "",
        &d.token,
    );
}

/// The smallest blocking GET, without another HTTP client crate: one request over a socket.
mod reqwest {
    use std::io::{Read, Write};

    pub fn blocking_post(url: &str, body: &str, token: &str) -> String {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    pub fn blocking_get(url: &str) -> String {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}
