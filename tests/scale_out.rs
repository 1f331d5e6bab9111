//! Scale-out (stage 1): daemons sharing one partitioned events stream on a recent nats-server
//! (`transport.nats.partitions`), each configured alike over its own API, one webhook runner
//! that sleeps a little per invocation and records (persona, n, daemon). Three daemons split
//! the 24 partitions evenly and invoke every event (published by an adapter, or posted over
//! HTTP to any daemon), each persona on one daemon, in order; one stopped with SIGTERM hands
//! its partitions over at once (not after its key's TTL); one killed with
//! SIGKILL mid-run: its partitions go on within 10 s, nothing is lost, repeats are marked
//! `redelivered`; a daemon joining two gets its share within 10 s. A keyed subject whose key is
//! not the actor's is dead-lettered; Debian's 2.9 server (no per-key TTLs) is refused at start.
//! On a three-node cluster, losing the stream leader: every persona goes on after the election
//! (SIGKILL) or within 5 s (SIGTERM: the server hands its raft leaders over).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{temp_dir, DaemonBuilder, DaemonProcess};
use common::eventually_explained;
use common::nats::{user_message, NatsCluster, NatsServer};
use common::runner_server::{argument, completed, RunnerServer};
use futures_util::StreamExt;
use serde_json::json;
use switchboard::transport::client::Client;
use switchboard::wire::envelope::{ArgumentsWire, CommandEnvelope, Encoding};

const PARTITIONS: u32 = 24;
const LIMIT: Duration = Duration::from_secs(90);
/// How long a partition may go without its next event after its owner died or a daemon joined.
const MOVE_LIMIT: Duration = Duration::from_secs(10);

/// The member TTL of the graceful-stop test: long, so a move before it shows the key deleted.
const TERM_TTL_S: u64 = 30;

/// One invocation the runner saw.
#[derive(Debug, Clone, Copy)]
struct Seen {
    persona: usize,
    n: usize,
    daemon: usize,
    redelivered: bool,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The runner: 20 ms per invocation, answered with a `send_message` echoing the event's text
/// (`<persona>:<n>`); `/d<i>` says which daemon called.
fn runner() -> (RunnerServer, Log) {
    let mut runner = RunnerServer::start_slow(Duration::from_millis(20), |r| {
        let text = argument(&r.json["event"], "text").unwrap_or_default();
        let command = json!({"v": 1, "integration_idn": "telegram", "connector_idn": "bot",
            "command_idn": "send_message", "arguments": {"text": text}});
        (200, completed(json!([command])))
    });
    let log: Log = Arc::default();
    let mut rx = std::mem::replace(&mut runner.rx, tokio::sync::mpsc::unbounded_channel().1);
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let text = argument(&r.json["event"], "text").unwrap_or_default();
            let Some((p, n)) = text.split_once(':') else {
                continue;
            };
            let daemon = r
                .path
                .trim_start_matches("/d")
                .parse()
                .unwrap_or(usize::MAX);
            l.lock().unwrap().push(Seen {
                persona: p.parse().unwrap(),
                n: n.parse().unwrap(),
                daemon,
                redelivered: r.json["redelivered"] == true,
                at: Instant::now(),
            });
        }
    });
    (runner, log)
}

/// The sealing key every daemon of these tests shares, as daemons sharing a stream must (the
/// same persona ids, the same MAC key for the daemon's own events).
fn shared_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        switchboard::store::SecretBox::generate()
            .as_str()
            .to_owned()
    })
}

fn daemon(dir: &Path, nats_env: Vec<(String, String)>) -> DaemonBuilder {
    DaemonProcess::builder(dir)
        .env("SWITCHBOARD_SECRET_KEY", shared_key())
        .env(
            "SWITCHBOARD_TRANSPORT__NATS__PARTITIONS",
            PARTITIONS.to_string(),
        )
        // A killed daemon's unacknowledged events come back after this.
        .env("SWITCHBOARD_TRANSPORT__NATS__ACK_WAIT_MS", "3000")
        .env("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info")
        // The caller's settings last: they override these.
        .envs(nats_env)
}

/// Daemon `i` (its own directory and store), configured like the others over its API: the
/// connector `telegram/bot` and the queue-mode flow `Bot/Main` on the runner at `/d<i>`.
async fn start(base: &Path, i: usize, nats: &NatsServer, runner: &RunnerServer) -> DaemonProcess {
    start_on(base, i, nats.daemon_env(), runner, 2000).await
}

/// Daemon `i` on the NATS servers `nats_env` names (a cluster's), with a member TTL of `ttl_ms`:
/// the connector `telegram/bot` and the queue-mode flow `Bot/Main` on the runner at `/d<i>`.
async fn start_on(
    base: &Path,
    i: usize,
    nats_env: Vec<(String, String)>,
    runner: &RunnerServer,
    ttl_ms: u64,
) -> DaemonProcess {
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/d{i}", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram", "interrupt_mode": "queue"}]});
    start_flow(base, i, nats_env, ttl_ms, &flow).await
}

/// Daemon `i` with a member TTL of `ttl_ms`, configured over its API: the connector
/// `telegram/bot` and `flow` as `Bot/Main`.
async fn start_flow(
    base: &Path,
    i: usize,
    nats_env: Vec<(String, String)>,
    ttl_ms: u64,
    flow: &serde_json::Value,
) -> DaemonProcess {
    let dir = base.join(format!("d{i}"));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    let d = daemon(&dir, nats_env)
        .env(
            "SWITCHBOARD_TRANSPORT__NATS__MEMBER_TTL_MS",
            ttl_ms.to_string(),
        )
        // Each daemon is configured over its own API with its own runner path (`/d<i>`, how
        // the runner tells the daemons apart): each keeps its own control plane bucket
        // (`tests/control_plane.rs` shares one).
        .env(
            "SWITCHBOARD_TRANSPORT__NATS__CONTROL_BUCKET",
            format!("SB_CONTROL_{i}"),
        )
        .start();
    d.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    d.put_flow("Bot", "Main", flow).await;
    d
}

/// Three daemons on the NATS servers `nats_env` names, with a member TTL of `ttl_ms`, once
/// each holds its share (8 of 24 partitions).
async fn three(
    base: &Path,
    nats_env: Vec<(String, String)>,
    runner: &RunnerServer,
    ttl_ms: u64,
) -> Vec<DaemonProcess> {
    let mut ds = Vec::new();
    for i in 0..3 {
        ds.push(start_on(base, i, nats_env.clone(), runner, ttl_ms).await);
    }
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[8, 8, 8]).await;
    ds
}

/// Waits until the run reached round `round` and daemon 2 invoked events; answers the
/// personas it invoked.
async fn invoked_by_daemon_2(log: &Log, round: usize) -> BTreeSet<usize> {
    eventually_explained(
        "daemon 2 to invoke events",
        LIMIT,
        || {
            let l = log.lock().unwrap();
            let v: BTreeSet<usize> = l
                .iter()
                .filter(|s| s.daemon == 2)
                .map(|s| s.persona)
                .collect();
            let rounds = l.iter().map(|s| s.n).max().unwrap_or(0);
            async move { (rounds >= round && !v.is_empty()).then_some(v) }
        },
        || async { String::new() },
    )
    .await
}

/// The partitions a daemon says it owns (`/metrics`).
async fn owned(d: &DaemonProcess) -> Option<u32> {
    d.metric("switchboard_partitions_owned")
        .await
        .map(|v| v as u32)
}

/// Waits until the daemons own `shares` partitions each.
async fn wait_shares(ds: &[&DaemonProcess], shares: &[u32]) {
    eventually_explained(
        &format!("the daemons to own {shares:?} partitions"),
        LIMIT,
        || async {
            let mut got = Vec::new();
            for d in ds {
                got.push(owned(d).await?);
            }
            (got == shares).then_some(())
        },
        || async {
            let mut got = Vec::new();
            for d in ds {
                got.push(owned(d).await);
            }
            format!("they own {got:?}")
        },
    )
    .await;
}

/// Publishes `rounds` rounds of one event per persona, `pause` apart (an adapter's job), each
/// event until the stream acknowledged it: a publish that fails while a server is lost is sent
/// again with its id (the stream drops a second copy); at most `ATTEMPTS` tries an event.
async fn publish(url: String, personas: usize, rounds: std::ops::Range<usize>, pause: Duration) {
    const ATTEMPTS: usize = 100;
    let adapter = Client::connect(&url, "sb", Encoding::MessagePack)
        .await
        .unwrap();
    for n in rounds {
        for p in 0..personas {
            let e = user_message(&format!("persona-{p}"), &format!("{p}:{n}"));
            let id = format!("ev-{p}-{n}");
            let mut tries = 0;
            while let Err(err) = adapter.publish_event(&e, Some(&id)).await {
                tries += 1;
                assert!(tries < ATTEMPTS, "event {id} not acknowledged: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Waits until the runner saw round `n` of some persona (the run is under way).
async fn wait_round(log: &Log, n: usize) {
    eventually_explained(
        &format!("round {n} at the runner"),
        LIMIT,
        || {
            let seen = log.lock().unwrap().iter().map(|s| s.n).max().unwrap_or(0);
            async move { (seen >= n).then_some(()) }
        },
        || async { String::new() },
    )
    .await;
}

/// How long after `since` the slowest of `personas` waited for its next invocation (on a
/// daemon other than `gone`, when one is named); panics naming a persona that never resumed.
fn slowest_resume(
    log: &[Seen],
    personas: impl IntoIterator<Item = usize>,
    since: Instant,
    gone: Option<usize>,
) -> Duration {
    personas
        .into_iter()
        .map(|p| {
            log.iter()
                .find(|s| s.persona == p && Some(s.daemon) != gone && s.at > since)
                .map(|s| s.at - since)
                .unwrap_or_else(|| panic!("persona {p} never resumed"))
        })
        .max()
        .unwrap_or_default()
}

/// Waits for every (persona, n) at the runner.
async fn wait_all(log: &Log, personas: usize, rounds: usize) {
    let all = personas * rounds;
    eventually_explained(
        "every event at the runner",
        LIMIT,
        || {
            let distinct: BTreeSet<(usize, usize)> = log
                .lock()
                .unwrap()
                .iter()
                .map(|s| (s.persona, s.n))
                .collect();
            async move { (distinct.len() == all).then_some(()) }
        },
        || {
            let log = log.lock().unwrap();
            let mut by_persona: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
            for s in log.iter() {
                by_persona.entry(s.persona).or_default().insert(s.n);
            }
            let short: Vec<String> = (0..personas)
                .filter_map(|p| {
                    let got = by_persona.get(&p).map_or(0, |n| n.len());
                    let last = by_persona.get(&p).and_then(|n| n.last().copied());
                    (got < rounds).then(|| format!("persona {p}: {got} (last {last:?})"))
                })
                .collect();
            let got = log.len();
            async move { format!("{got} invocations received of {all}; short: {short:?}") }
        },
    )
    .await;
}

/// Reads the whole commands stream: how many `send_message` commands of each text (`<persona>:<n>`)
/// it holds. An invocation repeated (a redelivery, on the same daemon or on the one that took
/// the partition) sends its commands under the same act ids (`Nats-Msg-Id`), so the stream
/// keeps one of each.
async fn commands_sent(url: &str) -> BTreeMap<String, usize> {
    use async_nats::jetstream::consumer::pull;
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let mut stream = js.get_stream("SB_COMMANDS").await.unwrap();
    let held = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(pull::Config {
            // Read, not taken: nothing to acknowledge, no pending limit to reach.
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut sent = BTreeMap::new();
    for _ in 0..held {
        let m = tokio::time::timeout(LIMIT, messages.next())
            .await
            .expect("the stream delivers what it holds")
            .unwrap()
            .unwrap();
        let encoding = switchboard::transport::headers::inbound_encoding(m.headers.as_ref())
            .expect("the daemon names the encoding");
        let c: CommandEnvelope = encoding.decode(&m.payload).unwrap();
        let text = match &c.arguments {
            ArgumentsWire::List(l) => l
                .iter()
                .find(|a| a.name == "text")
                .map(|a| a.value.to_string()),
            ArgumentsWire::Map(m) => m.get("text").map(|v| v.to_string()),
        };
        *sent.entry(text.unwrap_or_default()).or_default() += 1;
    }
    sent
}

/// Checks the commands stream: one `send_message` for each of `personas` × `rounds` events,
/// none past the stream's dedupe.
async fn check_commands(url: &str, personas: usize, rounds: usize) {
    // The last invocations' answers may still be on their way to the stream.
    let sent = eventually_explained(
        "a command for every event in the commands stream",
        LIMIT,
        || async {
            let sent = commands_sent(url).await;
            (sent.len() >= personas * rounds).then_some(sent)
        },
        || async { format!("{} texts", commands_sent(url).await.len()) },
    )
    .await;
    let repeated: Vec<_> = sent.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.is_empty(),
        "commands past the dedupe: {repeated:?}"
    );
    assert_eq!(sent.len(), personas * rounds, "one command per event");
}

/// Checks the log: no repeat unmarked, no per-persona inversion; answers the repeats.
fn check_order(log: &[Seen]) -> usize {
    let (repeats, unmarked) = check_order_but_unmarked(log);
    assert!(
        unmarked.is_empty(),
        "repeats not marked redelivered: {unmarked:?}"
    );
    repeats
}

/// Checks the log for inversions; answers the repeats and those not marked redelivered
/// (persona, n, daemon).
fn check_order_but_unmarked(log: &[Seen]) -> (usize, Vec<(usize, usize, usize)>) {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut repeats, mut unmarked, mut inversions) = (0, Vec::new(), Vec::new());
    for s in log {
        if !seen.insert((s.persona, s.n)) {
            repeats += 1;
            if !s.redelivered {
                unmarked.push((s.persona, s.n, s.daemon));
            }
            continue;
        }
        if let Some(&l) = last.get(&s.persona) {
            if s.n < l {
                inversions.push((s.persona, s.n, l, s.daemon));
            }
        }
        last.insert(s.persona, s.n);
    }
    assert!(
        inversions.is_empty(),
        "order inversions (persona, n, after, daemon): {inversions:?}"
    );
    (repeats, unmarked)
}

#[actix_rt::test]
async fn three_daemons_split_the_partitions_evenly_and_keep_each_persona_in_order() {
    const PERSONAS: usize = 48;
    const ROUNDS: usize = 6;
    let dir = temp_dir("scale-three");
    let nats = NatsServer::start_recent(&dir);
    let (runner, log) = runner();
    let ds = three(&dir, nats.daemon_env(), &runner, 2000).await;
    for d in &ds {
        let ready: serde_json::Value = reqwest::get(d.url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["checks"]["partitions"], "ok", "{ready}");
        let m = d.metrics().await;
        assert!(m.contains("switchboard_members_seen 3"), "{m}");
        assert!(m.contains("switchboard_partition_rebalances_total"), "{m}");
    }
    publish(nats.url(), PERSONAS, 0..ROUNDS, Duration::ZERO).await;
    // A last round over HTTP, all to daemon 0: it goes to each persona's partition and owner.
    let http = ds[0].client();
    for p in 0..PERSONAS {
        let e = user_message(&format!("persona-{p}"), &format!("{p}:{ROUNDS}"));
        let r = http
            .post(ds[0].url("/v1/events"))
            .json(&e)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    }
    wait_all(&log, PERSONAS, ROUNDS + 1).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(check_order(&log), 0, "a steady split repeats nothing");
    check_commands(&nats.url(), PERSONAS, ROUNDS + 1).await;
    // Each persona on one daemon, and every daemon busy.
    let mut by_persona: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for s in &log {
        by_persona.entry(s.persona).or_default().insert(s.daemon);
    }
    assert!(
        by_persona.values().all(|d| d.len() == 1),
        "a persona on two daemons: {by_persona:?}"
    );
    let daemons: BTreeSet<usize> = by_persona.values().flatten().copied().collect();
    assert_eq!(daemons, BTreeSet::from([0, 1, 2]), "{by_persona:?}");
    // A key that is not the actor's would split a persona over partitions: dead-lettered.
    let adapter = Client::connect(&nats.url(), "sb", Encoding::Json)
        .await
        .unwrap();
    let dlq = adapter
        .dead_letters("SB_DLQ", "dlq_reader", "default")
        .await
        .unwrap();
    let wrong = adapter
        .subjects
        .events_keyed("default", "telegram", "bot", "0000000000000000");
    let body = serde_json::to_vec(&user_message("persona-1", "1:99")).unwrap();
    adapter
        .publish_raw(wrong, "application/json", body)
        .await
        .unwrap();
    let m = Client::next_raw(&dlq, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a dead letter");
    let h = m.headers.as_ref().unwrap();
    assert_eq!(h.get("Switchboard-Reason").unwrap().as_str(), "malformed");
    let detail = h.get("Switchboard-Detail").unwrap().as_str().to_owned();
    assert!(detail.contains("partition key"), "{detail}");
}

#[actix_rt::test]
async fn a_killed_daemons_partitions_go_on_within_ten_seconds_and_nothing_is_lost() {
    const PERSONAS: usize = 24;
    const ROUNDS: usize = 60;
    let dir = temp_dir("scale-kill");
    let nats = NatsServer::start_recent(&dir);
    let (runner, log) = runner();
    let mut ds = three(&dir, nats.daemon_env(), &runner, 2000).await;
    let publisher = tokio::spawn(publish(
        nats.url(),
        PERSONAS,
        0..ROUNDS,
        Duration::from_millis(200),
    ));
    // Mid-run: every persona of daemon 2 invoked there at least once.
    let victims = invoked_by_daemon_2(&log, 8).await;
    let killed_at = Instant::now();
    ds.pop().unwrap().kill9();
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[12, 12]).await;
    publisher.await.unwrap();
    wait_all(&log, PERSONAS, ROUNDS).await;
    let log = log.lock().unwrap().clone();
    let repeats = check_order(&log);
    check_commands(&nats.url(), PERSONAS, ROUNDS).await;
    // Each victim persona's next event after the kill, on another daemon, within the bound.
    let slowest = slowest_resume(&log, victims.iter().copied(), killed_at, Some(2));
    eprintln!(
        "kill -9 of one of three daemons: {} invocations, {repeats} repeats, its {} personas resumed within {slowest:.1?}",
        log.len(),
        victims.len()
    );
    assert!(
        slowest <= MOVE_LIMIT,
        "a killed daemon's partition waited {slowest:?} for its next event"
    );
}

/// A queue runner on the invocations stream: 5 ms per invocation, answered with a
/// `send_message` echoing the event's text, on the results stream every daemon shares; records
/// what it saw (the daemon is not known: `usize::MAX`).
fn queue_runner(url: String, log: Log) -> tokio::task::JoinHandle<()> {
    use switchboard::wire::invocation::{CommandSlot, ResultOutcome, ResultWire};
    tokio::spawn(async move {
        let runner = Client::connect(&url, "sb", Encoding::MessagePack)
            .await
            .unwrap();
        let inbox = runner
            .invocations("SB_INVOCATIONS", "runner", "default", "Bot")
            .await
            .unwrap();
        loop {
            let Ok(Some(batch)) =
                Client::next_invocations(&inbox, Duration::from_millis(500)).await
            else {
                continue;
            };
            let mut results = Vec::new();
            for inv in &batch.value.invocations {
                let text = match &inv.event.arguments {
                    ArgumentsWire::List(l) => l[0].value.to_string(),
                    ArgumentsWire::Map(m) => m["text"].to_string(),
                };
                let (p, n) = text.split_once(':').unwrap();
                log.lock().unwrap().push(Seen {
                    persona: p.parse().unwrap(),
                    n: n.parse().unwrap(),
                    daemon: usize::MAX,
                    redelivered: inv.redelivered,
                    at: Instant::now(),
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
                let command: CommandEnvelope = serde_json::from_value(json!({"v": 1,
                    "integration_idn": "telegram", "connector_idn": "bot",
                    "command_idn": "send_message", "arguments": {"text": text}}))
                .unwrap();
                results.push(ResultWire {
                    v: 1,
                    invocation_id: Some(inv.invocation_id),
                    outcome: ResultOutcome::Completed,
                    reason: None,
                    commands: vec![CommandSlot::Command(command)],
                });
            }
            runner.publish_results("default", results).await.unwrap();
            batch.message.double_ack().await.unwrap();
        }
    })
}

/// Queue runners with three daemons: the results stream is shared, so an answer that reaches
/// a daemon whose invocation it does not answer goes on to the one whose does; one daemon is
/// killed mid-run, and its partitions' invocations, replayed by the others, still get their
/// answers. Every event's command is sent once, no persona's order breaks, nothing times out.
#[actix_rt::test]
async fn queue_runners_answers_reach_the_daemon_whose_invocation_waits_across_a_kill() {
    const PERSONAS: usize = 24;
    const ROUNDS: usize = 40;
    let dir = temp_dir("scale-queue");
    let nats = NatsServer::start_recent(&dir);
    let flow = json!({"runner": {"kind": "queue"},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram", "interrupt_mode": "queue"}]});
    let mut ds = Vec::new();
    for i in 0..3 {
        ds.push(start_flow(&dir, i, nats.daemon_env(), 2000, &flow).await);
    }
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[8, 8, 8]).await;
    let log: Log = Arc::default();
    let runner = queue_runner(nats.url(), log.clone());
    let publisher = tokio::spawn(publish(
        nats.url(),
        PERSONAS,
        0..ROUNDS,
        Duration::from_millis(100),
    ));
    wait_round(&log, 10).await;
    ds.pop().unwrap().kill9();
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[12, 12]).await;
    publisher.await.unwrap();
    wait_all(&log, PERSONAS, ROUNDS).await;
    check_commands(&nats.url(), PERSONAS, ROUNDS).await;
    let seen = log.lock().unwrap().clone();
    let repeats = check_order(&seen);
    let mut elsewhere = 0.0;
    for d in &ds {
        let timed_out = d
            .metric(r#"switchboard_invocations_total{agent="Bot",flow="Main",outcome="timed_out"}"#)
            .await
            .unwrap_or(0.0);
        assert_eq!(timed_out, 0.0, "an answer never reached its invocation");
        elsewhere += d
            .metric(r#"switchboard_queue_results_total{outcome="elsewhere"}"#)
            .await
            .unwrap_or(0.0);
    }
    eprintln!(
        "queue runner, kill -9 of one of three daemons: {} invocations, {repeats} repeats, \
         {elsewhere} result messages handed on to another daemon",
        seen.len()
    );
    runner.abort();
}

/// One of three daemons stopped (SIGSTOP) while its personas' queues are long, until the
/// other two took its partitions over and went on with them, then resumed: what it had queued
/// is fenced (its membership lapsed while it was stopped: the monotonic clock ran on), so it
/// invokes none of it; nothing is lost, no repeat goes unmarked, no persona's order breaks (when
/// it gets its partitions back, what JetStream redelivers out of order waits for the gate and
/// goes on in stream order). How many queued events were fenced depends on where the stop
/// fell: printed.
#[actix_rt::test]
async fn a_daemon_stopped_past_its_ttl_and_resumed_invokes_nothing_of_what_it_lost() {
    const PERSONAS: usize = 24;
    const ROUNDS: usize = 40;
    let dir = temp_dir("scale-stop");
    let nats = NatsServer::start_recent(&dir);
    let (runner, log) = runner();
    let ds = three(&dir, nats.daemon_env(), &runner, 2000).await;
    // Published far faster than a persona is served (20 ms each): queues build up.
    let publisher = tokio::spawn(publish(
        nats.url(),
        PERSONAS,
        0..ROUNDS,
        Duration::from_millis(5),
    ));
    let victims = invoked_by_daemon_2(&log, 0).await;
    common::daemon::signal(&ds[2].child, "STOP");
    let stopped_at = Instant::now();
    // The others own every partition and went on with each of the stopped daemon's personas.
    wait_shares(&[&ds[0], &ds[1]], &[12, 12]).await;
    eventually_explained(
        "the stopped daemon's personas to go on elsewhere",
        LIMIT,
        || {
            let l = log.lock().unwrap();
            let moved = victims.iter().all(|p| {
                l.iter()
                    .any(|s| s.persona == *p && s.daemon != 2 && s.at > stopped_at)
            });
            async move { moved.then_some(()) }
        },
        || async { String::new() },
    )
    .await;
    let invoked_before = log.lock().unwrap().iter().filter(|s| s.daemon == 2).count();
    common::daemon::signal(&ds[2].child, "CONT");
    publisher.await.unwrap();
    wait_all(&log, PERSONAS, ROUNDS).await;
    let fenced = ds[2]
        .metric("switchboard_events_fenced_total")
        .await
        .unwrap_or(0.0);
    let log = log.lock().unwrap().clone();
    // What the stopped daemon was sending at the stop (past its last look at the fence) goes
    // out on resume, a repeat it cannot mark: at most one per persona it owned (the one
    // running there), never out of order. Closing it needs a token the runner checks.
    let (repeats, unmarked) = check_order_but_unmarked(&log);
    // Those repeats' commands carry the acts the other daemon's sent: none past the dedupe.
    check_commands(&nats.url(), PERSONAS, ROUNDS).await;
    let stray: BTreeMap<usize, usize> = unmarked.iter().fold(BTreeMap::new(), |mut m, u| {
        *m.entry(u.0).or_default() += 1;
        m
    });
    assert!(
        unmarked.iter().all(|u| u.2 == 2) && stray.values().all(|&n| n == 1),
        "repeats not marked redelivered, beyond one per persona in flight at the stop: {unmarked:?}"
    );
    let after = log.iter().filter(|s| s.daemon == 2).count() - invoked_before;
    eprintln!(
        "SIGSTOP of one of three daemons past its TTL: {} invocations, {repeats} repeats ({} unmarked: in flight at the stop), {fenced} of its queued events fenced, {after} invocations by it after it resumed (its partitions back)",
        log.len(),
        unmarked.len()
    );
}

#[actix_rt::test]
async fn a_daemon_joining_two_gets_its_share_within_ten_seconds() {
    const PERSONAS: usize = 24;
    const ROUNDS: usize = 50;
    let dir = temp_dir("scale-join");
    let nats = NatsServer::start_recent(&dir);
    let (runner, log) = runner();
    let mut ds = Vec::new();
    for i in 0..2 {
        ds.push(start(&dir, i, &nats, &runner).await);
    }
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[12, 12]).await;
    let publisher = tokio::spawn(publish(
        nats.url(),
        PERSONAS,
        0..ROUNDS,
        Duration::from_millis(200),
    ));
    wait_round(&log, 5).await;
    let joined_at = Instant::now();
    ds.push(start(&dir, 2, &nats, &runner).await);
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[8, 8, 8]).await;
    let shared_in = joined_at.elapsed();
    eventually_explained(
        "the newcomer to invoke events",
        MOVE_LIMIT,
        || {
            let any = log.lock().unwrap().iter().any(|s| s.daemon == 2);
            async move { any.then_some(()) }
        },
        || async { String::new() },
    )
    .await;
    let first = log
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.daemon == 2)
        .map(|s| s.at - joined_at)
        .unwrap();
    publisher.await.unwrap();
    wait_all(&log, PERSONAS, ROUNDS).await;
    let log = log.lock().unwrap().clone();
    let repeats = check_order(&log);
    check_commands(&nats.url(), PERSONAS, ROUNDS).await;
    eprintln!(
        "a third daemon joining: its share in {shared_in:.1?}, its first invocation {first:.1?} after its start, {repeats} repeats"
    );
    assert!(
        first <= MOVE_LIMIT,
        "the newcomer's first event after {first:?}"
    );
}

#[actix_rt::test]
async fn a_daemon_stopped_gracefully_hands_its_partitions_over_before_its_key_expires() {
    let dir = temp_dir("scale-term");
    let nats = NatsServer::start_recent(&dir);
    let (runner, _log) = runner();
    let mut ds = three(&dir, nats.daemon_env(), &runner, TERM_TTL_S * 1000).await;
    let stopped_at = Instant::now();
    let status = ds.pop().unwrap().terminate().await;
    assert!(status.success(), "{status:?}");
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[12, 12]).await;
    let moved_in = stopped_at.elapsed();
    eprintln!("SIGTERM of one of three daemons: its partitions moved in {moved_in:.1?}");
    assert!(
        moved_in < Duration::from_secs(5),
        "the partitions moved after {moved_in:?}: the key was not deleted ({TERM_TTL_S} s TTL)"
    );
}

#[actix_rt::test]
async fn partitions_on_a_server_without_per_key_ttls_refuse_to_start_naming_the_bucket() {
    let dir = temp_dir("scale-old-server");
    // Debian's 2.9: no per-key TTLs, no pinned consumers.
    let nats = NatsServer::start(&dir);
    let out = daemon(&dir, nats.daemon_env()).run_to_exit();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("members bucket SB_MEMBERS"), "{err}");
}

/// A node of a three-node cluster killed (the events stream's leader): every persona goes on,
/// nothing lost, order kept, repeats marked. The issue asks 5 s; an abrupt loss cannot meet it:
/// the consumers whose raft leader was on that node wait for an election, and nats-server's
/// followers campaign only 4-9 s after their leader went silent (`minElectionTimeoutDefault`,
/// `maxElectionTimeoutDefault` in its `server/raft.go`, not configurable). The test holds the
/// bound that follows (the election, a missed heartbeat, a re-pull) and prints the figure.
#[actix_rt::test]
async fn on_a_three_node_cluster_losing_the_stream_leader_resumes_after_the_election() {
    // The election (at most 9 s), two missed heartbeats (2 s), re-pulls at most 1 s apart.
    lose_the_stream_leader(false, Duration::from_secs(15)).await;
}

/// The same node stopped with SIGTERM (a rolling restart): nats-server hands its raft leaders
/// over as it shuts down, so no follower waits for an election timeout.
#[actix_rt::test]
async fn on_a_three_node_cluster_a_server_stopped_gracefully_resumes_within_five_seconds() {
    lose_the_stream_leader(true, Duration::from_secs(5)).await;
}

/// Runs 24 personas through three daemons on a three-node cluster, stops the events stream's
/// leader (SIGTERM when `graceful`, else SIGKILL) mid-run, and checks every event invoked, in
/// order, repeats marked, every persona's next event within `limit`.
async fn lose_the_stream_leader(graceful: bool, limit: Duration) {
    const PERSONAS: usize = 24;
    const ROUNDS: usize = 50;
    let dir = temp_dir("scale-cluster");
    let mut cluster = NatsCluster::start_recent(&dir, 3);
    {
        let c = &cluster;
        eventually_explained(
            "JetStream to answer on the cluster",
            LIMIT,
            || async { c.jetstream_ready().await.ok() },
            || async { c.jetstream_ready().await.err().unwrap_or_default() },
        )
        .await;
    }
    let (runner, log) = runner();
    // The transport's decisions in the log a failure keeps (`daemon.log` beside each store).
    let mut env = cluster.daemon_env(3);
    env.push((
        "SWITCHBOARD_LOG__LEVEL".into(),
        "warn,switchboard=info,switchboard::transport=debug,async_nats=debug".into(),
    ));
    let ds = three(&dir, env, &runner, 2000).await;
    let js = async_nats::jetstream::new(
        async_nats::connect(cluster.urls().as_slice())
            .await
            .unwrap(),
    );
    let mut events = js.get_stream("SB_EVENTS").await.unwrap();
    let info = events.info().await.unwrap().clone();
    let placed = info.cluster.expect("a clustered stream");
    assert_eq!(
        placed.replicas.len(),
        2,
        "the events stream on three nodes: {placed:?}"
    );
    let leader = placed.leader.expect("a stream leader");
    let node = leader.trim_start_matches('n').parse::<usize>().unwrap();
    // The adapter is on a node that stays (the daemons have all three).
    let publisher = tokio::spawn(publish(
        cluster.nodes[(node + 1) % 3].url(),
        PERSONAS,
        0..ROUNDS,
        Duration::from_millis(200),
    ));
    wait_round(&log, 8).await;
    let killed_at = Instant::now();
    if graceful {
        cluster.nodes[node].terminate();
    } else {
        cluster.nodes[node].kill();
    }
    publisher.await.unwrap();
    wait_all(&log, PERSONAS, ROUNDS).await;
    let log = log.lock().unwrap().clone();
    let repeats = check_order(&log);
    check_commands(&cluster.nodes[(node + 1) % 3].url(), PERSONAS, ROUNDS).await;
    // Every persona's next event after the loss, within the bound.
    let slowest = slowest_resume(&log, 0..PERSONAS, killed_at, None);
    let mut rebalances = Vec::new();
    for d in &ds {
        rebalances.push(d.metric("switchboard_partition_rebalances_total").await);
    }
    eprintln!(
        "stream leader {leader} of three nodes {}: {} invocations, {repeats} repeats, every persona resumed within {slowest:.1?}; rebalances per daemon {rebalances:?}",
        if graceful { "stopped (SIGTERM)" } else { "killed" },
        log.len()
    );
    assert!(
        slowest <= limit,
        "a persona waited {slowest:?} for its next event after the server's loss"
    );
}

/// Flow state set on one daemon goes with its persona: two daemons share 24 personas, each
/// persona's first event runs the state field's default skill, which sets the field; then one
/// daemon stops (SIGTERM) and the other, now owning every partition, runs each persona's next
/// event with the skill its state names, whichever daemon set it.
#[actix_rt::test]
async fn flow_state_set_on_one_daemon_goes_with_its_persona_to_another() {
    const PERSONAS: usize = 24;
    let dir = temp_dir("scale-state");
    let nats = NatsServer::start_recent(&dir);
    // Records (persona, n, skill, daemon); answers the default skill with `set_state`.
    type Skills = Arc<Mutex<Vec<(usize, usize, String, usize)>>>;
    let skills: Skills = Arc::default();
    let seen = skills.clone();
    let runner = RunnerServer::start(move |r| {
        let text = argument(&r.json["event"], "text").unwrap_or_default();
        let (p, n) = text.split_once(':').unwrap_or_default();
        let skill = r.json["skill_idn"].as_str().unwrap_or_default().to_owned();
        let daemon = r
            .path
            .trim_start_matches("/d")
            .parse()
            .unwrap_or(usize::MAX);
        seen.lock().unwrap().push((
            p.parse().unwrap_or(usize::MAX),
            n.parse().unwrap_or(usize::MAX),
            skill.clone(),
            daemon,
        ));
        let commands = if skill == "Greet" {
            json!([{"v": 1, "integration_idn": "system", "connector_idn": "system",
                "command_idn": "set_state", "arguments": {"idn": "next_skill", "value": "Chat"}}])
        } else {
            json!([])
        };
        (200, completed(commands))
    });
    let mut ds = Vec::new();
    for i in 0..2 {
        let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/d{i}", runner.base)},
            "state_fields": [{"idn": "next_skill", "scope": "user", "default_value": "Greet"}],
            "events": [{"idn": "user_message", "skill_selector": "skill_idn_from_state",
                "state_idn": "next_skill", "integration_idn": "telegram", "interrupt_mode": "queue"}]});
        ds.push(start_flow(&dir, i, nats.daemon_env(), 2000, &flow).await);
    }
    wait_shares(&ds.iter().collect::<Vec<_>>(), &[12, 12]).await;
    let invoked = |n: usize| {
        let skills = skills.clone();
        move || {
            let l = skills.lock().unwrap();
            let done = (0..PERSONAS).all(|p| l.iter().any(|s| s.0 == p && s.1 == n));
            async move { done.then_some(()) }
        }
    };
    publish(nats.url(), PERSONAS, 0..1, Duration::ZERO).await;
    eventually_explained("every persona's first event", LIMIT, invoked(0), || async {
        String::new()
    })
    .await;
    let first_on: BTreeMap<usize, usize> = skills
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s.2, "Greet", "no state yet: the default");
            (s.0, s.3)
        })
        .collect();
    assert_eq!(
        first_on.values().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1]),
        "both daemons set state"
    );
    // Every value in the shared bucket before the stop (the put follows the command).
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let bucket = js.get_key_value("SB_STATE").await.unwrap();
    let held = || async {
        let mut n = 0;
        let mut keys = bucket.keys().await.ok()?;
        while let Some(k) = keys.next().await {
            k.ok()?;
            n += 1;
        }
        Some(n)
    };
    eventually_explained(
        "every persona's value in the state bucket",
        LIMIT,
        || async { (held().await? == PERSONAS).then_some(()) },
        || async { format!("it holds {:?}", held().await) },
    )
    .await;
    let status = ds.pop().unwrap().terminate().await;
    assert!(status.success(), "{status:?}");
    wait_shares(&[&ds[0]], &[PARTITIONS]).await;
    publish(nats.url(), PERSONAS, 1..2, Duration::ZERO).await;
    eventually_explained(
        "every persona's second event",
        LIMIT,
        invoked(1),
        || async { String::new() },
    )
    .await;
    let second: Vec<(usize, String, usize)> = skills
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.1 == 1)
        .map(|s| (s.0, s.2.clone(), s.3))
        .collect();
    assert!(
        second.iter().all(|s| s.1 == "Chat" && s.2 == 0),
        "each persona's state went with it to daemon 0: {second:?} (first on {first_on:?})"
    );
}
