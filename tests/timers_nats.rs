//! `program_timer` with the NATS transport: a due timer's event is appended to the events
//! stream (signed as the daemon's, its id as `Nats-Msg-Id`) and routed from there to its
//! persona; on a partitioned stream it goes on the keyed subject of the persona's actor (a
//! persona without an actor: the empty key's), so with two daemons the persona's partition
//! owner routes it, not the daemon holding the timer. Only a daemon may address a persona: an
//! envelope naming one (`persona_id`) without the daemon's valid MAC is dead-lettered from the
//! stream, and refused with 400 over HTTP. A session-scoped timer's `timer_cancelled` goes
//! through the stream as a firing does.

mod common;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::daemon::{temp_dir, DaemonProcess};
use common::eventually;
use common::nats::{user_message, NatsServer};
use common::runner_server::{argument, completed, Received, RunnerServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::transport::client::Client;
use switchboard::transport::subjects::partition_key;
use switchboard::wire::envelope::{Encoding, EventEnvelope, Origin};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// A persona the store never saw, named by a timer's `personaId`.
const STRANGER: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

/// A runner whose `Talk` sets timer `t0` for the invoking persona due in 2 s (and, with
/// `stranger`, `t1` for [`STRANGER`]); it completes everything else.
fn runner(stranger: bool) -> RunnerServer {
    runner_due(stranger, 1, None)
}

/// As [`runner`], setting `n` timers `t0`… for the invoking persona, due at `due` (default: in
/// 2 s from the `Talk`).
fn runner_due(stranger: bool, n: usize, due: Option<chrono::DateTime<Utc>>) -> RunnerServer {
    RunnerServer::start(move |r: &Received| {
        let asked = argument(&r.json["event"], "text").as_deref() == Some("remind me");
        if r.json["skill_idn"] != "Talk" || !asked {
            return (200, completed(json!([])));
        }
        let due = due
            .unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(2))
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let timer = |name: &str| {
            json!({"v": 1, "integration_idn": "program_timer", "connector_idn": "timers",
                   "command_idn": "set_timer",
                   "arguments": {"timerName": name, "fireAt": due, "note": "from the runner"}})
        };
        let mut commands: Vec<Value> = (0..n).map(|k| timer(&format!("t{k}"))).collect();
        if stranger {
            let mut t1 = timer(&format!("t{n}"));
            t1["arguments"]["personaId"] = json!(STRANGER);
            commands.push(t1);
        }
        (200, completed(Value::Array(commands)))
    })
}

/// The connectors `sandbox/chat` and `program_timer/timers`, running.
async fn connectors(d: &DaemonProcess) {
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "program_timer",
        json!({"title": "Timers", "connector_idn": "timers"}),
    )
    .await;
}

/// The connectors `sandbox/chat` and `program_timer/timers`, and the flow `Bot/Main` on
/// `runner`: `Talk` on a chat message, `OnTimer` on a firing.
async fn setup(d: &DaemonProcess, runner: &str) {
    connectors(d).await;
    let flow = json!({
        "runner": {"kind": "webhook", "url": format!("{runner}/skills"), "max_attempts": 5},
        "events": [
            {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
            {"idn": "timer", "skill_idn": "OnTimer", "integration_idn": "program_timer"}
        ]
    });
    d.put_flow("Bot", "Main", &flow).await;
}

/// `who` asks for a reminder on `sandbox/chat`, over HTTP.
async fn talk(d: &DaemonProcess, who: &str) {
    say(d, who, "remind me").await
}

/// `who` says `text` on `sandbox/chat`, over HTTP.
async fn say(d: &DaemonProcess, who: &str, text: &str) {
    let r = d
        .client()
        .post(d.url("/v1/events"))
        .json(
            &json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                      "event_idn": "user_message", "actor": {"external_id": who},
                      "arguments": {"text": text}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
}

/// Waits until `GET /v1/timers` lists `n` timers of `program_timer/timers`.
async fn wait_listed(d: &DaemonProcess, n: usize) {
    eventually(&format!("{n} timer(s) listed"), WAIT, || async {
        let listed: Vec<Value> = d
            .client()
            .get(d.url("/v1/timers?connector=timers"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (listed.len() == n).then_some(())
    })
    .await;
}

/// The next runner POST of `skill`, the others skipped.
async fn next_of(runner: &mut RunnerServer, skill: &str) -> Received {
    loop {
        let r = runner.next().await;
        if r.json["skill_idn"] == skill {
            return r;
        }
    }
}

/// What core subscriptions to the events subjects of `program_timer/timers` (keyed or not)
/// saw: each message published there, headers and all, whether or not the stream keeps it.
type Seen = tokio::sync::mpsc::UnboundedReceiver<async_nats::Message>;

async fn watch_timer_subjects(nats_url: &str) -> Seen {
    let c = async_nats::connect(nats_url).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for subject in [
        "sb.events.default.program_timer.timers",
        "sb.events.default.program_timer.timers.*",
    ] {
        let mut sub = c.subscribe(subject).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
    }
    c.flush().await.unwrap();
    rx
}

/// The next timer message seen, as `(subject, headers, envelope)`.
async fn next_seen(seen: &mut Seen) -> (String, async_nats::HeaderMap, EventEnvelope) {
    let m = common::wait::within("a message on a timer subject", WAIT, seen.recv())
        .await
        .expect("subscribed");
    let h = m.headers.unwrap_or_default();
    let encoding = h
        .get("Content-Type")
        .and_then(|ct| Encoding::from_content_type(ct.as_str()))
        .unwrap();
    let body = encoding.decode::<EventEnvelope>(&m.payload).unwrap();
    (m.subject.to_string(), h, body)
}

/// The persona an invocation is for.
fn persona_of(r: &Received) -> Uuid {
    let p = &r.json["flow_instance"]["persona_id"];
    p.as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no persona in {}", r.json))
}

/// The events stream's last sequence.
async fn events_last_seq(nats_url: &str) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let mut stream = js.get_stream("SB_EVENTS").await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[actix_rt::test]
async fn a_timer_fires_through_the_events_stream_to_its_persona() {
    let dir = temp_dir("timers-nats");
    let nats = NatsServer::start(&dir);
    let mut runner = runner(false);
    let d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    setup(&d, &runner.base).await;
    let mut seen = watch_timer_subjects(&nats.url()).await;
    talk(&d, "alice").await;
    let talked = next_of(&mut runner, "Talk").await;
    let persona = persona_of(&talked);
    // The timer is set (its command answered) before it can fire: the stream holds the chat
    // message, not yet the firing.
    wait_listed(&d, 1).await;
    let before = events_last_seq(&nats.url()).await;

    let fired = next_of(&mut runner, "OnTimer").await;
    let (subject, headers, body) = next_seen(&mut seen).await;
    assert_eq!(subject, "sb.events.default.program_timer.timers");
    assert_eq!(
        events_last_seq(&nats.url()).await,
        before + 1,
        "the firing was stored in the events stream"
    );
    // Signed as the daemon's, persona-addressed, named by the firing's id.
    assert_eq!(body.persona_id, Some(persona), "{body:?}");
    assert_eq!(body.event_idn, "timer");
    assert!(body.actor.is_none(), "{body:?}");
    assert!(
        headers
            .get("Switchboard-Daemon-Mac")
            .is_some_and(|m| m.as_str().len() == 64),
        "{headers:?}"
    );
    let msg_id = headers.get("Nats-Msg-Id").unwrap().to_string();
    assert_eq!(
        fired.json["event"]["id"].as_str(),
        Some(msg_id.as_str()),
        "the consumer kept the firing's id"
    );
    assert_eq!(persona_of(&fired), persona);
    assert_eq!(
        argument(&fired.json["event"], "timerName").as_deref(),
        Some("t0")
    );
    assert_eq!(
        argument(&fired.json["event"], "note").as_deref(),
        Some("from the runner")
    );
    assert_ne!(fired.json["redelivered"], true, "{}", fired.json);
    // The book moved on once the stream stored the firing: the one-shot timer is gone.
    wait_listed(&d, 0).await;
}

#[actix_rt::test]
async fn only_the_daemon_addresses_a_persona() {
    let dir = temp_dir("timers-nats-forged");
    let nats = NatsServer::start(&dir);
    let mut runner = runner(false);
    let d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    setup(&d, &runner.base).await;
    let adapter = Client::connect(&nats.url(), "sb", Encoding::Json)
        .await
        .unwrap();
    let dlq = adapter
        .dead_letters("SB_DLQ", "dlq_reader", "default")
        .await
        .unwrap();
    // A firing forged by an adapter: persona-addressed, unsigned or signed with a made-up MAC.
    let forged = json!({"v": 1, "integration_idn": "program_timer", "connector_idn": "timers",
        "event_idn": "timer", "persona_id": STRANGER,
        "arguments": {"timerName": "t0", "personaId": STRANGER}});
    let payload = serde_json::to_vec(&forged).unwrap();
    let subject = adapter
        .subjects
        .events("default", "program_timer", "timers");
    let cases = [
        (None, "persona_id: set by the daemon alone"),
        (
            Some("ab".repeat(32)),
            "Switchboard-Daemon-Mac: does not verify",
        ),
    ];
    for (mac, detail) in cases {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Content-Type", "application/json");
        if let Some(mac) = &mac {
            h.insert("Switchboard-Daemon-Mac", mac.as_str());
        }
        adapter
            .js
            .publish_with_headers(subject.clone(), h, payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        let m = Client::next_raw(&dlq, WAIT)
            .await
            .unwrap()
            .expect("a dead letter");
        let h = m.headers.as_ref().unwrap();
        assert_eq!(h.get("Switchboard-Reason").unwrap().as_str(), "malformed");
        let got = h.get("Switchboard-Detail").unwrap().as_str().to_owned();
        assert!(got.contains(detail), "{detail:?} in {got:?}");
        assert_eq!(&m.payload[..], &payload[..], "the original bytes are kept");
        m.ack().await.unwrap();
    }
    // Over HTTP: a 400 naming the field, nothing appended.
    let before = events_last_seq(&nats.url()).await;
    let mut event = serde_json::to_value(user_message("mallory", "hi")).unwrap();
    event["integration_idn"] = json!("sandbox");
    event["connector_idn"] = json!("chat");
    event["persona_id"] = json!(STRANGER);
    let r = d
        .client()
        .post(d.url("/v1/events"))
        .json(&event)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "persona_id", "{body}");
    assert_eq!(events_last_seq(&nats.url()).await, before);
    // Nothing of the above reached the runner: its first POST is the next good event's.
    talk(&d, "alice").await;
    let first = runner.next().await;
    assert_eq!(first.json["skill_idn"], "Talk", "{}", first.json);
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("switchboard_events_rejected_total{reason=\"malformed\"} 3"),
        "{metrics}"
    );
}

#[actix_rt::test]
async fn on_a_partitioned_stream_a_firing_goes_to_its_persona_s_partition() {
    let dir = temp_dir("timers-nats-partitions");
    let nats = NatsServer::start_recent(&dir);
    let mut runner = runner(true);
    let d = DaemonProcess::builder(&dir)
        .envs(nats.daemon_env())
        .env("SWITCHBOARD_TRANSPORT__NATS__PARTITIONS", "24")
        .start();
    setup(&d, &runner.base).await;
    let mut seen = watch_timer_subjects(&nats.url()).await;
    talk(&d, "alice").await;
    let talked = next_of(&mut runner, "Talk").await;
    let alice = persona_of(&talked);
    let mut fired = [
        next_of(&mut runner, "OnTimer").await,
        next_of(&mut runner, "OnTimer").await,
    ];
    fired.sort_by_key(|r| argument(&r.json["event"], "timerName"));
    let published = [next_seen(&mut seen).await, next_seen(&mut seen).await];
    let by_timer = |name: &str| {
        published
            .iter()
            .find(|(_, _, b)| {
                let e = b
                    .clone()
                    .into_domain_from(Default::default(), Origin::Daemon);
                e.is_ok_and(|e| e.arguments.get("timerName") == Some(name))
            })
            .unwrap_or_else(|| panic!("{name} in {published:?}"))
            .clone()
    };
    // Alice's timer: on her actor's key, where her own chat messages go.
    let (subject, _, body) = by_timer("t0");
    assert_eq!(
        subject,
        format!(
            "sb.events.default.program_timer.timers.{}",
            partition_key("alice")
        )
    );
    assert_eq!(body.persona_id, Some(alice));
    assert_eq!(persona_of(&fired[0]), alice);
    // A persona the store has no actor for: the empty key's partition.
    let (subject, _, body) = by_timer("t1");
    assert_eq!(
        subject,
        format!(
            "sb.events.default.program_timer.timers.{}",
            partition_key("")
        )
    );
    let stranger: Uuid = STRANGER.parse().unwrap();
    assert_eq!(body.persona_id, Some(stranger));
    assert_eq!(persona_of(&fired[1]), stranger);
}

#[actix_rt::test]
async fn timers_due_while_the_daemon_was_killed_go_through_the_stream_once_marked() {
    const N: usize = 5;
    let due = Utc::now() + chrono::Duration::seconds(4);
    let mut runner = runner_due(false, N, Some(due));
    let dir = temp_dir("timers-nats-crash");
    let nats = NatsServer::start(&dir);
    let builder = DaemonProcess::builder(&dir).envs(nats.daemon_env());
    let d = builder.start();
    setup(&d, &runner.base).await;
    talk(&d, "alice").await;
    let persona = persona_of(&next_of(&mut runner, "Talk").await);
    wait_listed(&d, N).await;
    d.kill9();
    // The due time passes while the daemon is down: this wait is the point of the test.
    let until_due = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(until_due).await;
    let mut seen = watch_timer_subjects(&nats.url()).await;
    let _d = builder.start();
    let mut fired = std::collections::BTreeMap::new();
    while fired.len() < N {
        let r = next_of(&mut runner, "OnTimer").await;
        let name = argument(&r.json["event"], "timerName").unwrap();
        assert_eq!(persona_of(&r), persona);
        assert_eq!(
            r.json["redelivered"], true,
            "{name}: due before this run started, so it may repeat an earlier run's"
        );
        let id = r.json["event"]["id"].as_str().unwrap().to_owned();
        if let Some(first) = fired.insert(name.clone(), id.clone()) {
            assert_eq!(first, id, "{name}: a repeat keeps the firing's id");
        }
    }
    // Each on the stream with its id, signed, and marked for the consumer.
    for _ in 0..N {
        let (_, headers, body) = next_seen(&mut seen).await;
        assert_eq!(body.persona_id, Some(persona));
        let id = headers.get("Nats-Msg-Id").unwrap().to_string();
        assert!(fired.values().any(|f| *f == id), "{id} in {fired:?}");
        assert_eq!(
            headers.get("Switchboard-Redelivered").map(|v| v.as_str()),
            Some("true")
        );
    }
}

/// How many partitions `d` owns, from its metrics.
async fn owned(d: &DaemonProcess) -> Option<u32> {
    d.metric("switchboard_partitions_owned")
        .await
        .map(|v| v as u32)
}

#[actix_rt::test]
async fn with_two_daemons_the_persona_s_partition_owner_routes_a_timer_another_daemon_holds() {
    const PERSONAS: usize = 16;
    let base = temp_dir("timers-nats-two");
    let nats = NatsServer::start_recent(&base);
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    // Daemons sharing a stream share the sealing key: the same persona ids, the same MAC key.
    let key = switchboard::store::SecretBox::generate();
    let start = |i: usize| {
        let dir = base.join(format!("d{i}"));
        std::fs::create_dir_all(dir.join("flows")).unwrap();
        DaemonProcess::builder(&dir)
            .envs(nats.daemon_env())
            .env("SWITCHBOARD_TRANSPORT__NATS__PARTITIONS", "24")
            .env("SWITCHBOARD_TRANSPORT__NATS__MEMBER_TTL_MS", "2000")
            .env("SWITCHBOARD_SECRET_KEY", key.as_str())
            // Each daemon is configured over its own API, its runner path naming it: each
            // keeps its own control plane bucket (`tests/control_plane.rs` shares one).
            .env(
                "SWITCHBOARD_TRANSPORT__NATS__CONTROL_BUCKET",
                format!("SB_CONTROL_{i}"),
            )
            .start()
    };
    // The runner's path names the daemon that called: `/d<i>/skills`.
    let daemon_of = |r: &Received| {
        let path = r.path.trim_start_matches('/');
        path.split('/').next().unwrap_or_default().to_owned()
    };
    // Daemon 0 alone meets every persona (its store records their actors).
    let d0 = start(0);
    setup(&d0, &format!("{}/d0", runner.base)).await;
    let who = |p: usize| format!("persona-{p}");
    let mut personas = std::collections::BTreeMap::new();
    for p in 0..PERSONAS {
        say(&d0, &who(p), "hello").await;
    }
    while personas.len() < PERSONAS {
        let r = next_of(&mut runner, "Talk").await;
        assert_eq!(daemon_of(&r), "d0");
        let text = argument(&r.json["event"], "text");
        assert_eq!(text.as_deref(), Some("hello"));
        personas.insert(persona_of(&r), ());
    }
    // Daemon 1 joins: the partitions split, 12 each.
    let d1 = start(1);
    setup(&d1, &format!("{}/d1", runner.base)).await;
    eventually("the daemons to own 12 partitions each", WAIT, || async {
        (owned(&d0).await? == 12 && owned(&d1).await? == 12).then_some(())
    })
    .await;
    // Every persona's timer is set on daemon 0, over its API.
    let due =
        (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339_opts(SecondsFormat::Millis, true);
    for persona in personas.keys() {
        let r = d0
            .client()
            .post(d0.url("/v1/commands"))
            .json(
                &json!({"v": 1, "integration_idn": "program_timer", "connector_idn": "timers",
                          "command_idn": "set_timer", "persona_id": persona,
                          "arguments": {"timerName": "t0", "fireAt": due}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    }
    let mut fired = std::collections::BTreeMap::new();
    while fired.len() < PERSONAS {
        let r = next_of(&mut runner, "OnTimer").await;
        fired.insert(persona_of(&r), daemon_of(&r));
    }
    // Who owns each persona now: the daemon its next message reaches.
    for p in 0..PERSONAS {
        say(&d1, &who(p), "who owns me").await;
    }
    let mut owner = std::collections::BTreeMap::new();
    while owner.len() < PERSONAS {
        let r = next_of(&mut runner, "Talk").await;
        owner.insert(persona_of(&r), daemon_of(&r));
    }
    assert_eq!(fired, owner, "each firing routed by its persona's owner");
    let moved = owner.values().filter(|d| *d == "d1").count();
    assert!(
        moved > 0,
        "some persona's partition went to daemon 1, so its timer held by daemon 0 crossed over: {owner:?}"
    );
}

/// A session-scoped timer cancelled by its session's end: `timer_cancelled` goes through the
/// events stream too (signed, persona-addressed) and reaches the flow.
#[actix_rt::test]
async fn a_cancelled_timer_s_notice_goes_through_the_events_stream() {
    let dir = temp_dir("timers-nats-cancel");
    let nats = NatsServer::start(&dir);
    let mut runner = RunnerServer::start(|r: &Received| {
        if r.json["skill_idn"] != "Talk" {
            return (200, completed(json!([])));
        }
        let due =
            (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Millis, true);
        (
            200,
            completed(
                json!([{"v": 1, "integration_idn": "program_timer", "connector_idn": "timers",
                "command_idn": "set_timer",
                "arguments": {"timerName": "nudge", "fireAt": due, "scope": "session",
                              "sessionConnector": "sandbox/chat"}}]),
            ),
        )
    });
    let d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    connectors(&d).await;
    let flow = json!({
        "runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [
            {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "sandbox"},
            {"idn": "timer_cancelled", "skill_idn": "OnCancelled", "integration_idn": "program_timer"}
        ]
    });
    d.put_flow("Bot", "Main", &flow).await;
    let mut seen = watch_timer_subjects(&nats.url()).await;
    talk(&d, "alice").await;
    let persona = persona_of(&next_of(&mut runner, "Talk").await);
    wait_listed(&d, 1).await;
    // Alice's conversation ends: her session, and the timer bound to it.
    let r = d
        .client()
        .post(d.url("/v1/events"))
        .json(
            &json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "chat",
                      "event_idn": "conversation_ended", "actor": {"external_id": "alice"},
                      "arguments": {"reason": "reset"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let cancelled = next_of(&mut runner, "OnCancelled").await;
    let (subject, headers, body) = next_seen(&mut seen).await;
    assert_eq!(subject, "sb.events.default.program_timer.timers");
    assert_eq!(body.event_idn, "timer_cancelled");
    assert_eq!(body.persona_id, Some(persona), "{body:?}");
    assert!(
        headers.get("Switchboard-Daemon-Mac").is_some(),
        "{headers:?}"
    );
    assert_eq!(persona_of(&cancelled), persona);
    assert_eq!(
        argument(&cancelled.json["event"], "timerName").as_deref(),
        Some("nudge")
    );
}
