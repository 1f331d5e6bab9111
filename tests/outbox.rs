//! The durable outbox against a real SQLite file: order per (destination, key) under retries,
//! the retry budget and `Retry-After`, replay after a crash, a gone destination, withdrawals,
//! bounded memory, metrics. HTTP where HTTP is the point (a loopback receiver), a scripted
//! destination elsewhere; timing on tokio's paused clock.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{eventually, within, PATIENCE};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use reqwest::{Method, Url};
use switchboard::dead_letter::memory::MemoryDeadLetters;
use switchboard::domain::Idn;
use switchboard::outbound::outbox::{
    Attempt, Destination, Destinations, Enqueued, Outbox, OutboxError, OutboxItem, OutboxSettings,
    Receipt, RetryPolicy, Settled, Withdraw,
};
use switchboard::outbound::{Backoff, Egress, EgressPolicy, OutboundRequest, SendOptions};
use switchboard::store::Store;
use switchboard::telemetry::metrics as m;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

// ---------------------------------------------------------------- a scripted destination

/// One attempt a destination saw.
#[derive(Debug, Clone)]
struct Tried {
    payload: String,
    id: Uuid,
    attempt: u32,
    at: Instant,
}

/// A destination answering from a script per payload (past it: delivered); attempts of gated
/// payloads wait for [`Fake::release`] of theirs.
struct Fake {
    script: Mutex<HashMap<String, VecDeque<Attempt>>>,
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    tried: mpsc::UnboundedSender<Tried>,
    settled: mpsc::UnboundedSender<(String, Settled)>,
    policy: RetryPolicy,
}

/// What a test reads of a [`Fake`]: its attempts and the settlements it was told, in order.
struct Seen {
    tried: mpsc::UnboundedReceiver<Tried>,
    settled: mpsc::UnboundedReceiver<(String, Settled)>,
}

impl Seen {
    async fn next_tried(&mut self) -> Tried {
        within("an attempt", PATIENCE, self.tried.recv())
            .await
            .expect("the destination lives")
    }

    async fn next_settled(&mut self) -> (String, Settled) {
        within("a settlement", PATIENCE, self.settled.recv())
            .await
            .expect("the destination lives")
    }

    /// The next `n` settlements.
    async fn settled(&mut self, n: usize) -> Vec<(String, Settled)> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next_settled().await);
        }
        out
    }

    /// Every attempt seen so far.
    fn tried_so_far(&mut self) -> Vec<Tried> {
        let mut out = Vec::new();
        while let Ok(t) = self.tried.try_recv() {
            out.push(t);
        }
        out
    }
}

fn fake(policy: RetryPolicy) -> (Arc<Fake>, Seen) {
    let (tried, tried_rx) = mpsc::unbounded_channel();
    let (settled, settled_rx) = mpsc::unbounded_channel();
    (
        Arc::new(Fake {
            script: Mutex::default(),
            gates: Mutex::default(),
            tried,
            settled,
            policy,
        }),
        Seen {
            tried: tried_rx,
            settled: settled_rx,
        },
    )
}

impl Fake {
    fn answer(&self, payload: &str, answers: impl IntoIterator<Item = Attempt>) {
        self.script
            .lock()
            .unwrap()
            .entry(payload.into())
            .or_default()
            .extend(answers);
    }

    fn gate(&self, payload: &str) {
        self.gates
            .lock()
            .unwrap()
            .insert(payload.into(), Arc::new(Semaphore::new(0)));
    }

    /// Lets `n` attempts of `payload` answer.
    fn release(&self, payload: &str, n: usize) {
        self.gates.lock().unwrap()[payload].add_permits(n);
    }
}

fn text(item: &OutboxItem) -> String {
    String::from_utf8_lossy(&item.payload).into_owned()
}

fn retry(reason: &str) -> Attempt {
    Attempt::Retry {
        reason: reason.into(),
        retry_after: None,
    }
}

impl Destination for Fake {
    fn deliver(&self, item: &OutboxItem, attempt: u32) -> BoxFuture<'static, Attempt> {
        let payload = text(item);
        let _ = self.tried.send(Tried {
            payload: payload.clone(),
            id: item.id,
            attempt,
            at: Instant::now(),
        });
        let answer = self
            .script
            .lock()
            .unwrap()
            .get_mut(&payload)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Attempt::Delivered(Receipt::default()));
        let gate = self.gates.lock().unwrap().get(&payload).cloned();
        async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("the gate stays open").forget();
            }
            answer
        }
        .boxed()
    }

    fn retry_policy(&self, _item: &OutboxItem) -> RetryPolicy {
        self.policy
    }

    fn settled(&self, item: &OutboxItem, outcome: &Settled) {
        let _ = self.settled.send((text(item), outcome.clone()));
    }
}

// ---------------------------------------------------------------- helpers

fn path() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-outbox-it-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("outbox.db")
}

fn open(path: &Path) -> Store {
    Store::open(path, 1024, 5000).unwrap()
}

fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
    RetryPolicy {
        backoff: Backoff::new(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
        ),
        max_attempts: None,
        retry_for: Duration::from_secs(3600),
    }
}

fn item(destination: &str, key: &str, payload: &str) -> OutboxItem {
    OutboxItem::new(
        Idn::known("default"),
        destination,
        key,
        payload.as_bytes().to_vec(),
    )
}

async fn start(
    store: &Store,
    dead: &Arc<MemoryDeadLetters>,
    kinds: &[(&str, Arc<dyn Destination>)],
    settings: OutboxSettings,
) -> Outbox {
    let destinations = kinds.iter().fold(Destinations::new(), |d, (kind, dest)| {
        d.register(kind, dest.clone())
    });
    Outbox::start(store.clone(), dead.clone(), destinations, settings)
        .await
        .unwrap()
}

/// Enqueues and waits until the row committed.
async fn put(outbox: &Outbox, item: OutboxItem) -> Uuid {
    let id = item.id;
    assert_eq!(
        outbox.enqueue(item).unwrap().await.unwrap(),
        Enqueued::Queued
    );
    id
}

/// Rows left in the store.
async fn stored(store: &Store) -> u64 {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.outbox_census())
        .await
        .unwrap()
        .unwrap()
        .0
        .iter()
        .map(|(_, n)| n)
        .sum()
}

async fn wait_empty(store: &Store) {
    eventually("the outbox's rows to be gone", PATIENCE, || async {
        (stored(store).await == 0).then_some(())
    })
    .await;
}

fn payloads(settled: &[(String, Settled)]) -> Vec<&str> {
    settled.iter().map(|(p, _)| p.as_str()).collect()
}

// ---------------------------------------------------------------- order and retries

#[tokio::test]
async fn order_is_kept_per_key_while_the_head_is_retried() {
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let (dest, mut seen) = fake(policy(10, 50));
    dest.answer("a1", [retry("HTTP 503"), retry("HTTP 503")]);
    dest.gate("a1");
    let outbox = start(
        &store,
        &dead,
        &[("fake", dest.clone())],
        OutboxSettings::default(),
    )
    .await;
    let a1 = put(&outbox, item("fake:x", "persona-a", "a1")).await;
    put(&outbox, item("fake:x", "persona-a", "a2")).await;
    put(&outbox, item("fake:x", "persona-b", "b1")).await;

    // a1 is in flight: another key is not held up, a2 waits.
    assert_eq!(seen.next_settled().await.0, "b1");
    let mut tried: Vec<(String, u32)> = seen
        .tried_so_far()
        .into_iter()
        .map(|t| (t.payload, t.attempt))
        .collect();
    tried.sort();
    assert_eq!(tried, [("a1".to_owned(), 1), ("b1".to_owned(), 1)]);
    // a1 fails twice, then is delivered: then a2.
    dest.release("a1", 3);
    let settled = seen.settled(2).await;
    assert_eq!(payloads(&settled), ["a1", "a2"]);
    assert!(settled
        .iter()
        .all(|(_, s)| matches!(s, Settled::Delivered(_))));
    let tried = seen.tried_so_far();
    let order: Vec<(&str, u32)> = tried
        .iter()
        .map(|t| (t.payload.as_str(), t.attempt))
        .collect();
    assert_eq!(order, [("a1", 2), ("a1", 3), ("a2", 1)]);
    assert!(tried
        .iter()
        .filter(|t| t.payload == "a1")
        .all(|t| t.id == a1));
    wait_empty(&store).await;
    assert!(dead.is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_a_retry_past_the_budget_is_not_waited_for() {
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let mut p = policy(1, 600_000);
    p.retry_for = Duration::from_secs(120);
    let (dest, mut seen) = fake(p);
    let after = |secs| Attempt::Retry {
        reason: "HTTP 429".into(),
        retry_after: Some(Duration::from_secs(secs)),
    };
    dest.answer("patient", [after(30)]);
    dest.answer("late", [after(30), after(100)]);
    let outbox = start(
        &store,
        &dead,
        &[("fake", dest.clone())],
        OutboxSettings::default(),
    )
    .await;
    put(&outbox, item("fake:x", "k1", "patient")).await;
    let first = seen.next_tried().await;
    let second = seen.next_tried().await;
    assert_eq!((second.payload.as_str(), second.attempt), ("patient", 2));
    let waited = second.at - first.at;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    assert!(matches!(seen.next_settled().await.1, Settled::Delivered(_)));

    // 30 s, then 100 s would start past the 120 s budget: given up at once.
    put(&outbox, item("fake:x", "k2", "late")).await;
    let start = seen.next_tried().await.at;
    let (_, settled) = seen.next_settled().await;
    assert_eq!(
        settled,
        Settled::Exhausted {
            attempts: 2,
            last: "HTTP 429".into()
        }
    );
    assert!(Instant::now() - start < Duration::from_secs(31));
}

// ---------------------------------------------------------------- over HTTP

/// Every request a receiver got: its path and `webhook-id`.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// A loopback receiver: `/flaky` answers 503 twice per `webhook-id`, then 204; `/down` always
/// 503. Answers its base URL and the requests it got.
fn receiver() -> (String, Requests) {
    let seen: Requests = Arc::default();
    let log = seen.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let log = log.clone();
            async move {
                let id = req
                    .headers()
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                let path = req.path().to_owned();
                let mut log = log.lock().unwrap();
                log.push((path.clone(), id.clone()));
                let before = log.iter().filter(|(p, i)| *p == path && *i == id).count();
                match (path.as_str(), before) {
                    ("/flaky", n) if n <= 2 => HttpResponse::ServiceUnavailable().finish(),
                    ("/flaky", _) => HttpResponse::NoContent().finish(),
                    _ => HttpResponse::ServiceUnavailable().body("secret diagnostics"),
                }
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (format!("http://{addr}"), seen)
}

/// An HTTP destination as the natives will be: the message id as `webhook-id`, a credential
/// resolved at send time, the answer read by [`Attempt::of_sent`].
struct Webhook {
    egress: Egress,
    base: String,
    settled: mpsc::UnboundedSender<(Uuid, Settled)>,
    policy: RetryPolicy,
}

const SECRET: &str = "s3cret-token";

impl Destination for Webhook {
    fn deliver(&self, item: &OutboxItem, _attempt: u32) -> BoxFuture<'static, Attempt> {
        let path = item.destination.split_once(':').unwrap().1;
        let url = Url::parse(&format!("{}/{path}", self.base)).unwrap();
        let mut request = OutboundRequest::new(Method::POST, url);
        request
            .headers
            .insert("webhook-id", item.id.to_string().parse().unwrap());
        request.headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {SECRET}").parse().unwrap(),
        );
        request.body = item.payload.clone();
        let egress = self.egress.clone();
        async move { Attempt::of_sent(egress.send(request, &SendOptions::default()).await) }.boxed()
    }

    fn retry_policy(&self, _item: &OutboxItem) -> RetryPolicy {
        self.policy
    }

    fn settled(&self, item: &OutboxItem, outcome: &Settled) {
        let _ = self.settled.send((item.id, outcome.clone()));
    }
}

fn webhook(
    base: &str,
    policy: RetryPolicy,
) -> (Arc<Webhook>, mpsc::UnboundedReceiver<(Uuid, Settled)>) {
    let (settled, rx) = mpsc::unbounded_channel();
    let egress = Egress::new(EgressPolicy::new(
        EgressPolicy::parse_allow(["127.0.0.1/32"]).unwrap(),
    ));
    (
        Arc::new(Webhook {
            egress,
            base: base.into(),
            settled,
            policy,
        }),
        rx,
    )
}

#[actix_rt::test]
async fn a_receiver_failing_twice_gets_the_message_three_times_under_one_id() {
    let (base, requests) = receiver();
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let (hook, mut settled) = webhook(&base, policy(10, 50));
    let outbox = start(&store, &dead, &[("api", hook)], OutboxSettings::default()).await;
    let id = put(&outbox, item("api:flaky", "persona", r#"{"command":"x"}"#)).await;
    let (settled_id, outcome) = within("delivered", PATIENCE, settled.recv()).await.unwrap();
    assert_eq!(settled_id, id);
    assert_eq!(
        outcome,
        Settled::Delivered(Receipt {
            status: Some(204),
            body: Vec::new()
        })
    );
    let ids: Vec<String> = requests
        .lock()
        .unwrap()
        .iter()
        .map(|(_, i)| i.clone())
        .collect();
    assert_eq!(ids, vec![id.to_string(); 3]);
    wait_empty(&store).await;
    assert!(settled.try_recv().is_err(), "the owner is told once");
    assert!(dead.is_empty());
}

#[actix_rt::test]
async fn an_exhausted_message_is_dead_lettered_with_its_last_status() {
    let (base, requests) = receiver();
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let mut p = policy(10, 50);
    p.max_attempts = Some(3);
    let (hook, mut settled) = webhook(&base, p);
    let outbox = start(&store, &dead, &[("api", hook)], OutboxSettings::default()).await;
    let id = put(&outbox, item("api:down", "persona", "{}")).await;
    let (settled_id, outcome) = within("given up", PATIENCE, settled.recv()).await.unwrap();
    assert_eq!(settled_id, id);
    assert_eq!(
        outcome,
        Settled::Exhausted {
            attempts: 3,
            last: "HTTP 503".into()
        }
    );
    assert_eq!(requests.lock().unwrap().len(), 3);
    let letters = dead.all();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason.code(), "delivery_failed");
    assert_eq!(
        letters[0].detail,
        "delivery to api:down gave up after 3 attempts; last: HTTP 503"
    );
    assert!(!format!("{:?}", letters[0]).contains(SECRET));
    assert!(!letters[0].detail.contains("diagnostics"), "no body");
    wait_empty(&store).await;
}

// ---------------------------------------------------------------- durability

#[test]
fn what_the_store_holds_is_replayed_after_a_crash() {
    let path = path();
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // Before the crash: every attempt hangs (one is in flight when the process dies).
    let (hang, _seen) = fake(policy(10, 50));
    for p in [
        "p1-1", "p1-2", "p1-3", "p1-4", "p2-1", "p2-2", "p2-3", "p3-1",
    ] {
        hang.gate(p);
    }
    let before = runtime();
    let ids: Vec<(String, Uuid)> = before.block_on(async {
        let store = open(&path);
        let outbox = start(
            &store,
            &dead,
            &[("fake", hang.clone())],
            OutboxSettings::default(),
        )
        .await;
        let mut ids = Vec::new();
        for p in [
            "p1-1", "p2-1", "p1-2", "p1-3", "p3-1", "p2-2", "p1-4", "p2-3",
        ] {
            let key = &p[..2];
            ids.push((p.to_owned(), put(&outbox, item("fake:x", key, p)).await));
        }
        ids
    });
    drop(before);

    // After: a new outbox on the same file, with room for one lane of two messages at a time.
    let after = runtime();
    after.block_on(async {
        let store = open(&path);
        let (dest, mut seen) = fake(policy(10, 50));
        let settings = OutboxSettings {
            max_lanes: 1,
            lane_window: 2,
            page: 2,
            ..OutboxSettings::default()
        };
        let _outbox = start(&store, &dead, &[("fake", dest)], settings).await;
        let settled = seen.settled(ids.len()).await;
        assert!(settled
            .iter()
            .all(|(_, s)| matches!(s, Settled::Delivered(_))));
        let tried = seen.tried_so_far();
        for key in ["p1", "p2", "p3"] {
            let of_key: Vec<&str> = tried
                .iter()
                .map(|t| t.payload.as_str())
                .filter(|p| p.starts_with(key))
                .collect();
            let mut want: Vec<&str> = ids
                .iter()
                .map(|(p, _)| p.as_str())
                .filter(|p| p.starts_with(key))
                .collect();
            want.sort();
            assert_eq!(of_key, want, "{key}: once each, in order");
        }
        for t in &tried {
            let (_, id) = ids.iter().find(|(p, _)| *p == t.payload).unwrap();
            assert_eq!(t.id, *id, "the same message id after the restart");
        }
        wait_empty(&store).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_answers_once_durable_and_refuses_what_it_cannot_take() {
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let (dest, _seen) = fake(policy(10, 50));
    dest.gate("held");
    let outbox = start(
        &store,
        &dead,
        &[("fake", dest.clone())],
        OutboxSettings::default(),
    )
    .await;
    let held = item("fake:x", "k", "held");
    let again = held.clone();
    put(&outbox, held).await;
    assert_eq!(stored(&store).await, 1, "answered after the commit");
    assert_eq!(
        outbox.enqueue(again).unwrap().await.unwrap(),
        Enqueued::AlreadyQueued
    );
    for destination in ["nowhere:x", "fake", "fake:"] {
        assert!(matches!(
            outbox.enqueue(item(destination, "k", "x")),
            Err(OutboxError::UnknownDestination(_))
        ));
    }
    assert_eq!(stored(&store).await, 1);
}

// ---------------------------------------------------------------- gone and withdrawn

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_destination_settles_what_waits_for_it_and_takes_nothing_until_enabled() {
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let (dest, mut seen) = fake(policy(10, 50));
    dest.answer(
        "g1",
        [Attempt::Gone("the receiver answered HTTP 410 Gone".into())],
    );
    dest.answer("g3", [retry("HTTP 503")]);
    dest.gate("g1");
    dest.gate("g3");
    let outbox = start(
        &store,
        &dead,
        &[("fake", dest.clone())],
        OutboxSettings::default(),
    )
    .await;
    put(&outbox, item("fake:gone", "p1", "g1")).await;
    put(&outbox, item("fake:gone", "p1", "g2")).await;
    put(&outbox, item("fake:gone", "p2", "g3")).await;
    put(&outbox, item("fake:other", "p1", "o1")).await;
    // g1 and g3 are in flight; o1, elsewhere, is delivered.
    let mut started = HashSet::new();
    while started.len() < 3 {
        started.insert(seen.next_tried().await.payload);
    }
    assert_eq!(
        started,
        HashSet::from(["g1".to_owned(), "g3".to_owned(), "o1".to_owned()])
    );
    assert_eq!(seen.next_settled().await.0, "o1");
    dest.release("g1", 1);
    // g1 answered Gone: g1 and g2 (queued) settle gone; g3, in flight, when its attempt ends.
    let mut gone = seen.settled(2).await;
    dest.release("g3", 1);
    gone.extend(seen.settled(1).await);
    let mut names = payloads(&gone);
    names.sort();
    assert_eq!(names, ["g1", "g2", "g3"]);
    assert!(gone.iter().all(|(_, s)| matches!(s, Settled::Gone { .. })));
    assert!(outbox.is_disabled("fake:gone"));
    assert!(matches!(
        outbox.enqueue(item("fake:gone", "p1", "g4")),
        Err(OutboxError::Disabled(_))
    ));
    let letters = dead.all();
    assert_eq!(letters.len(), 3);
    assert!(letters.iter().all(|l| l.reason.code() == "delivery_failed"));
    assert!(letters
        .iter()
        .any(|l| l.detail == "delivery to fake:gone stopped: the receiver answered HTTP 410 Gone"));
    let tried: Vec<String> = seen.tried_so_far().into_iter().map(|t| t.payload).collect();
    assert!(!tried.contains(&"g2".to_owned()), "g2 was never sent");
    wait_empty(&store).await;

    assert!(outbox.enable("fake:gone"));
    put(&outbox, item("fake:gone", "p1", "g5")).await;
    let (p, s) = seen.next_settled().await;
    assert_eq!(p, "g5");
    assert!(matches!(s, Settled::Delivered(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_messages_are_never_sent() {
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    // A retry waits an hour.
    let mut p = policy(10, 50);
    p.backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(7200));
    p.retry_for = Duration::from_secs(36_000);
    let (dest, mut seen) = fake(p);
    dest.gate("w1");
    dest.answer(
        "w5",
        [Attempt::Retry {
            reason: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(3600)),
        }],
    );
    let outbox = start(
        &store,
        &dead,
        &[("fake", dest.clone())],
        OutboxSettings::default(),
    )
    .await;
    let w1 = put(&outbox, item("fake:x", "p1", "w1")).await;
    put(&outbox, item("fake:x", "p1", "w2")).await;
    let w3 = put(&outbox, item("fake:x", "p1", "w3")).await;
    put(&outbox, item("fake:x", "p1", "w4")).await;
    put(&outbox, item("fake:x", "p2", "w5")).await;
    let mut started = HashSet::new();
    while started.len() < 2 {
        started.insert(seen.next_tried().await.payload);
    }
    // w1 is in flight (not withdrawn); w5 waits an hour for its retry (once its attempt is
    // written down).
    eventually("w5's retry to be scheduled", PATIENCE, || async {
        let store = store.clone();
        let rows =
            tokio::task::spawn_blocking(move || store.outbox_rows("fake:x", Some("p2"), 0, 10))
                .await
                .unwrap()
                .unwrap();
        (rows[0].attempts == 1).then_some(())
    })
    .await;
    assert_eq!(
        outbox.withdraw(Withdraw::Ids(vec![w3, w1])).await.unwrap(),
        1
    );
    let pick_w4: switchboard::outbound::outbox::Pick = Arc::new(|i| text(i) == "w4");
    let matching = |key: &str, pick| Withdraw::Matching {
        destination: "fake:x".into(),
        key: Some(key.into()),
        pick,
    };
    assert_eq!(outbox.withdraw(matching("p1", pick_w4)).await.unwrap(), 1);
    assert_eq!(
        outbox
            .withdraw(matching("p2", Arc::new(|_| true)))
            .await
            .unwrap(),
        1
    );
    let withdrawn = seen.settled(3).await;
    assert_eq!(payloads(&withdrawn), ["w3", "w4", "w5"]);
    assert!(withdrawn.iter().all(|(_, s)| *s == Settled::Withdrawn));
    dest.release("w1", 1);
    let delivered = seen.settled(2).await;
    assert_eq!(payloads(&delivered), ["w1", "w2"]);
    wait_empty(&store).await;
    let tried: Vec<(String, u32)> = seen
        .tried_so_far()
        .into_iter()
        .map(|t| (t.payload, t.attempt))
        .collect();
    assert_eq!(
        tried,
        [("w2".to_owned(), 1)],
        "after w1 and w5's first: w2 only"
    );
    assert!(dead.is_empty(), "a withdrawal is no dead letter");
}

// ---------------------------------------------------------------- bounded memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_and_windows_past_their_bounds_wait_in_the_store_in_order() {
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let (dest, mut seen) = fake(policy(10, 50));
    dest.answer("k1-0", [retry("HTTP 503")]);
    let settings = OutboxSettings {
        max_lanes: 2,
        lane_window: 2,
        page: 2,
        max_in_flight: 2,
        ..OutboxSettings::default()
    };
    let outbox = start(&store, &dead, &[("fake", dest.clone())], settings).await;
    // Enqueued in one go: the worker finds three lanes of five messages waiting.
    let mut durable = Vec::new();
    for n in 0..5 {
        for key in ["k1", "k2", "k3"] {
            durable.push(
                outbox
                    .enqueue(item("fake:x", key, &format!("{key}-{n}")))
                    .unwrap(),
            );
        }
    }
    for d in durable {
        assert_eq!(d.await.unwrap(), Enqueued::Queued);
    }
    let settled = seen.settled(15).await;
    assert!(settled
        .iter()
        .all(|(_, s)| matches!(s, Settled::Delivered(_))));
    for key in ["k1", "k2", "k3"] {
        let of_key: Vec<&str> = payloads(&settled)
            .into_iter()
            .filter(|p| p.starts_with(key))
            .collect();
        let want: Vec<String> = (0..5).map(|n| format!("{key}-{n}")).collect();
        assert_eq!(of_key, want, "{key}");
    }
    wait_empty(&store).await;
}

// ---------------------------------------------------------------- metrics

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

type Snap = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// What the recorder holds now (a snapshot takes counters' values: the next one counts from 0).
fn snapshot() -> Snap {
    snapshotter().snapshot().into_vec()
}

fn metric<'a>(s: &'a Snap, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    s.iter().find_map(|(k, _, _, v)| {
        let key = k.key();
        let ok = key.name() == name
            && labels
                .iter()
                .all(|(n, want)| key.labels().any(|l| l.key() == *n && l.value() == *want));
        ok.then_some(v)
    })
}

fn counter(s: &Snap, outcome: &str) -> u64 {
    match metric(
        s,
        m::OUTBOX_DELIVERIES_TOTAL,
        &[("destination_kind", "metered"), ("outcome", outcome)],
    ) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{outcome}: {other:?}"),
    }
}

fn pending(s: &Snap) -> f64 {
    match metric(s, m::OUTBOX_PENDING, &[("destination_kind", "metered")]) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("pending: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_counted_by_kind_and_outcome() {
    snapshotter();
    let store = open(&path());
    let dead = Arc::new(MemoryDeadLetters::new(100));
    let mut p = policy(10, 50);
    p.max_attempts = Some(2);
    let (dest, mut seen) = fake(p);
    dest.answer("retried", [retry("HTTP 503")]);
    dest.answer("refused", [Attempt::Failed("HTTP 400".into())]);
    dest.answer("exhausted", [retry("HTTP 503"), retry("HTTP 503")]);
    dest.gate("held");
    let outbox = start(
        &store,
        &dead,
        &[("metered", dest.clone())],
        OutboxSettings::default(),
    )
    .await;
    put(&outbox, item("metered:x", "k0", "held")).await;
    let withdrawn = put(&outbox, item("metered:x", "k0", "withdrawn")).await;
    for (key, payload) in [("k1", "retried"), ("k2", "refused"), ("k3", "exhausted")] {
        put(&outbox, item("metered:x", key, payload)).await;
    }
    assert_eq!(
        outbox
            .withdraw(Withdraw::Ids(vec![withdrawn]))
            .await
            .unwrap(),
        1
    );
    seen.settled(4).await;
    let s = snapshot();
    assert_eq!(pending(&s), 1.0, "the held one");
    let outcomes = [
        "delivered",
        "retry",
        "failed",
        "exhausted",
        "gone",
        "withdrawn",
    ];
    assert_eq!(outcomes.map(|o| counter(&s, o)), [1, 2, 1, 1, 0, 1]);
    match metric(
        &s,
        m::OUTBOX_DELIVERY_SECONDS,
        &[("destination_kind", "metered")],
    ) {
        Some(DebugValue::Histogram(h)) => assert_eq!(h.len(), 5, "one per attempt"),
        other => panic!("delivery seconds: {other:?}"),
    }
    dest.release("held", 1);
    seen.next_settled().await;
    let s = snapshot();
    assert_eq!(pending(&s), 0.0);
    assert_eq!(outcomes.map(|o| counter(&s, o)), [1, 0, 0, 0, 0, 0]);
}
