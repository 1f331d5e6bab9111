//! Losing nothing over NATS: the daemon killed with SIGKILL in the middle of 10,000 events and
//! again while it takes up what it left (mid-replay), and the NATS server restarted in the middle
//! of 10,000 events: every event dispatched exactly once to the queue runner. And a runner that stalls: intake pauses, memory stays bounded.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{resident_bytes, temp_dir, DaemonBuilder, DaemonProcess};
use common::nats::{completed, user_message, NatsServer};
use common::runner_server::argument;
use common::{eventually, eventually_explained};
use reqwest::{Client as Http, StatusCode};
use serde_json::json;
use switchboard::transport::client::Client;
use switchboard::wire::envelope::{ArgumentsWire, Encoding, EventEnvelope};

const EVENTS: usize = 10_000;
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

fn event(n: usize) -> EventEnvelope {
    user_message(&format!("user-{}", n % 200), &format!("n-{n}"))
}

/// The running connector `telegram/bot` and the flow `Bot/Main` on the queue runner.
async fn setup(d: &DaemonProcess) {
    d.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "queue"}, "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram"}]});
    d.put_flow("Bot", "Main", &flow).await;
}

/// Publishes events `range`, retrying each until the stream acknowledges it (an adapter's job),
/// reconnecting after a failure.
async fn publish(url: String, range: std::ops::Range<usize>) {
    let adapter = tokio::sync::Mutex::new(
        Client::connect(&url, "sb", Encoding::MessagePack)
            .await
            .unwrap(),
    );
    for n in range {
        let id = format!("ev-{n}");
        eventually(
            &format!("the stream to acknowledge event {n}"),
            DRAIN_LIMIT,
            || async {
                let mut adapter = adapter.lock().await;
                if adapter.publish_event(&event(n), Some(&id)).await.is_ok() {
                    return Some(());
                }
                if let Ok(c) = Client::connect(&url, "sb", Encoding::MessagePack).await {
                    *adapter = c;
                }
                None
            },
        )
        .await;
    }
}

/// What the runner saw of one event: the invocation ids and the stream sequences of the
/// invocation messages. JetStream may redeliver a stored message to a runner (an ack lost in a
/// server restart); that is the same sequence. A second dispatch by the daemon would be a
/// second stored message: another sequence.
/// Each delivery also says whether it was marked `redelivered`.
type Seen = Arc<Mutex<HashMap<String, std::collections::BTreeSet<(String, u64, bool)>>>>;

/// A queue runner completing at once; records what it sees per event text.
fn run_runner(url: String, seen: Seen) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (runner, inbox) = eventually("the runner to subscribe", DRAIN_LIMIT, || async {
                let runner = Client::connect(&url, "sb", Encoding::MessagePack)
                    .await
                    .ok()?;
                let inbox = runner
                    .invocations("SB_INVOCATIONS", "runner", "default", "Bot")
                    .await
                    .ok()?;
                Some((runner, inbox))
            })
            .await;
            loop {
                let next = tokio::time::timeout(
                    Duration::from_secs(3),
                    Client::next_invocations(&inbox, Duration::from_millis(500)),
                )
                .await;
                let Ok(next) = next else { break }; // a fetch lost in a server restart
                match next {
                    Ok(Some(batch)) => {
                        let seq = batch
                            .message
                            .info()
                            .map(|i| i.stream_sequence)
                            .unwrap_or_default();
                        let mut results = Vec::with_capacity(batch.value.invocations.len());
                        for inv in &batch.value.invocations {
                            let text = match &inv.event.arguments {
                                ArgumentsWire::List(l) => l[0].value.clone(),
                                ArgumentsWire::Map(m) => m["text"].clone(),
                            };
                            seen.lock()
                                .unwrap()
                                .entry(text.to_string())
                                .or_default()
                                .insert((inv.invocation_id.to_string(), seq, inv.redelivered));
                            results.push(completed(inv.invocation_id));
                        }
                        if runner.publish_results("default", results).await.is_err()
                            || batch.message.double_ack().await.is_err()
                        {
                            break; // the server went away: JetStream redelivers this one
                        }
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    })
}

/// What the pipeline holds when the runner saw fewer than `wanted` events: consumers' counts,
/// gauges, the last logs (for a failure message).
async fn stalled(url: &str, seen: &Seen, d: &DaemonProcess, wanted: usize) -> String {
    let state = pipeline_state(url, d).await;
    let logs = d.logs.lock().unwrap();
    let tail: Vec<_> = logs.iter().rev().take(40).collect();
    format!(
        "only {} of {wanted} events reached the runner; {state}; daemon logs: {tail:#?}",
        seen.lock().unwrap().len()
    )
}

/// Waits until the runner saw `n` events.
async fn until_seen(url: &str, seen: &Seen, d: &DaemonProcess, n: usize) {
    eventually_explained(
        &format!("the runner to see {n} events"),
        DRAIN_LIMIT,
        || std::future::ready((seen.lock().unwrap().len() >= n).then_some(())),
        || stalled(url, seen, d, n),
    )
    .await
}

/// Waits until every event was seen and nothing is left anywhere in the pipeline.
async fn drained(url: &str, seen: &Seen, d: &DaemonProcess) {
    eventually_explained(
        "every event seen and the pipeline drained",
        DRAIN_LIMIT,
        || async {
            if seen.lock().unwrap().len() < EVENTS {
                return None;
            }
            let c = Client::connect(url, "sb", Encoding::MessagePack)
                .await
                .ok()?;
            let mut idle = true;
            for (stream, consumer) in [
                ("SB_EVENTS", "switchboard_events"),
                ("SB_INVOCATIONS", "runner"),
            ] {
                match c.js.get_stream(stream).await {
                    Ok(s) => match s.consumer_info(consumer).await {
                        Ok(i) => idle &= i.num_pending == 0 && i.num_ack_pending == 0,
                        Err(_) => idle = false,
                    },
                    Err(_) => idle = false,
                }
            }
            idle.then_some(())
        },
        || stalled(url, seen, d, EVENTS),
    )
    .await
}

/// What a stalled run leaves behind: the consumers' counts and the daemon's own gauges.
async fn pipeline_state(url: &str, d: &DaemonProcess) -> String {
    let mut out = String::new();
    if let Ok(c) = Client::connect(url, "sb", Encoding::MessagePack).await {
        for (stream, consumer) in [
            ("SB_EVENTS", "switchboard_events"),
            ("SB_INVOCATIONS", "runner"),
            ("SB_RESULTS", "switchboard_results"),
        ] {
            if let Ok(s) = c.js.get_stream(stream).await {
                if let Ok(i) = s.consumer_info(consumer).await {
                    out += &format!(
                        "{consumer}: pending {} ack_pending {} redelivered {} waiting {}; ",
                        i.num_pending, i.num_ack_pending, i.num_redelivered, i.num_waiting
                    );
                }
            }
        }
    }
    if let Ok(r) = reqwest::get(d.url("/metrics")).await {
        if let Ok(text) = r.text().await {
            for line in text.lines().filter(|l| {
                !l.starts_with('#') && !l.contains("_bucket") && l.starts_with("switchboard_")
            }) {
                out += line;
                out += "; ";
            }
        }
    }
    out
}

/// Every event reached the runner as one invocation: one invocation id, and at most one copy
/// not marked `redelivered` (a copy the daemon sends when the runner may have it already says
/// so; the runner answers it by its invocation id).
fn exactly_once(seen: &HashMap<String, std::collections::BTreeSet<(String, u64, bool)>>) {
    assert_eq!(seen.len(), EVENTS, "every event dispatched");
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, s)| {
            let ids: std::collections::BTreeSet<_> = s.iter().map(|(id, _, _)| id).collect();
            ids.len() != 1 || s.iter().filter(|(_, _, again)| !again).count() > 1
        })
        .collect();
    assert!(twice.is_empty(), "dispatched more than once: {twice:?}");
}

/// The daemon on `nats`, storing under `dir`.
fn daemon(dir: &Path, nats: &NatsServer) -> DaemonBuilder {
    DaemonProcess::builder(dir)
        .envs(nats.daemon_env())
        // A result message is acknowledged only once the event it answers is: after a crash,
        // both come again (within ack_wait) and the replayed invocation gets its answer long
        // before its deadline.
        .env("SWITCHBOARD_TRANSPORT__NATS__ACK_WAIT_MS", "3000")
        .env("SWITCHBOARD_ENGINE__INVOCATION_TIMEOUT_MS", "30000")
        .env("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_killed_mid_stream_and_mid_replay_dispatches_every_event_exactly_once() {
    let dir = temp_dir("nats-kill");
    let nats = NatsServer::start(&dir);
    let daemon = daemon(&dir, &nats);
    let d = daemon.start();
    setup(&d).await;
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let runner = run_runner(nats.url(), seen.clone());
    let publisher = tokio::spawn(publish(nats.url(), 0..EVENTS));
    until_seen(&nats.url(), &seen, &d, EVENTS / 3).await;
    d.kill9();
    // Mid-replay: the restart takes up what the first run left unsettled; it is killed again.
    let d = daemon.start();
    until_seen(&nats.url(), &seen, &d, EVENTS / 2).await;
    d.kill9();
    let d = daemon.start();
    publisher.await.unwrap();
    drained(&nats.url(), &seen, &d).await;
    exactly_once(&seen.lock().unwrap());
    // Results the runner sent for invocations of the first run wait for the replay that asks
    // for them again: none is dead-lettered as malformed, none waits out its invocation.
    let letters = dead_letter_reasons(&d).await;
    assert_eq!(letters.get("malformed"), None, "{letters:?}");
    let metrics = d.metrics().await;
    let count = |outcome: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "switchboard_invocations_total{{agent=\"Bot\",flow=\"Main\",outcome=\"{outcome}\"}} "
                ))
            })
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    eprintln!(
        "chaos counts: daemon kill -9 mid-stream and mid-replay: {EVENTS} events acknowledged, {} dispatched once; \
         after the restart {} invocations completed, {} timed out, {} repeated answers; dead letters {letters:?}",
        seen.lock().unwrap().len(),
        count("completed"),
        count("timed_out"),
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("switchboard_queue_results_total{outcome=\"repeat\"} "))
            .unwrap_or("0"),
    );
    assert_eq!(
        count("timed_out"),
        0,
        "every replayed invocation got the answer its runner sent before the crash"
    );
    // A result message whose event was acknowledged just before the kill, itself not yet,
    // comes again with no invocation left to answer: a repeat, counted, not dead-lettered.
    assert_eq!(letters.get("unknown_invocation"), None, "{letters:?}");
    runner.abort();
    drop(d);
}

/// Dead letters of `d` by reason.
async fn dead_letter_reasons(d: &DaemonProcess) -> std::collections::BTreeMap<String, usize> {
    let (s, v) = common::call(
        &d.client(),
        "GET",
        d.url("/v1/dead-letters?limit=1000"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut by = std::collections::BTreeMap::new();
    for l in v.as_array().unwrap() {
        *by.entry(l["reason"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_server_restarted_mid_stream_loses_and_repeats_nothing() {
    let dir = temp_dir("nats-restart");
    let mut nats = NatsServer::start(&dir);
    let d = daemon(&dir, &nats).start();
    setup(&d).await;
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let runner = run_runner(nats.url(), seen.clone());
    let publisher = tokio::spawn(publish(nats.url(), 0..EVENTS));
    until_seen(&nats.url(), &seen, &d, EVENTS / 3).await;
    nats.restart();
    publisher.await.unwrap();
    drained(&nats.url(), &seen, &d).await;
    exactly_once(&seen.lock().unwrap());
    runner.abort();
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_runner_pauses_intake_and_memory_stays_bounded() {
    let dir = temp_dir("nats-stall");
    let nats = NatsServer::start(&dir);
    let d = daemon(&dir, &nats)
        .env("SWITCHBOARD_TRANSPORT__NATS__MAX_ACK_PENDING", "500")
        .env("SWITCHBOARD_ENGINE__INVOCATION_TIMEOUT_MS", "600000")
        .start();
    setup(&d).await;
    let c = Client::connect(&nats.url(), "sb", Encoding::MessagePack)
        .await
        .unwrap();
    let ack_pending = |c: &Client| {
        let js = c.js.clone();
        async move {
            let s = js.get_stream("SB_EVENTS").await.unwrap();
            let i = s.consumer_info("switchboard_events").await.unwrap();
            (i.num_ack_pending, i.num_pending)
        }
    };
    // Nobody consumes invocations. Intake fills up to max_ack_pending and stops there.
    publish(nats.url(), 0..5_000).await;
    eventually_explained(
        "the intake to fill up",
        Duration::from_secs(60),
        || async { (ack_pending(&c).await.0 >= 500).then_some(()) },
        || async { format!("intake never filled up ({})", ack_pending(&c).await.0) },
    )
    .await;
    let pid = d.child.id();
    let before = resident_bytes(pid) / 1024;
    publish(nats.url(), 5_000..25_000).await;
    let (pending_ack, waiting) = ack_pending(&c).await;
    assert!(
        pending_ack <= 500,
        "the daemon holds at most max_ack_pending events: {pending_ack}"
    );
    assert!(
        waiting >= 19_000,
        "the rest waits in the stream, not in the daemon: {waiting}"
    );
    let after = resident_bytes(pid) / 1024;
    eprintln!(
        "daemon RSS: {before} KiB with the intake full, {after} KiB after 20,000 more events"
    );
    assert!(
        after < before + 16 * 1024,
        "memory grew by {} KiB",
        after.saturating_sub(before)
    );
    // The daemon still answers: intake paused, not stuck.
    let health = Http::new()
        .get(d.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(health, StatusCode::OK);
}

/// The production-path issue's loss case: a webhook runner that takes 150 ms per invocation,
/// 10 personas × 20 `user_message` events in `queue` mode on the events stream, the daemon
/// killed with SIGKILL while most of them wait in their flow instances' queues, then (with
/// `nats_restart`) the NATS server restarted too. After the restart every event reaches the
/// runner, each persona's in the order published, and a repeat is marked `redelivered`.
async fn queued_events_survive(name: &str, nats_restart: bool) {
    const PERSONAS: usize = 10;
    const PER_PERSONA: usize = 20;
    let dir = temp_dir(name);
    let mut nats = NatsServer::start(&dir);
    let mut runner =
        common::runner_server::RunnerServer::start_slow(Duration::from_millis(150), |_| {
            (200, common::runner_server::completed(json!([])))
        });
    let daemon = daemon(&dir, &nats);
    let d = daemon.start();
    d.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    let flow = json!({"runner": {"kind": "webhook", "url": format!("{}/skills", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram", "interrupt_mode": "queue"}]});
    d.put_flow("Bot", "Main", &flow).await;
    let adapter = Client::connect(&nats.url(), "sb", Encoding::MessagePack)
        .await
        .unwrap();
    for n in 0..PER_PERSONA {
        for p in 0..PERSONAS {
            let e = user_message(&format!("persona-{p}"), &format!("{p}:{n}"));
            adapter
                .publish_event(&e, Some(&format!("q-{p}-{n}")))
                .await
                .unwrap();
        }
    }
    // (persona, n, redelivered) in the order the runner received them.
    let received = Arc::new(Mutex::new(Vec::<(usize, usize, bool)>::new()));
    let mut rx = std::mem::replace(&mut runner.rx, tokio::sync::mpsc::unbounded_channel().1);
    let log = received.clone();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let text = argument(&r.json["event"], "text").unwrap_or_default();
            let (p, n) = text.split_once(':').unwrap();
            log.lock().unwrap().push((
                p.parse().unwrap(),
                n.parse().unwrap(),
                r.json["redelivered"] == true,
            ));
        }
    });
    eventually("a hundred invocations before the kill", DRAIN_LIMIT, || {
        let n = received.lock().unwrap().len();
        async move { (n >= 80).then_some(()) }
    })
    .await;
    d.kill9();
    if nats_restart {
        nats.restart();
    }
    let restarted = std::time::Instant::now();
    let d = daemon.start();
    let all = PERSONAS * PER_PERSONA;
    eventually_explained(
        "every event at the runner",
        DRAIN_LIMIT,
        || {
            let distinct: std::collections::BTreeSet<(usize, usize)> = received
                .lock()
                .unwrap()
                .iter()
                .map(|(p, n, _)| (*p, *n))
                .collect();
            async move { (distinct.len() == all).then_some(()) }
        },
        || {
            let got = received.lock().unwrap().len();
            async move { format!("{got} invocations received") }
        },
    )
    .await;
    let drained_in = restarted.elapsed();
    let received = received.lock().unwrap().clone();
    let mut seen = std::collections::BTreeSet::new();
    let mut last = [None::<usize>; PERSONAS];
    let (mut repeats, mut unmarked, mut inversions) = (0, Vec::new(), Vec::new());
    for (p, n, redelivered) in received.iter().copied() {
        if !seen.insert((p, n)) {
            repeats += 1;
            if !redelivered {
                unmarked.push((p, n));
            }
            continue;
        }
        if last[p].is_some_and(|l| n < l) {
            inversions.push((p, n, last[p]));
        }
        last[p] = Some(n);
    }
    eprintln!(
        "queued events over NATS, kill -9{}: {all} events, {} invocations, {repeats} repeats, \
         all invoked {drained_in:.1?} after the restart",
        if nats_restart {
            " and a NATS restart"
        } else {
            ""
        },
        received.len()
    );
    assert!(
        unmarked.is_empty(),
        "repeats not marked redelivered: {unmarked:?}"
    );
    assert!(
        inversions.is_empty(),
        "order inversions (persona, n, after): {inversions:?}"
    );
    drop(d);
}

#[actix_rt::test]
async fn queued_events_of_a_slow_webhook_runner_survive_a_kill() {
    queued_events_survive("nats-queued", false).await;
}

#[actix_rt::test]
async fn queued_events_survive_a_kill_and_a_nats_server_restart() {
    queued_events_survive("nats-queued-restart", true).await;
}
