//! Webhook skill runners over real HTTP: a test runner (actix-web on 127.0.0.1, port 0)
//! records every POST into a channel and answers from a script. The engine is the real one,
//! with a runner registry that resolves `{kind: webhook}`.

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
use switchboard::egress::OutboundCommand;
use switchboard::skill_runner::pending::{PendingInvocations, UnknownInvocation};
use switchboard::skill_runner::webhook::{verify, WebhookRunners, WebhookSettings};
use switchboard::skill_runner::Outcome;
use switchboard::wire::invocation::InvocationWire;
use tokio::sync::mpsc;
use uuid::Uuid;

const SECRET: &[u8] = b"webhook test secret";
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
    signature: Option<String>,
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

    fn signed_with(&self, secret: &[u8]) -> bool {
        let header = self
            .signature
            .as_deref()
            .expect("X-Switchboard-Signature is set");
        verify(
            secret,
            header,
            &self.body,
            chrono::Utc::now().timestamp(),
            300,
        )
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
        signature: header("x-switchboard-signature"),
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

async fn setup_with_timeout(
    url: &str,
    timeout_ms: u64,
    max_attempts: u32,
    interrupt_mode: &str,
) -> Setup {
    let pending = Arc::new(PendingInvocations::default());
    let webhooks = WebhookRunners::new(
        WebhookSettings::new(SECRET)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(40)),
        pending.clone(),
    );
    // The default engine, whose registry also resolves webhook runners.
    let h = Harness::builder().webhooks(&webhooks).start();
    h.connector("telegram", "bot");
    h.flow(
        "Agent",
        "Main",
        &format!(
            "runner: {{kind: webhook, url: '{url}', timeout_ms: {timeout_ms}, max_attempts: {max_attempts}}}\n\
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

async fn egress(h: &mut Harness) -> OutboundCommand {
    within("a command at egress", WAIT, h.egress.recv())
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
    assert!(req.signed_with(SECRET), "signature {:?}", req.signature);
    assert!(!req.signed_with(b"another secret"));
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
async fn a_runner_failing_every_attempt_dead_letters_the_event_with_its_answer() {
    let mut runner = TestRunner::start(&[], (500, "kaput: database on fire"));
    let s = setup(&runner.url, 3, "queue").await;
    let event = s.h.event("telegram", "bot", "user_message", "alice");
    let event_id = event.id;
    s.h.submit(event).await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(dead.detail.contains("3 attempts"), "{}", dead.detail);
    assert!(dead.detail.contains("500"), "{}", dead.detail);
    assert!(
        dead.detail.contains("kaput: database on fire"),
        "{}",
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
    assert!(dead.detail.contains("400"), "{}", dead.detail);
    assert!(
        dead.detail.contains("missing field `text`"),
        "{}",
        dead.detail
    );
    assert!(dead.detail.contains("not retried"), "{}", dead.detail);
    idle(&s, "alice").await;
    assert_eq!(runner.count_rest(), 1, "one POST only");
    runner.stop().await;
}

#[actix_rt::test]
async fn an_undecodable_answer_fails_at_once_quoting_the_decode_error() {
    let mut runner = TestRunner::start(&[], (200, r#"{"v":1,"outcome":"finished"}"#));
    let s = setup(&runner.url, 3, "queue").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let dead = dead_letter(&s.h).await;
    assert_eq!(dead.reason.code(), "runner_failed");
    assert!(dead.detail.contains("invalid result"), "{}", dead.detail);
    assert!(dead.detail.contains("finished"), "{}", dead.detail);
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
async fn an_interrupted_invocation_is_forgotten() {
    // 202: accepted, the answer comes later.
    let mut runner = TestRunner::start(&[], (202, ""));
    let s = setup(&runner.url, 3, "interrupt").await;
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let first = runner.next().await.invocation_id();
    assert!(s.pending.is_waiting(first));
    s.h.submit(s.h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let second = runner.next().await.invocation_id();
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
