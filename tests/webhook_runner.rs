//! Webhook skill runners over real HTTP: a test runner (actix-web on 127.0.0.1, port 0)
//! records every POST into a channel and answers from a script. The engine is the real one,
//! with a runner registry that resolves `{kind: webhook}`, under an egress policy that allows
//! 127.0.0.1/32 (the default denies it: see `a_denied_address_is_refused_at_connect_time`).
//! Signatures are checked by the `standardwebhooks` crate, the verifier runners use.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{eventually, within, Harness};
use serde_json::Value;
use switchboard::dead_letter::DeadLetter;
use switchboard::domain::{Command, Idn};
use switchboard::outbound::{Egress, EgressPolicy, Lookup};
use switchboard::relay::AdapterCommand;
use switchboard::skill_runner::pending::{PendingInvocations, UnknownInvocation};
use switchboard::skill_runner::webhook::{FlowKeys, RunnerSecret, WebhookRunners, WebhookSettings};
use switchboard::skill_runner::Outcome;
use switchboard::wire::invocation::InvocationWire;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The flow's signing secret (Standard Webhooks' `whsec_<base64>`).
const SECRET: &str = "whsec_d2ViaG9vayB0ZXN0IHNlY3JldCwgMzIgYnl0ZXMgbG9uZyE=";
const OTHER_SECRET: &str = "whsec_YW5vdGhlciBzZWNyZXQsIGFsc28gMzIgYnl0ZXMgbG9uZw==";
const WAIT: Duration = Duration::from_secs(10);

const COMPLETED_HI: &str = r#"{"v":1,"outcome":"completed","commands":[
  {"v":1,"integration_idn":"telegram","connector_idn":"bot","command_idn":"send_message",
   "arguments":[{"name":"text","value":"hi alice"}]}]}"#;

// ---- the test runner ----

/// One POST the test runner received.
#[derive(Debug)]
struct Recorded {
    content_type: Option<String>,
    invocation: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn invocation_id(&self) -> Uuid {
        self.invocation
            .as_deref()
            .expect("X-Switchboard-Invocation is set")
            .parse()
            .unwrap()
    }

    /// Whether `standardwebhooks` verifies the request with `secret`.
    fn signed_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }

    fn signature(&self) -> Option<&str> {
        self.headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
    }
}

struct Script {
    answers: Mutex<VecDeque<(u16, String)>>,
    then: (u16, String),
    seen: mpsc::UnboundedSender<Recorded>,
}

async fn answer(req: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let _ = script.seen.send(Recorded {
        content_type: header("content-type"),
        invocation: header("x-switchboard-invocation"),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                    reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let (status, body) = script
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| script.then.clone());
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body)
}

struct TestRunner {
    url: String,
    requests: mpsc::UnboundedReceiver<Recorded>,
    server: ServerHandle,
}

impl TestRunner {
    /// Answers with `answers` in turn, then with `then` forever.
    fn start(answers: &[(u16, &str)], then: (u16, &str)) -> TestRunner {
        let (seen, requests) = mpsc::unbounded_channel();
        let script = web::Data::new(Script {
            answers: Mutex::new(answers.iter().map(|(s, b)| (*s, (*b).to_owned())).collect()),
            then: (then.0, then.1.to_owned()),
            seen,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(script.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", 0))
        .expect("bind 127.0.0.1:0");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        TestRunner {
            url: format!("http://{addr}/skill"),
            requests,
            server: handle,
        }
    }

    async fn next(&mut self) -> Recorded {
        within("a POST to the runner", WAIT, self.requests.recv())
            .await
            .expect("the test runner is up")
    }

    /// POSTs received and not yet taken.
    fn count_rest(&mut self) -> usize {
        let mut n = 0;
        while self.requests.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

// ---- the engine ----

struct Setup {
    h: Harness,
    webhooks: WebhookRunners,
    pending: Arc<PendingInvocations>,
}

/// A telegram bot and the flow `Agent/Main` running `Talk` on the webhook at `url`.
async fn setup(url: &str, max_attempts: u32, interrupt_mode: &str) -> Setup {
    setup_with_timeout(url, 5000, max_attempts, interrupt_mode).await
}

/// The tests' egress: the default policy with 127.0.0.1/32 allowed, as the daemon tests
/// configure it.
fn loopback_allowed() -> EgressPolicy {
    EgressPolicy::new(EgressPolicy::parse_allow(["127.0.0.1/32"]).unwrap())
}

async fn setup_with_timeout(
    url: &str,
    timeout_ms: u64,
    max_attempts: u32,
    interrupt_mode: &str,
) -> Setup {
    setup_with_egress(
        url,
        timeout_ms,
        max_attempts,
        interrupt_mode,
        Egress::new(loopback_allowed()),
    )
    .await
}

async fn setup_with_egress(
    url: &str,
    timeout_ms: u64,
    max_attempts: u32,
    interrupt_mode: &str,
    egress: Egress,
) -> Setup {
    setup_runner(
        &format!("{{kind: webhook, url: '{url}', timeout_ms: {timeout_ms}, max_attempts: {max_attempts}}}"),
        interrupt_mode,
        egress,
    )
    .await
}

/// `Agent/Main` on the runner `runner` (a YAML flow document's `runner` value).
async fn setup_runner(runner: &str, interrupt_mode: &str, egress: Egress) -> Setup {
    let pending = Arc::new(PendingInvocations::default());
    let webhooks = WebhookRunners::new(
        WebhookSettings::new().with_backoff(Duration::from_millis(10), Duration::from_millis(40)),
        egress,
        pending.clone(),
    );
    // The daemon gives every webhook-run flow its secret; here the test does.
    webhooks.keys().set(
        &Idn::known("default"),
        &name("Agent"),
        &name("Main"),
        FlowKeys::new(RunnerSecret::parse(SECRET).unwrap()),
    );
    // The default engine, whose registry also resolves webhook runners.
    let h = Harness::builder().webhooks(&webhooks).start();
    h.connector("telegram", "bot");
    h.flow(
        "Agent",
        "Main",
        &format!(
            "runner: {runner}\n\
             events:\n  \
             - {{idn: user_message, skill_idn: Talk, integration_idn: telegram, interrupt_mode: {interrupt_mode}}}\n"
        ),
    )
    .await;
    Setup {
        h,
        webhooks,
        pending,
    }
}

async fn egress(h: &mut Harness) -> AdapterCommand {
    within("a command at egress", WAIT, h.relay.recv())
        .await
        .expect("egress open")
}

/// Waits for the first dead letter.
async fn dead_letter(h: &Harness) -> DeadLetter {
    eventually("a dead letter", WAIT, || {
        std::future::ready(h.dead.all().into_iter().next())
    })
    .await
}

async fn idle(s: &Setup, who: &str) {
    let persona = s.h.persona("telegram", who);
    s.h.wait_instance("Agent", "Main", persona, |i| i.running.is_none())
        .await;
    eventually("the webhook task to end", WAIT, || {
        std::future::ready((s.webhooks.in_flight() == 0).then_some(()))
    })
    .await;
}

fn name(s: &str) -> switchboard::domain::Name {
    switchboard::domain::Name::parse("name", s).unwrap()
}

fn send_message(h: &Harness, text: &str) -> Command {
    Command::new(
        h.account.clone(),
        Idn::known("telegram"),
        Idn::known("bot"),
        Idn::known("send_message"),
    )
    .with_argument("text", text)
}

// ---- cases ----

#[actix_rt::test]
async fn invocation_is_posted_signed_and_the_inline_answer_reaches_egress() {
    let mut runner = TestRunner::start(&[(200, COMPLETED_HI)], (500, "only one call expected"));
    let mut s = setup(&runner.url, 3, "queue").await;
    let alice = s.h.persona("telegram", "alice");
    let event =
        s.h.event("telegram", "bot", "user_message", "alice")
            .with_argument("text", "hello");
    let event_id = event.id;
    s.h.submit(event).await;

    let req = runner.next().await;
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    assert!(req.signed_with(SECRET), "signature {:?}", req.signature());
    assert!(!req.signed_with(OTHER_SECRET));
    assert_eq!(
        req.headers["webhook-id"].to_str().unwrap(),
        req.invocation_id().to_string(),
        "the message id is the invocation id"
    );
    assert!(
        req.headers.get("x-switchboard-signature").is_none(),
        "the old scheme is gone"
    );
    let id = req.invocation_id();
    let body = req.json();
    assert_eq!(body["v"], 1);
    assert_eq!(body["invocation_id"], id.to_string());
    assert_eq!(body["skill_idn"], "Talk");
    assert_eq!(body["timeout_ms"], 30_000);
    assert_eq!(body["flow_instance"]["account"], "default");
    assert_eq!(body["flow_instance"]["agent_idn"], "Agent");
    assert_eq!(body["flow_instance"]["flow_idn"], "Main");
    assert_eq!(body["flow_instance"]["persona_id"], alice.0.to_string());
    assert_eq!(body["event"]["event_idn"], "user_message");
    assert_eq!(body["event"]["id"], event_id.to_string());
    assert_eq!(body["event"]["actor"]["external_id"], "alice");
    assert_eq!(
        body["event"]["arguments"],
        serde_json::json!([{"name": "text", "value": "hello"}])
    );
    let sessions = s.h.engine.sessions(&Idn::known("default"));
    assert_eq!(sessions.len(), 1, "a user connector starts a session");
    assert_eq!(body["session"]["session_id"], sessions[0].id.to_string());
    assert_eq!(body["session"]["integration_idn"], "telegram");
    assert_eq!(body["session"]["connector_idn"], "bot");
    let wire: InvocationWire = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(wire.invocation_id, id);

    let out = egress(&mut s.h).await;
    assert_eq!(out.persona, alice);
    assert_eq!(out.command.integration.as_str(), "telegram");
    assert_eq!(out.command.connector.as_str(), "bot");
    assert_eq!(out.command.command.as_str(), "send_message");
    assert_eq!(out.command.arguments.get("text"), Some("hi alice"));
    idle(&s, "alice").await;
    assert!(s.h.dead.all().is_empty());
    assert!(s.pending.is_empty(), "nothing waits after a final answer");
    assert_eq!(runner.count_rest(), 0);
    runner.stop().await;
}

#[actix_rt::test]
async fn server_errors_are_retried_until_the_runner_answers() {
    let mut runner = TestRunner::start(
        &[(500, "busy"), (500, "still busy"), (200, COMPLETED_HI)],
        (500, "no fourth call expected"),
    );
    let mut s = setup(&runner.url, 3, "queue").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let first = runner.next().await;
    let id = first.invocation_id();
    for _ in 0..2 {
        let again = runner.next().await;
        assert_eq!(again.invocation_id(), id, "retries repeat the invocation");
        assert_eq!(again.body, first.body);
        assert!(again.signed_with(SECRET));
    }
    let out = egress(&mut s.h).await;
    assert_eq!(out.command.arguments.get("text"), Some("hi alice"));
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 0, "exactly three POSTs");
    assert!(s.h.dead.all().is_empty(), "{:?}", s.h.dead_letter_codes());
    assert!(s.pending.is_empty());
    runner.stop().await;
}

#[actix_rt::test]
async fn a_runner_down_longer_than_its_timeout_is_ridden_out() {
    // Seven failures: beyond the old budget of three attempts, and, with the backoff's pauses,
    // beyond the invocation's 100 ms timeout, which each retry moves on.
    let failures = [(503, "down"); 7];
    let mut script: Vec<(u16, &str)> = failures.to_vec();
    script.push((200, COMPLETED_HI));
    let mut runner = TestRunner::start(&script, (500, "no ninth call expected"));
    let mut s = setup_runner(
        &format!("{{kind: webhook, url: '{}', timeout_ms: 100}}", runner.url),
        "queue",
        Egress::new(loopback_allowed()),
    )
    .await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let id = runner.next().await.invocation_id();
    for _ in 0..7 {
        assert_eq!(
            runner.next().await.invocation_id(),
            id,
            "the same invocation"
        );
    }
    let out = egress(&mut s.h).await;
    assert_eq!(out.command.arguments.get("text"), Some("hi alice"));
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 0, "eight POSTs");
    assert!(s.h.dead.all().is_empty(), "{:?}", s.h.dead_letter_codes());
    runner.stop().await;
}

#[actix_rt::test]
async fn a_runner_answering_410_is_disabled_and_the_flow_told() {
    let mut runner = TestRunner::start(&[(410, "gone")], (200, COMPLETED_HI));
    let s = setup(&runner.url, 3, "queue").await;
    // Another flow, on another runner, watches for the notice.
    s.h.flow(
        "Ops",
        "Watch",
        "runner: {kind: in_process, name: manual}\n\
         events:\n  - {idn: runner_disabled, skill_idn: OnGone, integration_idn: system}\n",
    )
    .await;
    let mut h = s.h;
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    runner.next().await;
    let (inv, reply) = h.next_manual().await;
    assert_eq!(inv.skill.as_str(), "OnGone");
    assert_eq!(
        inv.persona,
        h.persona("telegram", "alice"),
        "for the same persona"
    );
    let args = &inv.event.event.arguments;
    assert_eq!(
        (args.get("agentIdn"), args.get("flowIdn")),
        (Some("Agent"), Some("Main"))
    );
    reply.finish(Outcome::Completed, vec![]);
    // The next event fails without a request.
    h.submit(h.event("telegram", "bot", "user_message", "bob"))
        .await;
    eventually("both events dead-lettered", WAIT, || {
        std::future::ready(
            (h.dead_letter_codes() == ["runner_failed", "runner_failed"]).then_some(()),
        )
    })
    .await;
    let letters = h.dead.all();
    assert!(
        letters[1].detail.contains("disabled"),
        "{}",
        letters[1].detail
    );
    assert_eq!(
        runner.count_rest(),
        0,
        "nothing posted to a disabled runner"
    );
    runner.stop().await;
}

#[actix_rt::test]
async fn a_runner_failing_every_attempt_dead_letters_the_event_with_its_status_only() {
    let mut runner = TestRunner::start(&[], (500, "kaput: database on fire"));
    let s = setup(&runner.url, 3, "queue").await;
    let event = s.h.event("telegram", "bot", "user_message", "alice");
    let event_id = event.id;
    s.h.submit(event).await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(dead.detail.contains("3 attempts"), "{}", dead.detail);
    assert!(
        dead.detail
            .ends_with("3 attempts; last: HTTP 500 Internal Server Error"),
        "{}",
        dead.detail
    );
    assert!(
        !dead.detail.contains("kaput"),
        "the runner's body is not shown: {}",
        dead.detail
    );
    match &dead.payload {
        switchboard::dead_letter::DeadLetterPayload::Event { event, .. } => {
            assert_eq!(event.id, event_id)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(runner.count_rest(), 3, "three attempts, no more");
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 0);
    assert_eq!(s.h.dead.all().len(), 1);
    assert!(s.pending.is_empty());
    runner.stop().await;
}

#[actix_rt::test]
async fn a_pending_answer_waits_for_the_result_endpoint() {
    let pending_with_command = r#"{"v":1,"outcome":"pending","commands":[
      {"v":1,"integration_idn":"telegram","connector_idn":"bot","command_idn":"send_message",
       "arguments":{"text":"working on it"}}]}"#;
    let mut runner = TestRunner::start(&[(200, pending_with_command)], (500, "one call"));
    let mut s = setup(&runner.url, 3, "queue").await;
    let alice = s.h.persona("telegram", "alice");
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let id = runner.next().await.invocation_id();
    let out = egress(&mut s.h).await;
    assert_eq!(out.command.arguments.get("text"), Some("working on it"));
    assert!(s.pending.is_waiting(id), "the reply stays parked");
    let snapshot =
        s.h.engine
            .inspect_flow_instance("default", "Agent", "Main", alice)
            .await
            .unwrap();
    assert_eq!(snapshot.running.map(|r| r.0), Some(id), "still running");

    // What `POST /v1/invocations/{id}/result` will call.
    let done = send_message(&s.h, "done");
    s.pending
        .answer(id, Some(Outcome::Completed), vec![done])
        .unwrap();
    let out = egress(&mut s.h).await;
    assert_eq!(out.command.arguments.get("text"), Some("done"));
    assert_eq!(out.persona, alice);
    idle(&s, "alice").await;
    assert!(!s.pending.is_waiting(id));
    assert_eq!(
        s.pending.answer(id, Some(Outcome::Completed), vec![]),
        Err(UnknownInvocation(id))
    );
    assert!(s.h.dead.all().is_empty());
    assert_eq!(runner.count_rest(), 0);
    runner.stop().await;
}

#[actix_rt::test]
async fn a_client_error_is_not_retried() {
    let mut runner = TestRunner::start(&[], (400, "missing field `text`"));
    let s = setup(&runner.url, 3, "queue").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(
        dead.detail.contains("HTTP 400 Bad Request (not retried)"),
        "{}",
        dead.detail
    );
    assert!(!dead.detail.contains("missing field"), "{}", dead.detail);
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 1, "one POST only");
    runner.stop().await;
}

#[actix_rt::test]
async fn an_undecodable_answer_fails_at_once_without_quoting_it() {
    let mut runner = TestRunner::start(&[], (200, r#"{"v":1,"outcome":"finished"}"#));
    let s = setup(&runner.url, 3, "queue").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(
        dead.detail
            .contains("invalid result: not a result document"),
        "{}",
        dead.detail
    );
    assert!(!dead.detail.contains("finished"), "{}", dead.detail);
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 1, "the runner's fault: not retried");
    runner.stop().await;
}

#[actix_rt::test]
async fn an_unreachable_runner_is_retried_then_dead_lettered() {
    // A port nobody listens on: bound, then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = setup(&format!("http://{addr}/skill"), 2, "queue").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(dead.detail.contains("2 attempts"), "{}", dead.detail);
    assert!(dead.detail.contains("connection failed"), "{}", dead.detail);
    idle(&s, "alice").await;
}

#[actix_rt::test]
async fn a_runner_that_never_answers_times_out_each_attempt() {
    // Connections are queued by the kernel but never read or answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let s = setup_with_timeout(&format!("http://{addr}/skill"), 100, 2, "queue").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(dead.detail.contains("2 attempts"), "{}", dead.detail);
    assert!(
        dead.detail.contains("no answer within 100 ms"),
        "{}",
        dead.detail
    );
    idle(&s, "alice").await;
    drop(silent);
}

#[actix_rt::test]
async fn an_interrupted_invocation_is_forgotten_and_the_runner_told() {
    // 202: accepted, the answer comes later.
    let mut runner = TestRunner::start(&[], (202, ""));
    let s = setup(&runner.url, 3, "interrupt").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let first = runner.next().await.invocation_id();
    assert!(s.pending.is_waiting(first));
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    // The second invocation, and a cancel notice for the first, in either order.
    let (mut notices, mut invocations) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let r = runner.next().await;
        if r.json().get("kind").is_some() {
            notices.push(r);
        } else {
            invocations.push(r);
        }
    }
    let (notice, second) = (&notices[0], invocations[0].invocation_id());
    assert_eq!(
        notice.json(),
        serde_json::json!({"v": 1, "kind": "cancel", "invocation_id": first, "reason": "interrupted"})
    );
    assert!(notice.signed_with(SECRET), "signed like an invocation");
    assert_eq!(
        notice.headers["webhook-id"].to_str().unwrap(),
        format!("cancel-{first}")
    );
    assert_ne!(first, second);
    assert!(!s.pending.is_waiting(first), "cancel forgets the reply");
    assert!(s.pending.is_waiting(second));
    assert_eq!(
        s.pending.answer(first, Some(Outcome::Completed), vec![]),
        Err(UnknownInvocation(first))
    );
    s.pending
        .answer(second, Some(Outcome::Completed), vec![])
        .unwrap();
    idle(&s, "alice").await;
    assert!(s.h.dead.all().is_empty());
    assert!(s.pending.is_empty());
    runner.stop().await;
}

// ---- the egress policy ----

/// A resolver that answers from a table and records the names it was asked.
struct TableLookup {
    names: Vec<(&'static str, std::net::IpAddr)>,
    asked: Mutex<Vec<String>>,
}

impl Lookup for TableLookup {
    fn lookup(
        &self,
        host: &str,
    ) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<std::net::IpAddr>>> {
        self.asked.lock().unwrap().push(host.to_owned());
        let found: Vec<_> = self
            .names
            .iter()
            .filter(|(n, _)| *n == host)
            .map(|(_, ip)| *ip)
            .collect();
        Box::pin(async move { Ok(found) })
    }
}

fn table(names: Vec<(&'static str, &str)>) -> Arc<TableLookup> {
    Arc::new(TableLookup {
        names: names
            .into_iter()
            .map(|(n, ip)| (n, ip.parse().unwrap()))
            .collect(),
        asked: Mutex::new(Vec::new()),
    })
}

#[actix_rt::test]
async fn a_name_resolving_to_a_denied_address_is_refused_at_connect_time() {
    let mut runner = TestRunner::start(&[], (200, COMPLETED_HI));
    let port = runner.url.split(':').nth(2).unwrap().to_owned(); // "<port>/skill"
                                                                 // The name resolves to the metadata address when the runner connects (DNS rebinding).
    let lookup = table(vec![("metadata.test", "169.254.169.254")]);
    let client = Egress::with_lookup(loopback_allowed(), lookup.clone());
    let s = setup_with_egress(
        &format!("http://metadata.test:{port}"),
        5000,
        3,
        "queue",
        client,
    )
    .await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(
        dead.detail
            .contains("egress_denied: 169.254.169.254 is link-local"),
        "{}",
        dead.detail
    );
    assert!(
        !dead.detail.contains("attempts"),
        "a refusal is not retried: {}",
        dead.detail
    );
    idle(&s, "alice").await;
    assert_eq!(*lookup.asked.lock().unwrap(), vec!["metadata.test"]);
    assert_eq!(runner.count_rest(), 0, "nothing was sent");
    runner.stop().await;
}

#[actix_rt::test]
async fn a_name_resolving_to_an_allowed_address_is_reached() {
    let mut runner = TestRunner::start(&[], (200, COMPLETED_HI));
    let port = runner.url.split(':').nth(2).unwrap().to_owned();
    let lookup = table(vec![("runner.test", "127.0.0.1")]);
    let client = Egress::with_lookup(loopback_allowed(), lookup.clone());
    let mut s = setup_with_egress(
        &format!("http://runner.test:{port}"),
        5000,
        3,
        "queue",
        client,
    )
    .await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    assert!(runner.next().await.signed_with(SECRET));
    egress(&mut s.h).await;
    assert_eq!(*lookup.asked.lock().unwrap(), vec!["runner.test"]);
    runner.stop().await;
}

#[actix_rt::test]
async fn the_default_policy_denies_loopback() {
    let mut runner = TestRunner::start(&[], (200, COMPLETED_HI));
    // The runner's own URL is the literal 127.0.0.1: refused before sending.
    let s = setup_with_egress(
        &runner.url,
        5000,
        3,
        "queue",
        Egress::new(EgressPolicy::default()),
    )
    .await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert!(
        dead.detail.contains("egress_denied: 127.0.0.1 is loopback"),
        "{}",
        dead.detail
    );
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 0, "nothing was sent");

    // `localhost` too, judged when it resolves.
    let lookup = table(vec![("localhost", "127.0.0.1"), ("localhost", "::1")]);
    let port = runner.url.split(':').nth(2).unwrap().to_owned();
    let s = setup_with_egress(
        &format!("http://localhost:{port}"),
        5000,
        3,
        "queue",
        Egress::with_lookup(EgressPolicy::default(), lookup),
    )
    .await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert!(
        dead.detail.contains("egress_denied: 127.0.0.1 is loopback"),
        "{}",
        dead.detail
    );
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 0, "nothing was sent");
    runner.stop().await;
}

// ---- signing ----

#[actix_rt::test]
async fn during_the_overlap_both_secrets_verify_then_only_the_new_one() {
    let mut runner = TestRunner::start(&[], (200, r#"{"v":1,"outcome":"completed"}"#));
    let s = setup(&runner.url, 3, "queue").await;
    let (account, agent, flow) = (Idn::known("default"), name("Agent"), name("Main"));
    let now_ms = chrono::Utc::now().timestamp_millis();
    let rotated = |until_ms| FlowKeys {
        current: RunnerSecret::parse(OTHER_SECRET).unwrap(),
        previous: Some((RunnerSecret::parse(SECRET).unwrap(), until_ms)),
    };

    s.webhooks
        .keys()
        .set(&account, &agent, &flow, rotated(now_ms + 3_600_000));
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let during = runner.next().await;
    assert_eq!(during.signature().unwrap().split(' ').count(), 2);
    assert!(during.signed_with(OTHER_SECRET), "the new secret verifies");
    assert!(during.signed_with(SECRET), "the old secret verifies");
    idle(&s, "alice").await;

    // The overlap is over.
    s.webhooks
        .keys()
        .set(&account, &agent, &flow, rotated(now_ms - 1));
    s.h.submit(s.h.event("telegram", "bot", "user_message", "bob"))
        .await;
    let after = runner.next().await;
    assert_eq!(after.signature().unwrap().split(' ').count(), 1);
    assert!(after.signed_with(OTHER_SECRET));
    assert!(!after.signed_with(SECRET));
    idle(&s, "bob").await;

    // A flow without a secret sends nothing unsigned.
    s.webhooks.keys().remove(&account, &agent, &flow);
    s.h.submit(s.h.event("telegram", "bot", "user_message", "carol"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert!(
        dead.detail
            .contains("the flow has no webhook signing secret"),
        "{}",
        dead.detail
    );
    idle(&s, "carol").await;
    assert_eq!(runner.count_rest(), 0);
    runner.stop().await;
}
