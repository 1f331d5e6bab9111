//! Outgoing webhooks of `api` connectors: the outbox's `api` destination. A command the
//! connector's `outgoing_commands` names (empty: any) becomes a message to
//! `api:<account>/<connector>`, keyed by its persona (order per conversation), its id the
//! command act id (the `webhook-id`, the same on every attempt and after a restart). Each
//! attempt reads the connector's settings then (`outgoing_webhook_url`, `signing_secret`,
//! `outgoing_headers`, `timeout_seconds`: rows hold no secret), signs per Standard Webhooks and
//! POSTs the JSON body:
//!
//! `{"type": "<command idn>", "timestamp": "<RFC 3339>", "data": {"command_act_id", "command_id",
//! "persona_id", "connector_idn", "invocation_id"?, "arguments": {<name>: <text>}}}`.
//!
//! 2xx: `result_success` with `statusCode` and, when the answer is a JSON object, its fields as
//! arguments (the incoming rule: strings as they are, other values as JSON text). 429, 5xx, no
//! answer: retried with full jitter from 1 s up to 5 min, `Retry-After` honoured, for
//! `max_retries` more attempts within an hour. Another 4xx, or the budget spent: `result_error`
//! and a dead letter (`delivery_failed`, the command replayable). 410: the destination is
//! disabled (`webhook_disabled` on `system`, what was queued settles failed) until the
//! connector is run again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::mapping::text_of;
use crate::commands::refusal::{count, result_event};
use crate::connectors::Directory;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::domain::{Command, ConnectorKey, Idn, PersonaId};
use crate::ingress::InternalEvents;
use crate::outbound::outbox::{Attempt, Destination, OutboxItem, RetryPolicy, Settled};
use crate::outbound::retry::Backoff;
use crate::outbound::signing::{Signer, SigningKey};
use crate::outbound::{Egress, OutboundRequest, SendOptions};

/// The outbox destination kind.
pub const KIND: &str = "api";
/// How long a message is retried, from its first attempt.
pub const RETRY_FOR: Duration = Duration::from_secs(3600);
/// Response bytes read at most (the receiver's JSON answer).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The outbox destination of `connector`.
pub fn destination(connector: &ConnectorKey) -> String {
    format!("{KIND}:{}/{}", connector.account, connector.connector)
}

/// What a message's row keeps beside its payload, to answer after a restart. No secret.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub act: Uuid,
    pub persona: Uuid,
    pub command_id: Uuid,
    pub connector: String,
    pub command: String,
    pub invocation_id: Option<Uuid>,
}

impl Meta {
    /// The command it answers, rebuilt (with `arguments` from the payload when given).
    fn command(&self, account: &Idn, payload: Option<&[u8]>) -> Option<Command> {
        let mut c = Command::new(
            account.clone(),
            Idn::known(KIND),
            Idn::parse("connector_idn", &self.connector).ok()?,
            Idn::parse("command_idn", &self.command).ok()?,
        );
        c.id = self.command_id;
        c.invocation_id = self.invocation_id;
        let body: Option<Value> = payload.and_then(|p| serde_json::from_slice(p).ok());
        if let Some(Value::Object(args)) = body.as_ref().map(|b| &b["data"]["arguments"]) {
            for (name, value) in args {
                if let Some(text) = text_of(value) {
                    c.arguments.push(name.as_str(), text);
                }
            }
        }
        Some(c)
    }
}

/// The body and meta of `command`'s message.
pub fn message(command: &Command, act: Uuid, persona: PersonaId) -> (Bytes, Bytes) {
    let arguments: Map<String, Value> = command
        .arguments
        .iter()
        .map(|a| (a.name.to_string(), Value::String(a.value.to_string())))
        .collect();
    let mut data = json!({
        "command_act_id": act,
        "command_id": command.id,
        "persona_id": persona.0,
        "connector_idn": command.connector.as_str(),
        "arguments": arguments,
    });
    if let Some(i) = command.invocation_id {
        data["invocation_id"] = json!(i);
    }
    let body = json!({
        "type": command.command.as_str(),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    });
    let meta = Meta {
        act,
        persona: persona.0,
        command_id: command.id,
        connector: command.connector.to_string(),
        command: command.command.to_string(),
        invocation_id: command.invocation_id,
    };
    (
        Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
        Bytes::from(serde_json::to_vec(&meta).expect("JSON serializes")),
    )
}

/// The `api` destination.
pub struct ApiDestination {
    pub directory: Arc<Directory>,
    pub egress: Egress,
    pub events: InternalEvents,
    /// Destinations found gone, told once (`webhook_disabled`) until enabled again.
    pub gone: Mutex<HashSet<String>>,
}

/// An attempt that cannot be made (its connector or settings are gone): refused for good.
fn unusable(reason: &str) -> BoxFuture<'static, Attempt> {
    let reason = reason.to_owned();
    async move { Attempt::Failed(reason) }.boxed()
}

impl ApiDestination {
    fn key_of(&self, item: &OutboxItem) -> Option<ConnectorKey> {
        let meta: Meta = serde_json::from_slice(&item.meta).ok()?;
        Some(ConnectorKey {
            account: item.account.clone(),
            integration: Idn::known(KIND),
            connector: Idn::parse("connector_idn", &meta.connector).ok()?,
        })
    }

    /// The signed request of one attempt, or why none can be made.
    fn request(
        &self,
        key: &ConnectorKey,
        item: &OutboxItem,
    ) -> Result<(OutboundRequest, SendOptions), &'static str> {
        let setting = |idn: &str| self.directory.setting(key, idn);
        let url = setting("outgoing_webhook_url")
            .filter(|u| !u.is_empty())
            .ok_or("the connector has no outgoing_webhook_url")?;
        let url = Url::parse(&url).map_err(|_| "outgoing_webhook_url is not a URL")?;
        let secret = setting("signing_secret").ok_or("the connector has no signing_secret")?;
        let key =
            SigningKey::parse(&secret).map_err(|_| "signing_secret is not a whsec_ secret")?;
        let mut headers = HeaderMap::new();
        let extra: Map<String, Value> = setting("outgoing_headers")
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default();
        let mut credential_headers = Vec::new();
        for (name, value) in &extra {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) else {
                continue;
            };
            credential_headers.push(name.clone());
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Signer::new(key)
            .sign(
                &mut headers,
                &item.id.to_string(),
                chrono::Utc::now().timestamp(),
                &item.payload,
            )
            .map_err(|_| "the body could not be signed")?;
        let mut request = OutboundRequest::new(Method::POST, url);
        request.headers = headers;
        request.body = item.payload.clone();
        request.credential_headers = credential_headers;
        let timeout = setting("timeout_seconds")
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(30.0);
        let options = SendOptions {
            timeout: Duration::from_secs_f64(timeout),
            max_response_bytes: MAX_ANSWER_BYTES,
            ..SendOptions::default()
        };
        Ok((request, options))
    }

    /// Tells the flows once that `destination` answered 410.
    fn disabled(&self, item: &OutboxItem, meta: &Meta, reason: &str) {
        let first = self
            .gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(item.destination.clone());
        if !first {
            return;
        }
        tracing::warn!(destination = %item.destination, "outgoing webhook disabled: the receiver answered 410 Gone");
        let system = Idn::known("system");
        let mut notice = crate::domain::Event::for_persona(
            item.account.clone(),
            system.clone(),
            system,
            Idn::known("webhook_disabled"),
            PersonaId(meta.persona),
        );
        notice.arguments.push("integrationIdn", KIND);
        notice
            .arguments
            .push("connectorIdn", meta.connector.as_str());
        notice.arguments.push("reason", reason);
        self.events.emit(notice);
    }

    /// `destination` takes messages again: a later 410 is told again.
    pub fn enabled(&self, destination: &str) {
        self.gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(destination);
    }
}

impl Destination for ApiDestination {
    fn deliver(&self, item: &OutboxItem, _attempt: u32) -> BoxFuture<'static, Attempt> {
        let Some(key) = self.key_of(item) else {
            return unusable("the message's connector is unreadable");
        };
        match self.request(&key, item) {
            Ok((request, options)) => {
                let egress = self.egress.clone();
                async move { Attempt::of_sent(egress.send(request, &options).await) }.boxed()
            }
            Err(reason) => unusable(reason),
        }
    }

    fn retry_policy(&self, item: &OutboxItem) -> RetryPolicy {
        let retries = self
            .key_of(item)
            .and_then(|k| self.directory.setting(&k, "max_retries"))
            .and_then(|r| r.parse::<f64>().ok())
            .map_or(3, |r| r.clamp(0.0, 100.0) as u32);
        RetryPolicy {
            backoff: Backoff::new(RetryPolicy::DEFAULT_INITIAL, RetryPolicy::DEFAULT_MAX),
            max_attempts: Some(retries + 1),
            retry_for: RETRY_FOR,
        }
    }

    fn settled(&self, item: &OutboxItem, outcome: &Settled) {
        let Ok(meta) = serde_json::from_slice::<Meta>(&item.meta) else {
            tracing::error!(id = %item.id, "an outgoing webhook's meta is unreadable");
            return;
        };
        let Some(command) = meta.command(&item.account, None) else {
            return;
        };
        let persona = PersonaId(meta.persona);
        let reason = match outcome {
            Settled::Withdrawn => return,
            Settled::Delivered(receipt) => {
                count(&command, "sent");
                let mut e = result_event(&command, "result_success", meta.act, persona);
                if let Some(status) = receipt.status {
                    e.arguments.push("statusCode", status.to_string());
                }
                if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&receipt.body) {
                    for (name, value) in &fields {
                        let taken = e.arguments.get(name).is_some();
                        if let (false, Some(text)) = (taken, text_of(value)) {
                            e.arguments.push(name.as_str(), text);
                        }
                    }
                }
                self.events.emit(e);
                return;
            }
            Settled::Failed { reason } => reason.clone(),
            Settled::Exhausted { attempts, last } => {
                format!("undelivered after {attempts} attempts: {last}")
            }
            Settled::Gone { reason } => {
                self.disabled(item, &meta, reason);
                reason.clone()
            }
        };
        count(&command, "failed");
        let mut e = result_event(&command, "result_error", meta.act, persona);
        e.arguments.push("error", reason);
        e.arguments.push("fault", "peer");
        e.arguments.push("retryable", "false");
        self.events.emit(e);
    }

    fn dead_letter(
        &self,
        item: &OutboxItem,
        reason: DeadLetterReason,
        detail: String,
    ) -> DeadLetter {
        let meta: Option<Meta> = serde_json::from_slice(&item.meta).ok();
        match meta
            .as_ref()
            .and_then(|m| Some((m.command(&item.account, Some(&item.payload))?, m.persona)))
        {
            Some((command, persona)) => {
                DeadLetter::command(reason, detail, command, Some(PersonaId(persona)))
            }
            None => DeadLetter::raw_for(
                reason,
                item.account.clone(),
                detail,
                "application/json".into(),
                item.payload.to_vec(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_the_command_and_its_meta_rebuilds_it() {
        let command = Command::new(
            Idn::known("acme"),
            Idn::known("api"),
            Idn::known("hooks"),
            Idn::known("send_email"),
        )
        .with_argument("toEmail", "a@example.com")
        .with_argument("subject", "Hi");
        let act = Uuid::now_v7();
        let persona = PersonaId(Uuid::now_v7());
        let (body, meta) = message(&command, act, persona);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["type"], "send_email");
        assert_eq!(body["data"]["command_act_id"], act.to_string());
        assert_eq!(body["data"]["persona_id"], persona.0.to_string());
        assert_eq!(body["data"]["arguments"]["toEmail"], "a@example.com");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        let meta: Meta = serde_json::from_slice(&meta).unwrap();
        let payload = serde_json::to_vec(&body).unwrap();
        let again = meta.command(&Idn::known("acme"), Some(&payload)).unwrap();
        assert_eq!(again.id, command.id);
        assert_eq!(again.arguments.get("toEmail"), Some("a@example.com"));
        assert_eq!(again.arguments.get("subject"), Some("Hi"));
        assert_eq!(again.connector.as_str(), "hooks");
        assert_eq!(
            destination(&ConnectorKey {
                account: Idn::known("acme"),
                integration: Idn::known("api"),
                connector: Idn::known("hooks"),
            }),
            "api:acme/hooks"
        );
    }
}
