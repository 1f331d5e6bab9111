//! kill -9 under a stream of events, then a restart on the same SQLite file: every event the
//! daemon acknowledged (202) reaches the runner, and none is dispatched under two invocations.
//! An event caught between dispatch and its inbox row's removal is sent again after the
//! restart with the same invocation id and `redelivered: true`, so the runner can tell.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};
use common::eventually_explained;
use common::runner_server::{completed, RunnerServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SENDERS: usize = 8;
const KILL_AFTER: usize = 400;

#[actix_rt::test]
async fn nothing_acknowledged_is_lost_and_nothing_is_dispatched_twice() {
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let dir = temp_dir("crash");
    let d = DaemonProcess::start(&dir, &[]);
    let c = d.client();
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base), "max_attempts": 5},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"}]});
    d.put_flow("Bot", "Main", &flow).await;

    // A stream of events from several senders; record every acknowledgement.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut senders = Vec::new();
    for k in 0..SENDERS {
        let (c, url, acked) = (c.clone(), d.url("/v1/events"), acked.clone());
        senders.push(actix_rt::spawn(async move {
            for n in 0.. {
                let e = json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat", "event_idn": "user_message",
                    "actor": {"external_id": format!("sender-{k}")}, "arguments": {"text": format!("{k}-{n}")}});
                match c.post(&url).json(&e).send().await {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {
                        let v: Value = r.json().await.unwrap();
                        acked.lock().unwrap().insert(v["id"].as_str().unwrap().to_owned());
                    }
                    _ => break, // the daemon is gone
                }
            }
        }));
    }
    let mut seen: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    let record = |r: common::runner_server::Received,
                  seen: &mut BTreeMap<String, Vec<(String, bool)>>| {
        seen.entry(r.json["event"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                r.json["invocation_id"].as_str().unwrap().to_owned(),
                r.json["redelivered"] == true,
            ));
    };
    while acked.lock().unwrap().len() < KILL_AFTER {
        let r = runner.next().await;
        record(r, &mut seen);
    }
    d.kill9();
    for s in senders {
        s.await.unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    // Restart on the same file: the inbox replays what was acknowledged and not handed on.
    let d = DaemonProcess::start(&dir, &[]);
    let lost = std::cell::Cell::new(acked.len());
    eventually_explained(
        "every acknowledged event at the runner",
        Duration::from_secs(60),
        || {
            while let Ok(r) = runner.rx.try_recv() {
                record(r, &mut seen);
            }
            lost.set(acked.iter().filter(|id| !seen.contains_key(*id)).count());
            std::future::ready((lost.get() == 0).then_some(()))
        },
        || async { format!("acknowledged events lost: {}", lost.get()) },
    )
    .await;
    let mut redelivered = 0;
    for (event, posts) in &seen {
        let ids: BTreeSet<_> = posts.iter().map(|(i, _)| i).collect();
        assert_eq!(
            ids.len(),
            1,
            "event {event} was dispatched under two invocations: {posts:?}"
        );
        for (_, again) in posts.iter().skip(1) {
            assert!(
                again,
                "event {event} was sent twice without the redelivery mark: {posts:?}"
            );
            redelivered += 1;
        }
    }
    eprintln!(
        "acknowledged {}, dispatched {}, redelivered after the crash {}",
        acked.len(),
        seen.len(),
        redelivered
    );
    let _ = d.terminate().await;
}
