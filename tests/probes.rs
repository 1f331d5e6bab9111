//! Honest probes against the real binary: `/readyz` names the check that fails (the NATS
//! transport's connection here), and `/metrics` carries the build info, the HTTP request
//! metrics by route template and status class, the process metrics and the transport's
//! connection gauge. While SIGTERM drains, the listener still answers: `/readyz` 503 naming
//! `draining` until the running invocation is answered.

mod common;

use std::time::Duration;

use common::daemon::{signal, temp_dir, DaemonProcess};
use common::eventually;
use common::nats::NatsServer;
use common::runner_server::RunnerServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn readyz(d: &DaemonProcess) -> (StatusCode, Value) {
    let r = d
        .client()
        .get(d.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The value of the sample `line_start` (name and labels, exactly as exposed), if present.
fn sample(metrics: &str, line_start: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(line_start)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[actix_rt::test]
async fn metrics_show_build_info_http_requests_and_the_process() {
    let dir = temp_dir("probes-metrics");
    let d = DaemonProcess::builder(&dir).start();
    let (s, body) = readyz(&d).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["store"], "ok", "{body}");
    assert!(body["checks"].get("transport").is_none(), "{body}");

    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let flow = json!({
        "runner": {"kind": "webhook", "url": "http://127.0.0.1:9/skills", "timeout_ms": 2000, "max_attempts": 1},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]
    });
    d.put_flow("Bot", "Main", &flow).await;
    let http = d.client();
    let s = http
        .get(d.url("/v1/flows/Nobody/Nothing"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::NOT_FOUND);
    let s = http
        .get(d.url("/no/such/page"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::NOT_FOUND);

    let m = d.metrics().await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &m,
            &format!(r#"switchboard_build_info{{version="{version}"}}"#)
        ),
        Some(1.0),
        "{m}"
    );
    let requests = |route: &str, class: &str| {
        sample(
            &m,
            &format!(
                r#"switchboard_http_requests_total{{route="{route}",status_class="{class}"}}"#
            ),
        )
    };
    assert_eq!(
        requests("/v1/flows/{agent}/{flow}", "2xx"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        requests("/v1/flows/{agent}/{flow}", "4xx"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(requests("/readyz", "2xx"), Some(1.0), "{m}");
    assert_eq!(requests("unmatched", "4xx"), Some(1.0), "{m}");
    assert!(
        m.contains("# TYPE switchboard_http_request_duration_seconds histogram"),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"switchboard_http_request_duration_seconds_count{route="/v1/flows/{agent}/{flow}"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"switchboard_http_request_duration_seconds_bucket{route="/readyz",le="+Inf"}"#
        ) == Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, "process_cpu_seconds_total").unwrap() > 0.0,
        "{m}"
    );
    assert!(
        sample(&m, "process_resident_memory_bytes").unwrap() > 1e6,
        "{m}"
    );
    assert!(sample(&m, "process_open_fds").unwrap() >= 3.0, "{m}");
    assert!(
        sample(&m, "process_start_time_seconds").unwrap() > 1e9,
        "{m}"
    );
    // Only with the NATS transport.
    assert!(!m.contains("switchboard_transport_connected"), "{m}");
}

#[actix_rt::test]
async fn readyz_and_the_transport_gauge_follow_the_nats_connection() {
    let dir = temp_dir("probes-nats");
    let mut nats = NatsServer::start(&dir);
    let d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    const CONNECTED: &str = r#"switchboard_transport_connected{transport="nats"}"#;

    let (s, body) = readyz(&d).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["transport"], "ok", "{body}");
    assert_eq!(sample(&d.metrics().await, CONNECTED), Some(1.0));

    nats.kill();
    let body = eventually("/readyz to fail on the transport", WAIT, || async {
        let (s, body) = readyz(&d).await;
        (s == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["failing"], json!(["transport"]), "{body}");
    assert_eq!(body["checks"]["transport"], "nats disconnected", "{body}");
    assert_eq!(sample(&d.metrics().await, CONNECTED), Some(0.0));

    nats.resume();
    eventually("/readyz to pass again", WAIT, || async {
        (readyz(&d).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(sample(&d.metrics().await, CONNECTED), Some(1.0));
}

#[actix_rt::test]
async fn readyz_names_draining_while_sigterm_waits_for_a_running_invocation() {
    // The skill answers later (202): its invocation stays pending until the result is posted.
    let mut runner = RunnerServer::start(|_| (202, String::new()));
    let dir = temp_dir("probes-drain");
    let mut d = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_HTTP__SHUTDOWN_TIMEOUT_MS", "20000")
        .start();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let flow = json!({
        "runner": {"kind": "webhook", "url": format!("{}/skills", runner.base), "timeout_ms": 30000, "max_attempts": 1},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]
    });
    d.put_flow("Bot", "Main", &flow).await;
    let http = d.client();
    let s = http
        .post(d.url("/v1/events"))
        .json(&json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
                      "actor": {"external_id": "alice"}, "arguments": [{"name": "text", "value": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = runner.next().await.json["invocation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    signal(&d.child, "TERM");
    let body = eventually("/readyz to fail on draining", WAIT, || async {
        let (s, body) = readyz(&d).await;
        (s == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    assert_eq!(body["failing"], json!(["draining"]), "{body}");
    assert!(d.child.try_wait().unwrap().is_none(), "still draining");

    // The runner's answer still comes in; then the daemon closes and exits 0.
    let s = http
        .post(d.url(&format!("/v1/invocations/{id}/result")))
        .json(&json!({"v": 1, "outcome": "completed"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::ACCEPTED);
    let child = &mut d.child;
    let status = eventually("the daemon to exit after the drain", WAIT, || {
        std::future::ready(child.try_wait().unwrap())
    })
    .await;
    assert!(status.success(), "{status:?}");
}
