//! Webhook skill runners: each invocation is POSTed as JSON ([`InvocationWire`]) to the flow's
//! URL with the outbound toolkit's [`Egress::send`] (under the egress policy, no redirect
//! followed, the answer read up to [`MAX_ANSWER_BYTES`]) and signed per Standard Webhooks by its
//! [`crate::outbound::Signer`] with the flow's own secret ([`keys`]: `webhook-id` is the
//! invocation id, `webhook-timestamp` the Unix seconds, `webhook-signature` one `v1,<base64>`
//! per live secret).
//! The runner answers inline with a [`crate::wire::invocation::ResultWire`] (an outcome and
//! commands), or `pending` / `202` / an empty body and later through
//! `POST /v1/invocations/{id}/result`, which reaches the reply parked in [`PendingInvocations`].
//!
//! Failures the runner may recover from (5xx, 429, connection errors, timeouts) are retried
//! with the toolkit's [`crate::outbound::retry`]: capped exponential backoff and full jitter (a
//! `Retry-After` the runner sends is
//! honoured, clamped to the backoff's cap) for the flow's `retry_for` (one hour unless the flow
//! says otherwise; each retry moves the invocation's deadline to cover the next attempt, so
//! the flow instance's queue waits),
//! and at most `max_attempts` attempts when the flow sets it; then the invocation fails with
//! the last answer's status as the reason, and the engine dead-letters it (`runner_failed`).
//! Other answers (3xx, 4xx, a 2xx body that does not decode, an address the egress policy
//! denies, a flow without a secret) fail at once. HTTP 410 disables the runner: the invocation
//! ends [`Outcome::RunnerGone`] (the flow instance tells the flow with a `runner_disabled`
//! system event) and later ones fail unsent until the flow is stored again. Every attempt is
//! counted by result (`switchboard_runner_attempts_total`: the runner's health). Once
//! the reply has left [`PendingInvocations`] (answered through `/result`, or given up by the
//! engine) the task stops and reports nothing.
//!
//! [`WebhookRunners`] is the shared factory: the egress client, the flows' keys, backoff
//! settings and the pending table. Runners it makes are cheap handles on it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};
use rustc_hash::FxBuildHasher;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;

mod answer;
pub mod keys;

use answer::{judge, Verdict};
pub use keys::{FlowKeys, RunnerKeys, RunnerSecret};

use super::pending::PendingInvocations;
use super::{Handoff, Invocation, Outcome, Reply, SkillRunner};

use crate::domain::{Idn, Name};
use crate::outbound::{masked_url, Backoff, Egress, OutboundRequest, SendError, SendOptions};
use crate::telemetry::handles;
use crate::wire::invocation::{CancelNoticeWire, InvocationWire, RunnerAnswer};

/// The header carrying the invocation id.
pub const INVOCATION_HEADER: &str = "X-Switchboard-Invocation";
/// Standard Webhooks' headers: the message id (the invocation id, the same on every attempt),
/// its Unix time in seconds, and the signatures.
pub use crate::outbound::signing::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};
/// How much of a failed answer's body the debug log shows (the failure reason shows none).
pub const LOGGED_BODY_BYTES: usize = 512;
/// The largest inline answer read; a larger one fails the invocation (the runner's fault).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The shared factory of webhook runners.
#[derive(Clone)]
pub struct WebhookRunners {
    shared: Arc<Shared>,
}

struct Shared {
    egress: Egress,
    keys: Arc<RunnerKeys>,
    backoff: Backoff,
    pending: Arc<PendingInvocations>,
    /// Tasks still posting, by invocation id, so `cancel` can stop them.
    in_flight: DashMap<Uuid, AbortHandle, FxBuildHasher>,
}

impl fmt::Debug for WebhookRunners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRunners")
            .field("egress", &self.shared.egress)
            .field("backoff", &self.shared.backoff)
            .field("in_flight", &self.shared.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// The factory's settings: the backoff between attempts.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The first delay between attempts; each next one doubles, up to `max_backoff`. Each
    /// delay is drawn uniformly from zero to that (full jitter).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl WebhookSettings {
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

    /// The default backoff (100 ms doubling up to 5 s).
    pub fn new() -> Self {
        WebhookSettings {
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

impl Default for WebhookSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookRunners {
    /// A factory posting through `egress` (which follows no redirect: a signed invocation goes
    /// to the URL the flow names, nowhere else), with an empty key table, parking replies in
    /// `pending`.
    pub fn new(
        settings: WebhookSettings,
        egress: Egress,
        pending: Arc<PendingInvocations>,
    ) -> Self {
        WebhookRunners {
            shared: Arc::new(Shared {
                egress,
                keys: Arc::new(RunnerKeys::default()),
                backoff: Backoff::new(settings.initial_backoff, settings.max_backoff),
                pending,
                in_flight: DashMap::default(),
            }),
        }
    }

    /// The flows' signing keys: a flow without keys has its invocations failed, unsent.
    pub fn keys(&self) -> &Arc<RunnerKeys> {
        &self.shared.keys
    }

    /// The table replies wait in for a later answer (`/v1/invocations/{id}/result`).
    pub fn pending(&self) -> &Arc<PendingInvocations> {
        &self.shared.pending
    }

    /// Invocations whose POST (or retry) is still under way.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.len()
    }

    /// A runner POSTing to `url`, each attempt under `timeout`, retrying for `retry_for`, at
    /// most `max_attempts` attempts (at least one) when given.
    pub fn runner(
        &self,
        url: &str,
        timeout: Duration,
        max_attempts: Option<u32>,
        retry_for: Duration,
    ) -> Arc<dyn SkillRunner> {
        Arc::new(WebhookRunner {
            shared: self.shared.clone(),
            target: Arc::new(Target {
                url: url.to_owned(),
                timeout,
                max_attempts: max_attempts.map(|n| n.max(1)),
                retry_for,
                gone: Default::default(),
            }),
        })
    }
}

#[derive(Debug)]
struct Target {
    url: String,
    timeout: Duration,
    max_attempts: Option<u32>,
    retry_for: Duration,
    /// Set once the runner answered HTTP 410.
    gone: std::sync::atomic::AtomicBool,
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
        let notice = CancelTo {
            egress: self.shared.egress.clone(),
            keys: self.shared.keys.clone(),
            target: self.target.clone(),
            flow: (
                invocation.account.clone(),
                invocation.agent.clone(),
                invocation.flow.clone(),
            ),
            id,
        };
        let notice_rt = rt.clone();
        self.shared.pending.park_with(
            invocation.account.clone(),
            reply,
            Some(Box::new(move |reason| {
                notice_rt.spawn(notice.send(reason));
            })),
            None,
        );
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
                // Revoked while it waited for this task (the daemon was stopped past its
                // partition's lease): not sent; the partition's owner invokes it.
                if handoff.revoked() {
                    let _ = shared.pending.answer(id, Some(Outcome::Fenced), Vec::new());
                    handoff.give_up();
                    return;
                }
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

    fn cancel(&self, invocation_id: Uuid, reason: &'static str) {
        if let Some((_, task)) = self.shared.in_flight.remove(&invocation_id) {
            task.abort();
        }
        // The runner may hold it (answered pending, or the POST was under way): tell it.
        self.shared.pending.cancel(invocation_id, reason);
    }
}

/// What a cancel notice needs: where the invocation went and the flow's keys to sign with.
struct CancelTo {
    egress: Egress,
    keys: Arc<RunnerKeys>,
    target: Arc<Target>,
    flow: (Idn, Name, Name),
    id: Uuid,
}

impl CancelTo {
    /// POSTs the notice once (best effort: a runner that misses it has its later answer
    /// refused, as for any invocation no longer waiting).
    async fn send(self, reason: &'static str) {
        let body =
            serde_json::to_vec(&CancelNoticeWire::new(self.id, reason)).expect("notices serialize");
        let message_id = format!("cancel-{}", self.id);
        let request = signed_post(
            &self.keys,
            &self.target.url,
            &self.flow,
            (self.id, &message_id),
            body.into(),
        );
        let sent = match request {
            Ok(request) => self
                .egress
                .send(request, &options(self.target.timeout, 0))
                .await
                .is_ok_and(|sent| sent.status.is_success()),
            Err(_) => false,
        };
        tracing::debug!(invocation_id = %self.id, reason, sent, "cancel notice to the webhook runner");
        handles::cancel_notice("webhook", if sent { "sent" } else { "failed" });
    }
}

async fn run(shared: &Shared, target: &Target, invocation: Invocation) {
    let id = invocation.id;
    let started = Instant::now();
    // The first attempt has the invocation's timeout; retries move the deadline (below).
    let mut deadline = started + invocation.timeout;
    let retry_until = started + target.retry_for;
    let body: Bytes = serde_json::to_vec(&InvocationWire::from_domain(&invocation))
        .expect("invocations serialize")
        .into();
    let flow = (invocation.account, invocation.agent, invocation.flow);
    if target.gone.load(std::sync::atomic::Ordering::Relaxed) {
        fail(
            shared,
            id,
            "the webhook runner is disabled: it answered HTTP 410 Gone; store the flow again to enable it".into(),
        );
        return;
    }

    let mut delays = shared.backoff.steps();
    let mut last = None;
    let mut attempts = 0;
    loop {
        if !shared.pending.is_waiting(id) {
            tracing::debug!(invocation_id = %id, attempts, "webhook invocation answered or given up; not posting");
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        attempts += 1;
        let verdict = post(
            shared,
            target,
            (id, &flow),
            &body,
            target.timeout.min(remaining),
        )
        .await;
        let kind = verdict_kind(&verdict);
        handles::runner_attempt(flow.1.as_str(), flow.2.as_str(), kind);
        tracing::debug!(invocation_id = %id, attempt = attempts, verdict = kind, "webhook attempt");
        let retry_after = match verdict {
            Verdict::Answer(answer) => {
                deliver(shared, id, answer);
                return;
            }
            Verdict::Pending => return,
            Verdict::Fail(reason) => {
                fail(shared, id, reason);
                return;
            }
            Verdict::Gone => {
                target
                    .gone
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = shared.pending.answer(
                    id,
                    Some(Outcome::RunnerGone {
                        reason: "the webhook runner answered HTTP 410 Gone; it is disabled".into(),
                    }),
                    Vec::new(),
                );
                return;
            }
            Verdict::Retry(what, retry_after) => {
                last = Some(what);
                retry_after
            }
        };
        if target.max_attempts.is_some_and(|max| attempts >= max) {
            break;
        }
        let delay = shared
            .backoff
            .delay(retry_after, delays.next().unwrap_or(shared.backoff.max));
        let next = Instant::now() + delay;
        if next >= retry_until {
            break;
        }
        // The next attempt gets its own timeout: the flow instance waits that long.
        deadline = deadline.max(next + target.timeout);
        shared.pending.retrying(id, deadline);
        tokio::time::sleep(delay).await;
    }
    let reason = match last {
        Some(last) => format!(
            "webhook runner failed after {attempts} attempt{}; last: {last}",
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
        Verdict::Retry(..) => "retry",
        Verdict::Fail(_) => "failed",
        Verdict::Gone => "gone",
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

/// How an invocation (or a cancel notice) is sent: within `timeout`, at most `cap` bytes of the
/// answer read, no redirect followed (a signed invocation goes to the URL the flow names,
/// nowhere else).
fn options(timeout: Duration, cap: usize) -> SendOptions {
    SendOptions {
        timeout,
        verify_tls: true,
        max_redirects: 0,
        max_response_bytes: cap,
    }
}

/// A JSON POST of `body` to `url`, signed with the flow's keys as message `message_id` about
/// invocation `id`; why not, when it cannot be made.
fn signed_post(
    keys: &RunnerKeys,
    url: &str,
    (account, agent, flow): &(Idn, Name, Name),
    (id, message_id): (Uuid, &str),
    body: Bytes,
) -> Result<OutboundRequest, String> {
    let keys = keys
        .get(account, agent, flow)
        .ok_or("the flow has no webhook signing secret")?;
    let url = Url::parse(url).map_err(|_| "the runner URL is not usable")?;
    let mut request = OutboundRequest::new(Method::POST, url);
    let now = chrono::Utc::now();
    keys.signer(now.timestamp_millis())
        .sign(&mut request.headers, message_id, now.timestamp(), &body)
        .map_err(|_| "the invocation could not be signed")?;
    let headers = &mut request.headers;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        INVOCATION_HEADER,
        HeaderValue::from_str(&id.to_string()).expect("a UUID is a header value"),
    );
    request.body = body;
    Ok(request)
}

async fn post(
    shared: &Shared,
    target: &Target,
    (id, flow): (Uuid, &(Idn, Name, Name)),
    body: &Bytes,
    timeout: Duration,
) -> Verdict {
    let request = match signed_post(
        &shared.keys,
        &target.url,
        flow,
        (id, &id.to_string()),
        body.clone(),
    ) {
        Ok(request) => request,
        Err(reason) => return Verdict::Fail(reason),
    };
    let sent = match shared
        .egress
        .send(request, &options(timeout, MAX_ANSWER_BYTES))
        .await
    {
        Ok(sent) => sent,
        Err(e) => {
            tracing::debug!(invocation_id = %id, url = %masked_url(&target.url), error = %e, "webhook request failed");
            // The reason is the toolkit's own text: the kind of failure, or the policy's refusal.
            return match e {
                SendError::Denied(_) | SendError::Redirect(_) => Verdict::Fail(e.to_string()),
                SendError::Timeout(_) | SendError::Connect | SendError::Failed => {
                    Verdict::Retry(e.to_string(), None)
                }
            };
        }
    };
    let logged = if sent.status.is_success() {
        sent.body.len()
    } else {
        sent.body.len().min(LOGGED_BODY_BYTES)
    };
    tracing::debug!(invocation_id = %id, status = sent.status.as_u16(), body = %String::from_utf8_lossy(&sent.body[..logged]), "webhook answer");
    let retry_after = sent.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
    judge(sent.status, retry_after, &sent.body, sent.truncated)
}

#[cfg(test)]
mod tests {
    use super::answer::describe_answer;
    use super::*;
    use crate::outbound::EgressPolicy;
    use reqwest::StatusCode;

    #[test]
    fn gone_disables_and_retry_after_is_read_in_seconds_or_as_a_date() {
        assert!(matches!(
            judge(StatusCode::GONE, None, b"", false),
            Verdict::Gone
        ));
        match judge(StatusCode::SERVICE_UNAVAILABLE, Some("7"), b"", false) {
            Verdict::Retry(_, after) => assert_eq!(after, Some(Duration::from_secs(7))),
            v => panic!("{v:?}"),
        }
        let in_a_minute = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        match judge(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&in_a_minute),
            b"",
            false,
        ) {
            Verdict::Retry(_, Some(after)) => {
                assert!(after > Duration::from_secs(55) && after <= Duration::from_secs(60))
            }
            v => panic!("{v:?}"),
        }
        match judge(StatusCode::SERVICE_UNAVAILABLE, Some("soon"), b"", false) {
            Verdict::Retry(_, after) => assert_eq!(after, None, "unreadable: the backoff's"),
            v => panic!("{v:?}"),
        }
        // The wait itself (the runner's wish up to the cap, else the jittered step) is the
        // toolkit's: `outbound::retry`'s tests.
    }

    #[test]
    fn answers_are_judged_by_status_and_body() {
        let completed = br#"{"v":1,"outcome":"completed","commands":[{"v":1,"integration_idn":"telegram","connector_idn":"bot","command_idn":"send_message","arguments":{"text":"hi"}}]}"#;
        match judge(StatusCode::OK, None, completed, false) {
            Verdict::Answer(a) => {
                assert_eq!(a.outcome, Some(Outcome::Completed));
                assert_eq!(a.commands.len(), 1);
            }
            v => panic!("{v:?}"),
        }
        match judge(
            StatusCode::OK,
            None,
            br#"{"v":1,"outcome":"pending"}"#,
            false,
        ) {
            Verdict::Answer(a) => assert_eq!(a.outcome, None),
            v => panic!("{v:?}"),
        }
        match judge(
            StatusCode::OK,
            None,
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
            judge(StatusCode::OK, None, b" \n", false),
            Verdict::Pending
        ));
        assert!(matches!(
            judge(StatusCode::ACCEPTED, None, b"queued", false),
            Verdict::Pending
        ));
        assert!(matches!(
            judge(StatusCode::NO_CONTENT, None, b"", false),
            Verdict::Pending
        ));
        match judge(StatusCode::OK, None, b"{\"v\":1,\"outcome\":\"done\"}", false) {
            Verdict::Fail(r) => assert_eq!(
                r,
                "the webhook runner answered HTTP 200 OK with an invalid result: not a result document"
            ),
            v => panic!("{v:?}"),
        }
        match judge(
            StatusCode::OK,
            None,
            br#"{"v":2,"outcome":"completed"}"#,
            false,
        ) {
            Verdict::Fail(r) => assert!(r.ends_with("invalid result: field v refused"), "{r}"),
            v => panic!("{v:?}"),
        }
        match judge(StatusCode::OK, None, b"{", true) {
            Verdict::Fail(r) => assert!(r.contains("larger than"), "{r}"),
            v => panic!("{v:?}"),
        }
        for status in [500, 502, 503, 429] {
            let s = StatusCode::from_u16(status).unwrap();
            match judge(s, None, b"kaput", false) {
                Verdict::Retry(r, after) => {
                    assert_eq!(r, format!("HTTP {s}"), "no body text");
                    assert_eq!(after, None);
                }
                v => panic!("{status}: {v:?}"),
            }
        }
        for status in [400, 401, 404, 302] {
            let s = StatusCode::from_u16(status).unwrap();
            match judge(s, None, b"", false) {
                Verdict::Fail(r) => {
                    assert!(r.contains(&format!("HTTP {status}")), "{r}");
                    assert!(r.contains("not retried"), "{r}");
                }
                v => panic!("{status}: {v:?}"),
            }
        }
    }

    #[test]
    fn failure_reasons_carry_the_status_and_no_body_text() {
        assert_eq!(
            describe_answer(StatusCode::INTERNAL_SERVER_ERROR),
            "HTTP 500 Internal Server Error"
        );
        match judge(
            StatusCode::FORBIDDEN,
            None,
            b"secret internal detail",
            false,
        ) {
            Verdict::Fail(r) => assert_eq!(r, "HTTP 403 Forbidden (not retried)"),
            v => panic!("{v:?}"),
        }
        match judge(
            StatusCode::OK,
            None,
            b"{\"v\":1,\"outcome\":\"hunter2\"}",
            false,
        ) {
            Verdict::Fail(r) => assert!(!r.contains("hunter2"), "{r}"),
            v => panic!("{v:?}"),
        }
        match judge(StatusCode::OK, None, b"<html>hunter2</html>", false) {
            Verdict::Fail(r) => assert!(r.ends_with("invalid result: not JSON"), "{r}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn posts_carry_the_toolkits_signature_of_every_live_secret() {
        use crate::outbound::{SigningKey, Verifier};
        let keys = RunnerKeys::default();
        let flow = (
            Idn::known("default"),
            Name::parse("agent", "A").unwrap(),
            Name::parse("flow", "F").unwrap(),
        );
        let (id, url) = (Uuid::now_v7(), "http://127.0.0.1:9/skill");
        let body = Bytes::from_static(br#"{"v":1}"#);
        let post = |url: &str| signed_post(&keys, url, &flow, (id, &id.to_string()), body.clone());
        assert_eq!(
            post(url).err().as_deref(),
            Some("the flow has no webhook signing secret")
        );
        let first = keys
            .generate_if_absent(&flow.0, &flow.1, &flow.2)
            .unwrap()
            .current;
        let now = chrono::Utc::now().timestamp_millis();
        let rotated = keys.rotate(&flow.0, &flow.1, &flow.2, now, 60_000).current;
        let request = post(url).unwrap();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.body, body);
        assert_eq!(request.headers[CONTENT_TYPE], "application/json");
        assert_eq!(request.headers[INVOCATION_HEADER], id.to_string().as_str());
        assert_eq!(request.headers[HEADER_WEBHOOK_ID], id.to_string().as_str());
        for secret in [&first, &rotated] {
            let verifier = Verifier::new(SigningKey::parse(secret.expose()).unwrap());
            assert_eq!(verifier.verify(&request.headers, &body), Ok(()));
        }
        assert_eq!(
            post("not a url").err().as_deref(),
            Some("the runner URL is not usable")
        );
    }

    #[test]
    fn the_registry_resolves_webhooks_only_with_a_factory() {
        use crate::domain::RunnerSpec;
        use crate::skill_runner::in_process::FnRunner;
        use crate::skill_runner::{RunnerRegistry, RunnerResolver};

        let spec = RunnerSpec::Webhook {
            url: "http://127.0.0.1:9/skill".into(),
            timeout: Duration::from_secs(1),
            max_attempts: Some(3),
            retry_for: Duration::from_secs(60),
        };
        let plain = RunnerRegistry::new(Arc::new(FnRunner::completing()));
        assert_eq!(
            plain.resolve(&spec).err().map(|e| e.0).as_deref(),
            Some("webhook runners are not enabled")
        );
        let factory = WebhookRunners::new(
            WebhookSettings::new(),
            Egress::new(EgressPolicy::default()),
            Arc::new(PendingInvocations::default()),
        );
        let with = plain.with_webhooks(factory);
        assert!(with.resolve(&spec).is_ok());
        assert!(with.resolve(&RunnerSpec::Default).is_ok());
        assert!(with.webhooks().is_some());
        assert!(with.resolve(&RunnerSpec::Queue).is_err());
    }
}
