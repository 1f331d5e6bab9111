//! The native `http` integration: `send_request` calls any HTTP API on a skill's behalf, with the
//! connector's base URL, default headers and credentials ([`request`]), through the outbound
//! toolkit ([`crate::outbound::Egress::send`]: the egress policy at every hop, the connector's
//! timeout, response cap, redirects and TLS verification). The answer comes back as a
//! `magic_http_response` event to the same persona (`statusCode`, `headers`, `body`,
//! `truncated`, `targetAction`, `durationMs`), then `result_success` for a 2xx or
//! `result_error` saying whose fault (a 4xx the caller's, a 5xx the peer's). A request that got
//! no answer (refused by the egress policy, timed out, no connection) is `result_error` with the
//! reason, and a dead letter.
//!
//! Requests of one conversation (connector and persona) are sent in order ([`lanes`]); a
//! connector has at most `max_in_flight` requests out and `max_requests_per_second` started.
//! Idempotent methods are retried on 429, 5xx and connection failures (`Retry-After` honoured,
//! within the connector's timeout); others are sent once.

pub mod credentials;
pub mod lanes;
pub mod metrics;
pub mod request;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rustc_hash::FxBuildHasher;
use tokio::sync::Semaphore;

use crate::commands::{
    Answer, Answered, CommandRefusal, ConnectorChange, Failure, NativeCommand, NativeIntegration,
};
use crate::connectors::Directory;
use crate::domain::{Arguments, ConnectorKey, PersonaId};
use crate::fault::{Blame, Fault};
use crate::natives::component::{Built, Component, NativeContext, Reseal};
use crate::outbound::{retry, Backoff, Egress, SendOptions, Sent};
use credentials::clock::Clock;
use credentials::refresh::Refresher;
use credentials::CredentialStore;
use lanes::Lanes;
use request::{Auth, ConnectorSettings};

/// Attempts of an idempotent request at most (within the connector's timeout).
const MAX_ATTEMPTS: u32 = 3;
/// The backoff between them.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// How many requests a connector may have out, and start per second.
#[derive(Clone)]
struct Gate {
    in_flight: Arc<Semaphore>,
    rate: Arc<DefaultDirectRateLimiter>,
    /// The settings it was made with: a change makes a new gate.
    made_with: (usize, u32),
}

impl Gate {
    fn new(max_in_flight: usize, per_second: u32) -> Gate {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        Gate {
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            rate: Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
            made_with: (max_in_flight, per_second.get()),
        }
    }
}

/// The component: requests go out through the context's egress.
pub fn component() -> Box<dyn Component> {
    Box::new(HttpComponent)
}

struct HttpComponent;

impl Component for HttpComponent {
    fn idn(&self) -> &'static str {
        "http"
    }

    fn metrics(&self) -> Option<fn()> {
        Some(metrics::describe)
    }

    fn migrations(&self) -> &'static [&'static str] {
        credentials::MIGRATIONS
    }

    /// The credentials' secret fields and tokens.
    fn reseal(&self) -> Option<Reseal> {
        Some(credentials::reseal)
    }

    /// With a store and the keyring, the credential routes too, and the daily refresh of OAuth
    /// credentials (a task from the start gate to the shutdown).
    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        let refresher = cx
            .store
            .clone()
            .zip(cx.secrets.clone())
            .map(|(store, secrets)| {
                let store = CredentialStore::new(store, secrets, Clock::start());
                let endpoint = Arc::new(cx.egress.clone());
                Arc::new(Refresher::new(store, endpoint, cx.events.clone()))
            });
        let built = Built::executor(Arc::new(HttpNative {
            egress: cx.egress.clone(),
            directory: cx.directory.clone(),
            lanes: Lanes::new(crate::telemetry::queue::names::HTTP_REQUEST_LANES),
            gates: DashMap::default(),
            credentials: refresher.clone(),
        }));
        let Some(refresher) = refresher else {
            return built;
        };
        tokio::spawn(credentials::sweep::run(
            refresher.clone(),
            cx.persona_key,
            cx.started.clone(),
            cx.shutdown.clone(),
        ));
        let vault = actix_web::web::Data::new(credentials::routes::Vault {
            credentials: refresher.store.clone(),
            directory: cx.directory.clone(),
            egress: cx.egress.clone(),
            flows: refresher.store.pending_flows(),
            refresher,
            persona_key: cx.persona_key,
        });
        built.with_routes(move |cfg| {
            cfg.app_data(vault.clone());
            credentials::routes::register(cfg);
        })
    }
}

/// The `http` native integration.
pub struct HttpNative {
    egress: Egress,
    directory: Arc<Directory>,
    lanes: Lanes<(ConnectorKey, PersonaId)>,
    gates: DashMap<ConnectorKey, Gate, FxBuildHasher>,
    /// The accounts' credentials and their refreshes (with a store and the keyring).
    credentials: Option<Arc<Refresher>>,
}

impl HttpNative {
    /// The connector's settings that shape a request, secrets included.
    fn settings(&self, key: &ConnectorKey) -> ConnectorSettings {
        let setting = |idn: &str| self.directory.setting(key, idn);
        let number = |idn: &str, default: f64| {
            setting(idn)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(default)
        };
        let flag = |idn: &str, default: bool| setting(idn).map_or(default, |v| v == "true");
        let auth = match setting("auth_type").as_deref() {
            Some("bearer") => Auth::Bearer(setting("auth_token").unwrap_or_default()),
            Some("basic") => Auth::Basic {
                username: setting("username").unwrap_or_default(),
                password: setting("password").unwrap_or_default(),
            },
            Some("api_key") => Auth::ApiKey {
                header: setting("api_key_header").unwrap_or_else(|| "X-API-Key".into()),
                value: setting("auth_token").unwrap_or_default(),
            },
            _ => Auth::None,
        };
        let max_response_bytes = self
            .directory
            .integration_setting(&key.account, &key.integration, "max_response_bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1024 * 1024);
        ConnectorSettings {
            base_url: setting("base_url").unwrap_or_default(),
            auth,
            default_headers: setting("default_headers"),
            allowed_hosts: setting("allowed_hosts")
                .map(|h| {
                    serde_json::from_str::<Vec<String>>(&h).unwrap_or_else(|_| {
                        h.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                })
                .unwrap_or_default(),
            options: SendOptions {
                timeout: Duration::from_secs_f64(number("timeout_seconds", 30.0)),
                verify_tls: flag("verify_tls", true),
                max_redirects: if flag("follow_redirects", true) { 5 } else { 0 },
                max_response_bytes,
            },
        }
    }

    /// The connector's gate, made anew when its settings changed.
    fn gate(&self, key: &ConnectorKey) -> Gate {
        let setting = |idn: &str, default: f64| {
            self.directory
                .setting(key, idn)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(default)
        };
        let want = (
            setting("max_in_flight", 10.0) as usize,
            setting("max_requests_per_second", 50.0) as u32,
        );
        let mut gate = self
            .gates
            .entry(key.clone())
            .or_insert_with(|| Gate::new(want.0, want.1));
        if gate.made_with != want {
            *gate = Gate::new(want.0, want.1);
        }
        gate.clone()
    }
}

impl NativeIntegration for HttpNative {
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let command = c.command;
        let key = ConnectorKey::new(&command.account, &command.integration, &command.connector);
        // A credential the skill names wins over the connector's; either takes the place of
        // the connector's own auth settings.
        let named = command
            .arguments
            .get("credential")
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned)
            .or_else(|| self.directory.setting(&key, "credential"))
            .filter(|n| !n.trim().is_empty());
        let mut settings = self.settings(&key);
        let vault = match (&named, &self.credentials) {
            (None, _) => None,
            (Some(_), Some(vault)) => Some(vault.clone()),
            (Some(_), None) => {
                return Err(CommandRefusal::Unavailable {
                    integration: "http".into(),
                    reason: "credentials need the daemon's store".into(),
                })
            }
        };
        if named.is_some() {
            settings.auth = Auth::None;
        }
        let built = request::build(command, &settings)?;
        let answer = c.answer_later();
        let account = command.account.to_string();
        let persona = c.persona;
        let series = metrics::SendRequestSeries::of(&account, command.connector.as_str());
        let (egress, gate, options) = (self.egress.clone(), self.gate(&key), settings.options);
        self.lanes
            .submit(
                (key, c.persona),
                Box::pin(async move {
                    let started = Instant::now();
                    let base = built.request;
                    let mut request = base.clone();
                    let mut token = None;
                    if let (Some(name), Some(vault)) = (&named, &vault) {
                        match with_credential(vault, &account, name, None, persona, &mut request)
                            .await
                        {
                            Ok(t) => token = t,
                            Err(reason) => {
                                series.record("none", "credential_unusable", started.elapsed());
                                let mut arguments = Arguments::default();
                                if let Some(t) = &built.target_action {
                                    arguments.push("targetAction", t.as_str());
                                }
                                answer.fail(Failure {
                                    reason,
                                    fault: Fault::Caller,
                                    retryable: false,
                                    arguments,
                                    unanswered: false,
                                });
                                return;
                            }
                        }
                    }
                    let mut sent = send(&egress, &gate, request, &options).await;
                    // An OAuth token the API refused: refreshed (once for all waiting), sent again once.
                    if let (Some(name), Some(vault), Some(used)) = (&named, &vault, &token) {
                        if matches!(&sent, Ok(s) if s.status == reqwest::StatusCode::UNAUTHORIZED) {
                            let mut again = base.clone();
                            let stale = Some(used.clone());
                            if with_credential(vault, &account, name, stale, persona, &mut again)
                                .await
                                .is_ok()
                            {
                                sent = send(&egress, &gate, again, &options).await;
                            }
                        }
                    }
                    respond(
                        &series,
                        answer,
                        sent,
                        built.target_action,
                        started.elapsed(),
                    );
                }),
            )
            .map_err(|_| CommandRefusal::Unavailable {
                integration: "http".into(),
                reason: "this conversation has too many requests waiting; try again".into(),
            })?;
        Ok(Answered::Later)
    }

    /// A stopped or deleted connector's gate goes (a changed setting then makes a new one).
    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        if change != ConnectorChange::Running {
            self.gates.remove(connector);
        }
    }
}

/// Puts credential `name` of `account` on `request` (an OAuth token refreshed first if it is
/// expiring or `stale`); answers the OAuth token used. The reason names the credential only.
async fn with_credential(
    vault: &Refresher,
    account: &str,
    name: &str,
    stale: Option<String>,
    persona: PersonaId,
    request: &mut crate::outbound::OutboundRequest,
) -> Result<Option<String>, String> {
    let (auth, token) = credentials::resolve::auth(vault, account, name, stale, persona)
        .await
        .map_err(|e| e.to_string())?;
    request::inject(request, &auth)
        .map_err(|_| format!("credential {name:?} is not a header value"))?;
    Ok(token)
}

/// Sends `request` under the connector's gate; an idempotent one is tried again on 429, 5xx or
/// a failed connection, within the timeout.
async fn send(
    egress: &Egress,
    gate: &Gate,
    request: crate::outbound::OutboundRequest,
    options: &SendOptions,
) -> Result<Sent, crate::outbound::SendError> {
    let deadline = Instant::now() + options.timeout;
    let retries = request::idempotent(&request.method);
    let mut steps = BACKOFF.steps();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _permit = gate.in_flight.acquire().await.expect("never closed");
        gate.rate.until_ready().await;
        let left = deadline.saturating_duration_since(Instant::now());
        let this = SendOptions {
            timeout: left.max(Duration::from_millis(1)),
            ..options.clone()
        };
        let result = egress.send(request.clone(), &this).await;
        drop(_permit);
        let again = match &result {
            Ok(sent) => {
                retry::retryable_status(sent.status).then(|| retry::retry_after(&sent.headers))
            }
            Err(e) if e.retryable() => Some(None),
            Err(_) => None,
        };
        // A timeout is the connector's, whatever was left of it for the last attempt.
        let result = result.map_err(|e| match e {
            crate::outbound::SendError::Timeout(_) => {
                crate::outbound::SendError::Timeout(options.timeout)
            }
            e => e,
        });
        let Some(retry_after) = again.filter(|_| retries && attempt < MAX_ATTEMPTS) else {
            return result;
        };
        let delay = BACKOFF.delay(retry_after, steps.next().unwrap_or(BACKOFF.max));
        if Instant::now() + delay >= deadline {
            return result;
        }
        tokio::time::sleep(delay).await;
    }
}

/// The status class of a response, for metrics: `2xx` … `5xx`.
fn class(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Answers the command with what came back.
fn respond(
    series: &metrics::SendRequestSeries,
    answer: Answer,
    sent: Result<Sent, crate::outbound::SendError>,
    target_action: Option<String>,
    took: Duration,
) {
    let mut tagged = Arguments::default();
    if let Some(t) = &target_action {
        tagged.push("targetAction", t.as_str());
    }
    match sent {
        Ok(sent) => {
            let outcome = if sent.status.is_success() {
                "success"
            } else {
                "error_status"
            };
            series.record(class(sent.status), outcome, took);
            let headers: serde_json::Map<String, serde_json::Value> = sent
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.into())))
                .collect();
            let mut a = tagged.clone();
            a.push("statusCode", sent.status.as_u16().to_string());
            a.push("headers", serde_json::Value::Object(headers).to_string());
            a.push("body", String::from_utf8_lossy(&sent.body).into_owned());
            a.push("truncated", if sent.truncated { "true" } else { "false" });
            a.push("durationMs", took.as_millis().to_string());
            answer.emit("magic_http_response", a);
            let mut result = tagged;
            result.push("statusCode", sent.status.as_u16().to_string());
            if sent.status.is_success() {
                result.push("result", sent.status.as_u16().to_string());
                answer.succeed(result);
            } else {
                // A 4xx says the request was wrong (the caller's), a 5xx or 3xx the peer's.
                let fault = if sent.status.is_client_error() {
                    Fault::Caller
                } else {
                    Fault::Peer
                };
                answer.fail(Failure {
                    reason: format!("HTTP {}", sent.status),
                    fault,
                    retryable: retry::retryable_status(sent.status),
                    arguments: result,
                    unanswered: false,
                });
            }
        }
        Err(e) => {
            series.record("none", e.kind(), took);
            answer.fail(Failure {
                reason: e.to_string(),
                fault: e.fault(),
                retryable: e.retryable(),
                arguments: tagged,
                unanswered: true,
            });
        }
    }
}
