//! Bounded input against the real binary: a deeply nested flow document is refused at once,
//! without stalling the daemon; oversized values are refused naming the field; bodies too large
//! or of an unsupported type are counted and kept as dead letters cut to
//! `dead_letters.max_raw_bytes`.

mod common;

use common::daemon::{temp_dir, DaemonProcess};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_flow_document_is_refused_at_once() {
    let dir = temp_dir("bounds-yaml");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    let n = 64 * 1024;
    let body = format!("{{\"pad\": {}{}}}", "[".repeat(n), "]".repeat(n));
    let r = c
        .put(d.url("/v1/flows/A/F"))
        .header("Content-Type", "application/yaml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["field"], "document", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nested"),
        "{v}"
    );
    // How fast is a benchmark's business (speed targets live in benches/, never in timed
    // tests): here, that it is refused, and the daemon still answers.
    let (s, _) = (c.get(d.url("/healthz")).send().await.unwrap().status(), ());
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_values_are_refused_naming_the_field() {
    let dir = temp_dir("bounds-fields");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let event = |actor: Value| {
        json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
               "event_idn": "user_message", "actor": actor, "arguments": {"text": "hi"}})
    };
    let cases = [
        (
            "POST",
            "/v1/events",
            event(json!({"external_id": "x".repeat(500_000)})),
            "actor.external_id",
        ),
        (
            "POST",
            "/v1/events",
            event(json!({"external_id": "u", "name": "n".repeat(900_000)})),
            "actor.name",
        ),
        (
            "POST",
            "/v1/integrations/sandbox/connectors",
            json!({"title": "t".repeat(1_000_000), "connector_idn": "big"}),
            "title",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = c
            .request(method.parse().unwrap(), d.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            s == StatusCode::BAD_REQUEST && v["error"]["field"] == field
                || s == StatusCode::PAYLOAD_TOO_LARGE,
            "{path} {field}: {s} {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_are_counted_and_kept_cut_short() {
    let dir = temp_dir("bounds-bodies");
    let d = DaemonProcess::start(
        &dir,
        &[
            ("SWITCHBOARD_HTTP__MAX_BODY_BYTES", "65536"),
            ("SWITCHBOARD_DEAD_LETTERS__MAX_RAW_BYTES", "100"),
        ],
    );
    let c = d.client();
    let big = vec![b'x'; 200_000];
    let r = c
        .post(d.url("/v1/events"))
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = c
        .post(d.url("/v1/events"))
        .header("Content-Type", "text/plain")
        .body("hello there")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = c
        .post(d.url("/v1/events"))
        .header("Content-Type", "application/json")
        .body(format!("{{not json {}", "z".repeat(5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let letters: Value = c
        .get(d.url("/v1/dead-letters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    for l in letters {
        let kept = l["raw_bytes"].as_u64().expect("raw bytes kept");
        assert!(kept <= 100, "kept cut short: {l}");
    }
    assert!(
        letters
            .iter()
            .any(|l| l["detail"].as_str().unwrap().contains("the first 100 kept")),
        "{letters:?}"
    );
    let metrics = d.metrics().await;
    for reason in ["too_large", "unsupported_media_type", "malformed"] {
        let line = format!("switchboard_events_rejected_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.lines().any(|l| l == line), "{line}");
    }
}
