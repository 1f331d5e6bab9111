//! The NATS JetStream transport against a real `nats-server` (one per test, its own port and
//! storage): adapter → daemon → queue runner → command → adapter, in MessagePack and JSON;
//! malformed, oversized and unknown-version payloads and a stopped connector end in the
//! dead-letter subject and nowhere else.

mod common;

use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};
use common::nats::{completed, next_invocation, user_message, NatsServer};
use reqwest::StatusCode;
use serde_json::json;
use switchboard::transport::client::Client;
use switchboard::wire::envelope::{
    ArgumentWire, ArgumentsWire, CommandEnvelope, Encoding, EventEnvelope,
};
use switchboard::wire::invocation::ResultWire;

const WAIT: Duration = Duration::from_secs(20);

/// A NATS server and a daemon on it with `extra` settings, in a fresh directory `name-…`.
async fn start(name: &str, extra: &[(&str, &str)]) -> (NatsServer, DaemonProcess) {
    let dir = temp_dir(name);
    let nats = NatsServer::start(&dir);
    let d = DaemonProcess::builder(&dir)
        .envs(nats.daemon_env())
        .envs(extra.iter().copied())
        .start();
    (nats, d)
}

/// The running connector `telegram/bot` and the flow `Bot/Main` on the queue runner; returns
/// the connector's id.
async fn setup(d: &DaemonProcess) -> String {
    let id = d
        .run_connector(
            "telegram",
            json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
        )
        .await;
    let flow = json!({"runner": {"kind": "queue"}, "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram"},
        {"idn": "result_success", "skill_idn": "OnSent", "integration_idn": "telegram"}]});
    d.put_flow("Bot", "Main", &flow).await;
    id
}

/// The running connector `telegram/bot` and the flow `Bot/Main` on the queue runner, a newer
/// `user_message` interrupting the turn before it.
async fn interrupting_bot(d: &DaemonProcess) {
    d.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "queue"}, "events": [
        {"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram",
         "interrupt_mode": "interrupt"}]});
    d.put_flow("Bot", "Main", &flow).await;
}

/// A `send_message` of `text` on `telegram/bot`, as a runner answers.
fn send_message(text: &str) -> CommandEnvelope {
    CommandEnvelope {
        v: 1,
        id: None,
        account: "default".into(),
        integration_idn: "telegram".into(),
        connector_idn: "bot".into(),
        command_idn: "send_message".into(),
        arguments: ArgumentsWire::List(vec![ArgumentWire {
            name: "text".into(),
            value: text.into(),
        }]),
        invocation_id: None,
        command_act_id: None,
        persona_id: None,
    }
}

/// An adapter, a runner, and the runner's consumer of agent `Bot`'s invocations.
async fn clients(
    url: &str,
    encoding: Encoding,
) -> (
    Client,
    Client,
    async_nats::jetstream::consumer::PullConsumer,
) {
    let adapter = Client::connect(url, "sb", encoding).await.unwrap();
    let runner = Client::connect(url, "sb", encoding).await.unwrap();
    let invocations = runner
        .invocations("SB_INVOCATIONS", "runner", "default", "Bot")
        .await
        .unwrap();
    (adapter, runner, invocations)
}

async fn round_trip(nats_url: &str, encoding: Encoding, who: &str) {
    let (adapter, runner, invocations) = clients(nats_url, encoding).await;
    let (persona, act) = command_for(&adapter, &runner, &invocations, who).await;
    result_reaches(&adapter, &runner, &invocations, who, act, persona).await;
}

/// `who` writes; the runner answers with a `send_message`, which the adapter receives: the
/// persona and the command's act id.
async fn command_for(
    adapter: &Client,
    runner: &Client,
    invocations: &async_nats::jetstream::consumer::PullConsumer,
    who: &str,
) -> (uuid::Uuid, uuid::Uuid) {
    let commands = adapter
        .commands("SB_COMMANDS", "adapter", "default", "telegram", "bot")
        .await
        .unwrap();

    adapter
        .publish_event(&user_message(who, "hello"), None)
        .await
        .unwrap();
    let inv = next_invocation(invocations, WAIT)
        .await
        .unwrap()
        .expect("an invocation");
    assert_eq!(inv.value.skill_idn, "Talk");
    assert_eq!(inv.value.event.actor.as_ref().unwrap().external_id, who);
    let persona = inv.value.flow_instance.persona_id;
    let reply = send_message(&format!("hi {who}"));
    runner
        .publish_results(
            "default",
            vec![ResultWire {
                commands: vec![reply.into()],
                ..completed(inv.value.invocation_id)
            }],
        )
        .await
        .unwrap();
    inv.ack().await.unwrap();

    // The adapter receives the command, with the act id to report its result with.
    let cmd = Client::next_command(&commands, WAIT)
        .await
        .unwrap()
        .expect("a command");
    assert_eq!(cmd.value.command_idn, "send_message");
    assert_eq!(cmd.value.persona_id, Some(persona));
    let act = cmd.value.command_act_id.expect("command_act_id");
    cmd.ack().await.unwrap();
    (persona, act)
}

/// The adapter reports act `act` done (naming no actor): the result reaches `persona`.
async fn result_reaches(
    adapter: &Client,
    runner: &Client,
    invocations: &async_nats::jetstream::consumer::PullConsumer,
    who: &str,
    act: uuid::Uuid,
    persona: uuid::Uuid,
) {
    let mut ok = user_message(who, "");
    ok.event_idn = "result_success".into();
    ok.actor = None;
    ok.arguments = ArgumentsWire::List(vec![]);
    ok.command_act_id = Some(act);
    adapter.publish_event(&ok, None).await.unwrap();
    let sent = next_invocation(invocations, WAIT)
        .await
        .unwrap()
        .expect("the result invocation");
    assert_eq!(sent.value.skill_idn, "OnSent");
    assert_eq!(
        sent.value.flow_instance.persona_id, persona,
        "the result reaches the same persona"
    );
    complete(runner, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_for_a_command_sent_before_a_restart_reaches_its_persona() {
    let dir = temp_dir("nats-acts");
    let nats = NatsServer::start(&dir);
    let d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    setup(&d).await;
    let (adapter, runner, invocations) = clients(&nats.url(), Encoding::MessagePack).await;
    let (persona, act) = command_for(&adapter, &runner, &invocations, "alice").await;
    // The act lives only in memory until its row is written behind: wait for it on disk.
    common::eventually("the act recorded", WAIT, || async {
        let db = rusqlite::Connection::open(dir.join("switchboard.db")).ok()?;
        db.query_row(
            "SELECT count(*) FROM command_acts WHERE act = ?1",
            [act.to_string()],
            |r| r.get::<_, i64>(0),
        )
        .ok()
        .filter(|n| *n == 1)
    })
    .await;
    d.kill9();
    let _d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    result_reaches(&adapter, &runner, &invocations, "alice", act, persona).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_daemon_runner_round_trip_in_both_encodings() {
    let (nats, d) = start("nats-rt", &[]).await;
    setup(&d).await;
    round_trip(&nats.url(), Encoding::MessagePack, "alice").await;
    round_trip(&nats.url(), Encoding::Json, "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_and_a_stopped_connector_end_in_the_dead_letter_subject_only() {
    let (nats, d) = start(
        "nats-dlq",
        &[("SWITCHBOARD_TRANSPORT__NATS__MAX_MESSAGE_BYTES", "4096")],
    )
    .await;
    let http = d.client();
    let connector = setup(&d).await;
    let (adapter, _runner, invocations) = clients(&nats.url(), Encoding::Json).await;
    let dlq = adapter
        .dead_letters("SB_DLQ", "dlq_reader", "default")
        .await
        .unwrap();
    let subject = adapter.subjects.events("default", "telegram", "bot");

    let mut v2 = serde_json::to_value(user_message("x", "hi")).unwrap();
    v2["v"] = json!(2);
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "application/json",
            b"{not json".to_vec(),
            "malformed",
            "body",
        ),
        ("application/msgpack", vec![0xc1, 0x00], "malformed", "body"),
        (
            "application/json",
            serde_json::to_vec(&v2).unwrap(),
            "malformed",
            "unsupported envelope version 2",
        ),
        (
            "application/json",
            serde_json::to_vec(&user_message("x", &"y".repeat(8000))).unwrap(),
            "malformed",
            "more than the 4096 allowed",
        ),
        ("text/plain", b"hello".to_vec(), "malformed", "Content-Type"),
    ];
    for (ct, body, reason, detail) in &cases {
        adapter
            .publish_raw(subject.clone(), ct, body.clone())
            .await
            .unwrap();
        let m = Client::next_raw(&dlq, WAIT)
            .await
            .unwrap()
            .expect("a dead letter");
        let h = m.headers.as_ref().unwrap();
        assert_eq!(h.get("Switchboard-Reason").unwrap().as_str(), *reason);
        let got = h.get("Switchboard-Detail").unwrap().as_str().to_owned();
        assert!(got.contains(detail), "{detail:?} in {got:?}");
        assert_eq!(&m.payload[..], &body[..], "the original bytes are kept");
        m.ack().await.unwrap();
    }
    // The store's copies keep at most dead_letters.max_raw_bytes of each (the DLQ subject's
    // copy above is whole).
    let letters: serde_json::Value = http
        .get(d.url("/v1/dead-letters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = letters.as_array().unwrap();
    assert!(
        letters
            .iter()
            .all(|l| l["raw_bytes"].as_u64().unwrap_or(0) <= 4096),
        "{letters:?}"
    );
    assert!(
        letters.iter().any(|l| l["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the first 4096 kept")),
        "{letters:?}"
    );
    // A stopped connector: refused with its reason, the event kept whole.
    let s = http
        .post(d.url(&format!("/v1/integrations/connectors/{connector}/stop")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    adapter
        .publish_event(&user_message("carol", "anyone?"), None)
        .await
        .unwrap();
    let m = Client::next_raw(&dlq, WAIT)
        .await
        .unwrap()
        .expect("a dead letter");
    assert_eq!(
        m.headers
            .as_ref()
            .unwrap()
            .get("Switchboard-Reason")
            .unwrap()
            .as_str(),
        "connector_stopped"
    );
    let kept: EventEnvelope = Encoding::MessagePack.decode(&m.payload).unwrap();
    assert_eq!(kept.actor.unwrap().external_id, "carol");
    m.ack().await.unwrap();
    // Nothing of the above reached a runner: the next invocation is the good event's.
    let s = http
        .post(d.url(&format!("/v1/integrations/connectors/{connector}/run")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    adapter
        .publish_event(&user_message("dave", "fine"), None)
        .await
        .unwrap();
    let inv = next_invocation(&invocations, WAIT)
        .await
        .unwrap()
        .expect("an invocation");
    assert_eq!(inv.value.event.actor.as_ref().unwrap().external_id, "dave");
    inv.ack().await.unwrap();
    assert!(next_invocation(&invocations, Duration::from_millis(500))
        .await
        .unwrap()
        .is_none());
    // The refusals were counted.
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("switchboard_events_rejected_total{reason=\"malformed\"} 5"),
        "{metrics}"
    );
}

#[test]
fn the_daemon_refuses_to_start_when_nats_cannot_be_reached() {
    let dir = temp_dir("nats-down");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = DaemonProcess::builder(&dir)
        .env("SWITCHBOARD_TRANSPORT__KIND", "nats")
        .env(
            "SWITCHBOARD_TRANSPORT__NATS__URLS",
            format!("[\"nats://127.0.0.1:{port}\"]"),
        )
        .env("SWITCHBOARD_TRANSPORT__NATS__CONNECT_RETRIES", "2")
        .run_to_exit();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach NATS")
            && err.contains(&port.to_string())
            && err.contains("2 attempts"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_event_tries_a_running_daemon_by_hand() {
    let (nats, d) = start("nats-cli", &[]).await;
    setup(&d).await;
    let runner = Client::connect(&nats.url(), "sb", Encoding::Json)
        .await
        .unwrap();
    let invocations = runner
        .invocations("SB_INVOCATIONS", "runner", "default", "Bot")
        .await
        .unwrap();
    for json in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args([
            "publish-event",
            "--url",
            &nats.url(),
            "--integration",
            "telegram",
            "--connector",
            "bot",
        ])
        .args([
            "--event",
            "user_message",
            "--actor",
            "cli-user",
            "--arg",
            "text=by hand",
        ]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("published: stream sequence"));
        let inv = next_invocation(&invocations, WAIT)
            .await
            .unwrap()
            .expect("an invocation");
        assert_eq!(
            inv.value.event.actor.as_ref().unwrap().external_id,
            "cli-user"
        );
        complete(&runner, inv).await;
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "publish-event",
            "--url",
            &nats.url(),
            "--integration",
            "telegram",
            "--connector",
            "bot",
            "--event",
            "user_message",
            "--actor",
            "a",
            "--arg",
            "no-equals",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected name=value"));
}

/// The event's first argument (its text).
fn text_of(inv: &common::nats::OneInvocation) -> String {
    match &inv.value.event.arguments {
        ArgumentsWire::List(l) => l[0].value.to_string(),
        ArgumentsWire::Map(m) => m["text"].to_string(),
    }
}

/// Answers `inv` as completed, with no commands, and acknowledges it.
async fn complete(runner: &Client, inv: common::nats::OneInvocation) {
    runner
        .publish_results("default", vec![completed(inv.value.invocation_id)])
        .await
        .unwrap();
    inv.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_copy_the_stream_no_longer_remembers_is_dropped_by_its_msg_id() {
    // The stream forgets message ids quickly here, as a restarted server forgets the ids of
    // consumed messages.
    let (nats, d) = start(
        "nats-dedupe",
        &[("SWITCHBOARD_TRANSPORT__NATS__DUPLICATE_WINDOW_MS", "100")],
    )
    .await;
    setup(&d).await;
    let (adapter, runner, invocations) = clients(&nats.url(), Encoding::MessagePack).await;
    let first = user_message("dup", "first");
    let seq = adapter.publish_event(&first, Some("tg-1")).await.unwrap();
    let inv = next_invocation(&invocations, WAIT)
        .await
        .unwrap()
        .expect("the first invocation");
    assert_eq!(
        inv.value.event.external_event_id.as_deref(),
        Some("tg-1"),
        "the message id stands in for the external id"
    );
    assert_eq!(text_of(&inv), "first");
    complete(&runner, inv).await;
    // The copy, published again until the stream stores it as a message of its own.
    common::eventually("the stream to store the copy", WAIT, || {
        let (adapter, first) = (&adapter, &first);
        async move {
            let again = adapter.publish_event(first, Some("tg-1")).await.unwrap();
            (again != seq).then_some(())
        }
    })
    .await;
    adapter
        .publish_event(&user_message("dup", "second"), Some("tg-2"))
        .await
        .unwrap();
    let next = next_invocation(&invocations, WAIT)
        .await
        .unwrap()
        .expect("the next invocation");
    assert_eq!(text_of(&next), "second", "the copy is not routed");
    complete(&runner, next).await;
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("switchboard_events_deduplicated_total 1"),
        "the copy is counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("deduplicated"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_invocation_is_announced_on_the_cancel_subject() {
    let (nats, d) = start("nats-cancel", &[]).await;
    interrupting_bot(&d).await;
    let (adapter, _runner, invocations) = clients(&nats.url(), Encoding::MessagePack).await;
    // Every runner of the agent may listen: plain NATS, no stream.
    let listener = async_nats::connect(nats.url()).await.unwrap();
    let mut notices = listener.subscribe("sb.cancel.default.Bot").await.unwrap();
    listener.flush().await.unwrap();

    adapter
        .publish_event(&user_message("alice", "first"), None)
        .await
        .unwrap();
    let first = next_invocation(&invocations, WAIT).await.unwrap().unwrap();
    first.ack().await.unwrap();
    // No answer: the runner still works on it when the next message interrupts it.
    adapter
        .publish_event(&user_message("alice", "second"), None)
        .await
        .unwrap();
    let second = next_invocation(&invocations, WAIT).await.unwrap().unwrap();
    assert_eq!(text_of(&second), "second");
    let notice = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut notices))
        .await
        .expect("a cancel notice")
        .unwrap();
    assert_eq!(
        notice
            .headers
            .as_ref()
            .and_then(|h| h.get("Content-Type"))
            .map(|v| v.as_str()),
        Some("application/msgpack")
    );
    let notice: switchboard::wire::invocation::CancelNoticeWire =
        Encoding::MessagePack.decode(&notice.payload).unwrap();
    assert_eq!(
        notice,
        switchboard::wire::invocation::CancelNoticeWire::new(
            first.value.invocation_id,
            "interrupted"
        )
    );
    common::eventually("the notice counted", WAIT, || async {
        d.metrics()
            .await
            .contains("switchboard_cancel_notices_total{runner=\"queue\",result=\"sent\"} 1")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_refused_for_room_is_not_marked_redelivered_once_admitted() {
    // One running and one waiting fill a flow instance.
    let (nats, d) = start(
        "nats-room",
        &[("SWITCHBOARD_ENGINE__MAX_PENDING_PER_FLOW_INSTANCE", "1")],
    )
    .await;
    setup(&d).await;
    let (adapter, runner, invocations) = clients(&nats.url(), Encoding::MessagePack).await;
    for k in 0..3 {
        adapter
            .publish_event(&user_message("crowded", &format!("m{k}")), None)
            .await
            .unwrap();
    }
    let first = next_invocation(&invocations, WAIT)
        .await
        .unwrap()
        .expect("the first invocation");
    assert_eq!(text_of(&first), "m0");
    // m1 waits in the instance; m2 finds no room and is handed back until there is.
    common::eventually("m2 to be refused for room", WAIT, || async {
        d.metrics()
            .await
            .contains("switchboard_events_rejected_total{reason=\"flow_instance_full\"}")
            .then_some(())
    })
    .await;
    complete(&runner, first).await;
    for text in ["m1", "m2"] {
        let inv = next_invocation(&invocations, WAIT)
            .await
            .unwrap()
            .expect("the next invocation");
        assert_eq!(text_of(&inv), text);
        assert!(
            !inv.value.redelivered,
            "{text}: deliveries refused for room handed nothing on"
        );
        complete(&runner, inv).await;
    }
    let (_, letters) = common::call(&d.client(), "GET", d.url("/v1/dead-letters"), None).await;
    assert_eq!(letters, json!([]), "nothing dead-lettered");
}

/// The consumers' `ack_wait` and `max_ack_pending` follow the configuration at the next start:
/// an operator sizing them for long queues needs no manual step on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ack_wait_and_max_ack_pending_apply_to_the_existing_consumers() {
    let dir = temp_dir("nats-consumer-update");
    let nats = NatsServer::start(&dir);
    let builder = |ack_wait: &str, pending: &str| {
        DaemonProcess::builder(&dir)
            .envs(nats.daemon_env())
            .env("SWITCHBOARD_TRANSPORT__NATS__ACK_WAIT_MS", ack_wait)
            .env("SWITCHBOARD_TRANSPORT__NATS__MAX_ACK_PENDING", pending)
    };
    let consumer_config = || async {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let mut stream = js.get_stream("SB_EVENTS").await.unwrap();
        let _ = stream.info().await.unwrap();
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("switchboard_events").await.unwrap();
        let info = c.info().await.unwrap();
        (info.config.ack_wait, info.config.max_ack_pending)
    };
    let d = builder("30000", "1000").start();
    d.terminate().await;
    assert_eq!(consumer_config().await, (Duration::from_secs(30), 1000));
    let d = builder("7000", "5000").start();
    assert_eq!(consumer_config().await, (Duration::from_secs(7), 5000));
    d.terminate().await;
}

/// The events stream's last sequence.
async fn events_last_seq(nats_url: &str) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let mut stream = js.get_stream("SB_EVENTS").await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_over_http_is_stored_in_the_stream_before_its_202() {
    let (nats, d) = start("nats-http-intake", &[]).await;
    setup(&d).await;
    let (_adapter, runner, invocations) = clients(&nats.url(), Encoding::MessagePack).await;
    let before = events_last_seq(&nats.url()).await;
    let mut event = user_message("web", "over http");
    event.external_event_id = Some("web-1".into());
    let post = |e: EventEnvelope| {
        let d = &d;
        async move {
            let r = d
                .client()
                .post(d.url("/v1/events"))
                .json(&e)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = post(event.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(
        events_last_seq(&nats.url()).await,
        before + 1,
        "the 202 came once the stream stored the event"
    );
    let inv = next_invocation(&invocations, WAIT)
        .await
        .unwrap()
        .expect("the invocation");
    assert_eq!(text_of(&inv), "over http");
    assert_eq!(
        inv.value.event.id.map(|id| id.to_string()),
        body["id"].as_str().map(str::to_owned),
        "the event the consumer routed is the one the 202 named"
    );
    complete(&runner, inv).await;

    // A repeat of the external id: the stream's message id deduplicates it, same id answered.
    let (status, again) = post(event).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["id"], body["id"]);
    assert_eq!(events_last_seq(&nats.url()).await, before + 1);

    // A refusal is answered before anything reaches the stream.
    let mut unknown = user_message("web", "nowhere");
    unknown.connector_idn = "nobody".into();
    let (status, refused) = post(unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(events_last_seq(&nats.url()).await, before + 1);

    // Stored means kept: posted, the daemon killed at once, the event still reaches the runner
    // from the stream after the restart.
    let (status, kept) = post(user_message("web", "kept")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{kept}");
    let dir = d.dir.clone();
    d.kill9();
    let _d = DaemonProcess::builder(&dir).envs(nats.daemon_env()).start();
    let inv = next_invocation(&invocations, WAIT)
        .await
        .unwrap()
        .expect("the invocation of the event posted before the kill");
    assert_eq!(text_of(&inv), "kept");
    complete(&runner, inv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_while_the_stream_is_unreachable_is_refused_with_503() {
    let (mut nats, d) = start(
        "nats-http-outage",
        &[("SWITCHBOARD_TRANSPORT__NATS__PUBLISH_ACK_TIMEOUT_MS", "200")],
    )
    .await;
    setup(&d).await;
    nats.kill();
    common::eventually("the daemon to see NATS gone", WAIT, || async {
        d.metrics()
            .await
            .contains("switchboard_transport_connected{transport=\"nats\"} 0")
            .then_some(())
    })
    .await;
    let r = d
        .client()
        .post(d.url("/v1/events"))
        .json(&user_message("web", "during the outage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "stream", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_turn_s_command_the_adapter_holds_is_recalled_on_its_subject() {
    let (nats, d) = start("nats-recall", &[]).await;
    interrupting_bot(&d).await;
    let (adapter, runner, invocations) = clients(&nats.url(), Encoding::MessagePack).await;
    let commands = adapter
        .commands("SB_COMMANDS", "adapter", "default", "telegram", "bot")
        .await
        .unwrap();

    adapter
        .publish_event(&user_message("alice", "first"), None)
        .await
        .unwrap();
    let first = next_invocation(&invocations, WAIT).await.unwrap().unwrap();
    // The skill speaks and is still at work: its command leaves now.
    let speak = send_message("a long answer");
    runner
        .publish_results(
            "default",
            vec![ResultWire {
                outcome: switchboard::wire::invocation::ResultOutcome::Pending,
                commands: vec![speak.into()],
                ..completed(first.value.invocation_id)
            }],
        )
        .await
        .unwrap();
    first.ack().await.unwrap();
    let held = Client::next_command(&commands, WAIT)
        .await
        .unwrap()
        .expect("the command");
    assert_eq!(held.value.command_idn, "send_message");
    let act = held.value.command_act_id.expect("its act id");
    held.ack().await.unwrap();

    // The adapter holds it (no result yet) when a newer message interrupts the turn.
    adapter
        .publish_event(&user_message("alice", "stop"), None)
        .await
        .unwrap();
    let recall = Client::next_command(&commands, WAIT)
        .await
        .unwrap()
        .expect("the recall");
    assert_eq!(recall.value.command_idn, "recall");
    assert_eq!(recall.value.command_act_id, Some(act));
    recall.ack().await.unwrap();
    let second = next_invocation(&invocations, WAIT).await.unwrap().unwrap();
    assert_eq!(text_of(&second), "stop");
    complete(&runner, second).await;

    // The adapter says it stopped in time.
    let mut recalled = user_message("alice", "");
    recalled.event_idn = "recalled".into();
    recalled.actor = None;
    recalled.arguments = ArgumentsWire::List(vec![]);
    recalled.command_act_id = Some(act);
    adapter.publish_event(&recalled, None).await.unwrap();
    common::eventually("the recall counted", WAIT, || async {
        let m = d.metrics().await;
        (m.contains("switchboard_command_recalls_total{outcome=\"notified\"} 1")
            && m.contains("switchboard_command_recalls_total{outcome=\"recalled\"} 1"))
        .then_some(())
    })
    .await;
}
