//! Webhook skill runners: each invocation is POSTed as JSON ([`InvocationWire`]) to the flow's
//! URL, signed with HMAC-SHA256 (`X-Switchboard-Signature: t=<unix seconds>,v1=<hex>` over
//! `"<t>.<body>"`, see [`sign`] and [`verify`]). The runner answers inline with a
//! [`crate::wire::invocation::ResultWire`] (an outcome and commands), or `pending` / `202` / an empty body and later
//! through `POST /v1/invocations/{id}/result`, which reaches the reply parked in
//! [`PendingInvocations`].
//!
//! Failures the runner may recover from (5xx, 429, connection errors, timeouts) are retried
//! with capped exponential backoff and full jitter, up to the flow's `max_attempts` attempts;
//! after the last one the invocation fails with the runner's last answer as the reason, and
//! the engine dead-letters it (`runner_failed`). Other answers (4xx, a 2xx body that does not
//! decode) fail at once. Once the reply has left [`PendingInvocations`] (answered through
//! `/result`, or given up by the engine) the task stops and reports nothing.
//!
//! [`WebhookRunners`] is the shared factory: one HTTP client, the signing secret, backoff
//! settings and the pending table. Runners it makes are cheap handles on
//! it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use dashmap::DashMap;

use rustc_hash::FxBuildHasher;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;

mod answer;
mod signing;

use answer::{describe_error, judge, Verdict};
pub use signing::{sign, verify};

use super::pending::PendingInvocations;
use super::{Handoff, Invocation, Outcome, Reply, SkillRunner};

use crate::wire::invocation::{InvocationWire, RunnerAnswer};

/// The header carrying the invocation id.
pub const INVOCATION_HEADER: &str = "X-Switchboard-Invocation";
/// The header carrying the signature, `t=<unix seconds>,v1=<hex hmac-sha256>`.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";
/// How much of a failed answer's body goes into the failure reason.
pub const REASON_BODY_BYTES: usize = 512;
/// The largest inline answer read; a larger one fails the invocation (the runner's fault).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The shared factory of webhook runners.
#[derive(Clone)]
pub struct WebhookRunners {
    shared: Arc<Shared>,
}

struct Shared {
    client: reqwest::Client,
    secret: Vec<u8>,
    backoff: ExponentialBuilder,
    max_backoff: Duration,
    pending: Arc<PendingInvocations>,
    /// Tasks still posting, by invocation id, so `cancel` can stop them.
    in_flight: DashMap<Uuid, AbortHandle, FxBuildHasher>,
}

impl fmt::Debug for WebhookRunners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRunners")
            .field("secret", &"<redacted>")
            .field("backoff", &self.shared.backoff)
            .field("in_flight", &self.shared.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// The factory's settings: the signing secret and the backoff between attempts.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The HMAC-SHA256 key invocations are signed with.
    pub secret: Vec<u8>,
    /// The first delay between attempts; each next one doubles, up to `max_backoff`. Each
    /// delay is drawn uniformly from zero to that (full jitter).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl WebhookSettings {
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

    /// Signing with `secret`, with the default backoff (100 ms doubling up to 5 s).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        WebhookSettings {
            secret: secret.into(),
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
        }
    }

    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("secret", &"<redacted>")
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

impl WebhookRunners {
    /// A factory with its own HTTP client (no redirects followed: a signed invocation goes to
    /// the URL the flow names, nowhere else), parking replies in `pending`.
    pub fn new(settings: WebhookSettings, pending: Arc<PendingInvocations>) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Self::with_client(client, settings, pending)
    }

    /// As [`WebhookRunners::new`] with the given HTTP client.
    pub fn with_client(
        client: reqwest::Client,
        settings: WebhookSettings,
        pending: Arc<PendingInvocations>,
    ) -> Self {
        let max_backoff = settings.max_backoff.max(settings.initial_backoff);
        WebhookRunners {
            shared: Arc::new(Shared {
                client,
                secret: settings.secret,
                backoff: backoff(settings.initial_backoff, max_backoff),
                max_backoff,
                pending,
                in_flight: DashMap::default(),
            }),
        }
    }

    /// The table replies wait in for a later answer (`/v1/invocations/{id}/result`).
    pub fn pending(&self) -> &Arc<PendingInvocations> {
        &self.shared.pending
    }

    /// Invocations whose POST (or retry) is still under way.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.len()
    }

    /// A runner POSTing to `url`, each attempt under `timeout`, at most `max_attempts`
    /// attempts (at least one).
    pub fn runner(&self, url: &str, timeout: Duration, max_attempts: u32) -> Arc<dyn SkillRunner> {
        Arc::new(WebhookRunner {
            shared: self.shared.clone(),
            target: Arc::new(Target {
                url: url.to_owned(),
                timeout,
                max_attempts: max_attempts.max(1),
            }),
        })
    }
}

fn backoff(initial: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(initial)
        .with_max_delay(max.max(initial))
        .with_factor(2.0)
        .without_max_times()
}

/// Full jitter: a delay drawn uniformly from `[0, d]`. (backon's own jitter adds to the
/// delay, `[d, 2d)`, which keeps retries of a fleet in step.)
fn full_jitter(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

#[derive(Debug)]
struct Target {
    url: String,
    timeout: Duration,
    max_attempts: u32,
}

/// One webhook runner: a flow's URL, attempt timeout and attempts, on the shared factory.
pub struct WebhookRunner {
    shared: Arc<Shared>,
    target: Arc<Target>,
}

/// Removes the task's entry from `in_flight` when the task ends, however it ends.
struct InFlightGuard {
    shared: Arc<Shared>,
    id: Uuid,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.shared.in_flight.remove(&self.id);
    }
}

impl SkillRunner for WebhookRunner {
    fn invoke(&self, invocation: Invocation, reply: Reply, handoff: Handoff) {
        let id = invocation.id;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            reply.finish(
                Outcome::Failed {
                    reason: "the webhook runner was called outside a tokio runtime".into(),
                },
                Vec::new(),
            );
            return;
        };
        // Parked before the POST: an answer through /result may beat the inline one.
        self.shared.pending.park(invocation.account.clone(), reply);
        let guard = InFlightGuard {
            shared: self.shared.clone(),
            id,
        };
        let (go, started) = oneshot::channel::<()>();
        let shared = self.shared.clone();
        let target = self.target.clone();
        let task = rt.spawn(async move {
            let _guard = guard;
            // Waits until the abort handle is registered, so the guard removes it.
            if started.await.is_ok() {
                run(&shared, &target, invocation).await;
                // The runner answered (or failed for good): the event is handed over.
                handoff.done();
            }
        });
        self.shared.in_flight.insert(id, task.abort_handle());
        let _ = go.send(());
    }

    fn wants_session(&self) -> bool {
        true
    }

    fn cancel(&self, invocation_id: Uuid) {
        self.shared.pending.forget(invocation_id);
        if let Some((_, task)) = self.shared.in_flight.remove(&invocation_id) {
            task.abort();
        }
    }
}

async fn run(shared: &Shared, target: &Target, invocation: Invocation) {
    let id = invocation.id;
    let deadline = Instant::now() + invocation.timeout;
    let body = serde_json::to_vec(&InvocationWire::from_domain(&invocation))
        .expect("invocations serialize");
    drop(invocation);

    let mut delays = shared.backoff.build();
    let mut last = None;
    let mut attempts = 0;
    for attempt in 1..=target.max_attempts {
        if !shared.pending.is_waiting(id) {
            tracing::debug!(invocation_id = %id, attempt, "webhook invocation answered or given up; not posting");
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        attempts = attempt;
        let verdict = post(shared, target, id, &body, target.timeout.min(remaining)).await;
        tracing::debug!(invocation_id = %id, attempt, verdict = ?verdict_kind(&verdict), "webhook attempt");
        match verdict {
            Verdict::Answer(answer) => {
                deliver(shared, id, answer);
                return;
            }
            Verdict::Pending => return,
            Verdict::Fail(reason) => {
                fail(shared, id, reason);
                return;
            }
            Verdict::Retry(what) => last = Some(what),
        }
        if attempt < target.max_attempts {
            let delay = full_jitter(delays.next().unwrap_or(shared.max_backoff));
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(delay.min(remaining)).await;
        }
    }
    let reason = match last {
        Some(last) => format!(
            "webhook runner failed after {attempts} attempt{}; last answer: {last}",
            if attempts == 1 { "" } else { "s" }
        ),
        None => "the invocation deadline passed before the webhook runner was reached".into(),
    };
    fail(shared, id, reason);
}

fn verdict_kind(v: &Verdict) -> &'static str {
    match v {
        Verdict::Answer(a) if a.outcome.is_some() => "answered",
        Verdict::Answer(_) | Verdict::Pending => "pending",
        Verdict::Retry(_) => "retry",
        Verdict::Fail(_) => "failed",
    }
}

fn deliver(shared: &Shared, id: Uuid, answer: RunnerAnswer) {
    let final_answer = answer.outcome.is_some();
    let commands = answer.commands.len();
    if shared
        .pending
        .answer(id, answer.outcome, answer.commands)
        .is_err()
    {
        // Answered through /result meanwhile, or given up by the engine.
        tracing::debug!(invocation_id = %id, final_answer, commands, "webhook answer for an invocation no longer waiting; dropped");
    }
}

fn fail(shared: &Shared, id: Uuid, reason: String) {
    tracing::debug!(invocation_id = %id, reason = %reason, "webhook invocation failed");
    let _ = shared
        .pending
        .answer(id, Some(Outcome::Failed { reason }), Vec::new());
}

async fn post(
    shared: &Shared,
    target: &Target,
    id: Uuid,
    body: &[u8],
    timeout: Duration,
) -> Verdict {
    let signature = sign(&shared.secret, chrono::Utc::now().timestamp(), body);
    let sent = shared
        .client
        .post(&target.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(INVOCATION_HEADER, id.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) if e.is_builder() => return Verdict::Fail(describe_error(&e, timeout)),
        Err(e) => return Verdict::Retry(describe_error(&e, timeout)),
    };
    let status = response.status();
    let cap = if status.is_success() {
        MAX_ANSWER_BYTES
    } else {
        REASON_BODY_BYTES
    };
    let mut answer = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap + 1 - answer.len();
                answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if answer.len() > cap {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if status.is_success() => return Verdict::Retry(describe_error(&e, timeout)),
            // The status says enough.
            Err(_) => break,
        }
    }
    tracing::debug!(invocation_id = %id, status = status.as_u16(), body = %String::from_utf8_lossy(&answer), "webhook answer");
    judge(status, &answer, truncated)
}

#[cfg(test)]
mod tests {
    use super::answer::describe_answer;
    use super::*;
    use reqwest::StatusCode;

    const SECRET: &[u8] = b"shh";

    #[test]
    fn signatures_verify_and_refuse_tampering() {
        let body = br#"{"v":1}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert!(verify(SECRET, &header, body, 1_700_000_000, 300));
        assert!(verify(SECRET, &header, body, 1_700_000_299, 300));
        assert!(!verify(SECRET, &header, body, 1_700_000_301, 300), "stale");
        assert!(!verify(SECRET, &header, body, 1_699_999_699, 300), "future");
        assert!(!verify(b"other", &header, body, 1_700_000_000, 300));
        assert!(!verify(SECRET, &header, br#"{"v":2}"#, 1_700_000_000, 300));
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert!(!verify(SECRET, &moved, body, 1_700_000_000, 300));
        // Another scheme and a second v1 (key rotation) are tolerated.
        let rotated = format!(
            "{},v0=zz,v1={}",
            sign(b"old", 1_700_000_000, body),
            &header["t=1700000000,v1=".len()..]
        );
        assert!(verify(SECRET, &rotated, body, 1_700_000_000, 300));
        for bad in [
            "",
            "v1=00",
            "t=x,v1=00",
            "t=1700000000",
            "t=1700000000,v1=nothex",
            "t=1,t=1700000000,v1=00",
            "garbage",
        ] {
            assert!(!verify(SECRET, bad, body, 1_700_000_000, 300), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_below() {
        let delays: Vec<_> = backoff(Duration::from_millis(100), Duration::from_secs(1))
            .build()
            .take(6)
            .collect();
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        for d in delays {
            for _ in 0..50 {
                assert!(full_jitter(d) <= d);
            }
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn answers_are_judged_by_status_and_body() {
        let completed = br#"{"v":1,"outcome":"completed","commands":[{"v":1,"integration_idn":"telegram","connector_idn":"bot","command_idn":"send_message","arguments":{"text":"hi"}}]}"#;
        match judge(StatusCode::OK, completed, false) {
            Verdict::Answer(a) => {
                assert_eq!(a.outcome, Some(Outcome::Completed));
                assert_eq!(a.commands.len(), 1);
            }
            v => panic!("{v:?}"),
        }
        match judge(StatusCode::OK, br#"{"v":1,"outcome":"pending"}"#, false) {
            Verdict::Answer(a) => assert_eq!(a.outcome, None),
            v => panic!("{v:?}"),
        }
        match judge(
            StatusCode::OK,
            br#"{"v":1,"outcome":"failed","reason":"no"}"#,
            false,
        ) {
            Verdict::Answer(a) => assert_eq!(
                a.outcome,
                Some(Outcome::Failed {
                    reason: "no".into()
                })
            ),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            judge(StatusCode::OK, b" \n", false),
            Verdict::Pending
        ));
        assert!(matches!(
            judge(StatusCode::ACCEPTED, b"queued", false),
            Verdict::Pending
        ));
        assert!(matches!(
            judge(StatusCode::NO_CONTENT, b"", false),
            Verdict::Pending
        ));
        match judge(StatusCode::OK, b"{\"v\":1,\"outcome\":\"done\"}", false) {
            Verdict::Fail(r) => {
                assert!(r.contains("invalid result"), "{r}");
                assert!(r.contains("unknown variant `done`"), "{r}");
            }
            v => panic!("{v:?}"),
        }
        match judge(StatusCode::OK, br#"{"v":2,"outcome":"completed"}"#, false) {
            Verdict::Fail(r) => assert!(r.contains("unsupported envelope version 2"), "{r}"),
            v => panic!("{v:?}"),
        }
        match judge(StatusCode::OK, b"{", true) {
            Verdict::Fail(r) => assert!(r.contains("larger than"), "{r}"),
            v => panic!("{v:?}"),
        }
        for status in [500, 502, 503, 429] {
            let s = StatusCode::from_u16(status).unwrap();
            match judge(s, b"kaput", false) {
                Verdict::Retry(r) => {
                    assert!(r.starts_with(&format!("HTTP {status}")), "{r}");
                    assert!(r.ends_with(": kaput"), "{r}");
                }
                v => panic!("{status}: {v:?}"),
            }
        }
        for status in [400, 401, 404, 410, 302] {
            let s = StatusCode::from_u16(status).unwrap();
            match judge(s, b"", false) {
                Verdict::Fail(r) => {
                    assert!(r.contains(&format!("HTTP {status}")), "{r}");
                    assert!(r.contains("(empty body)"), "{r}");
                    assert!(r.contains("not retried"), "{r}");
                }
                v => panic!("{status}: {v:?}"),
            }
        }
    }

    #[test]
    fn failure_reasons_keep_the_first_512_bytes_of_the_body() {
        let body = "é".repeat(400); // 800 bytes; byte 512 falls inside a character
        let r = describe_answer(StatusCode::INTERNAL_SERVER_ERROR, body.as_bytes());
        let text = r.strip_prefix("HTTP 500 Internal Server Error: ").unwrap();
        assert_eq!(text, "é".repeat(256));
        let body = "x".repeat(600);
        let r = describe_answer(StatusCode::BAD_GATEWAY, body.as_bytes());
        assert!(r.ends_with(&"x".repeat(512)) && !r.ends_with(&"x".repeat(513)));
    }

    #[test]
    fn the_registry_resolves_webhooks_only_with_a_factory() {
        use crate::domain::RunnerSpec;
        use crate::skill_runner::in_process::FnRunner;
        use crate::skill_runner::{RunnerRegistry, RunnerResolver};

        let spec = RunnerSpec::Webhook {
            url: "http://127.0.0.1:9/skill".into(),
            timeout: Duration::from_secs(1),
            max_attempts: 3,
        };
        let plain = RunnerRegistry::new(Arc::new(FnRunner::completing()));
        assert_eq!(
            plain.resolve(&spec).err().map(|e| e.0).as_deref(),
            Some("webhook runners are not enabled")
        );
        let factory = WebhookRunners::new(
            WebhookSettings::new(SECRET),
            Arc::new(PendingInvocations::default()),
        );
        let with = plain.with_webhooks(factory);
        assert!(with.resolve(&spec).is_ok());
        assert!(with.resolve(&RunnerSpec::Default).is_ok());
        assert!(with.webhooks().is_some());
        assert!(with.resolve(&RunnerSpec::Queue).is_err());
    }
}
