//! Commands as signed webhooks, shared by every sender of commands over HTTP (the `api`
//! native's outgoing webhooks, the adapters' command endpoints: `delivery.rs`): the message a
//! command becomes in the outbox, its id the command act id (the `webhook-id`, the same on
//! every attempt and after a restart), its JSON body
//!
//! `{"type": "<command idn>", "timestamp": "<RFC 3339>", "data": {"command_act_id", "command_id",
//! "persona_id", "connector_idn", "invocation_id"?, "arguments": {<name>: <text>}}}`,
//!
//! the [`Meta`] kept beside it (no secret: what answering needs after a restart), the signed
//! POST of one attempt ([`signed_post`], settings read at that moment), and the `result_error`
//! and dead letter of a message that did not arrive.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::commands::refusal::{count, result_event};
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::domain::{Command, ConnectorKey, Idn, PersonaId};
use crate::ingress::InternalEvents;
use crate::outbound::outbox::{OutboxItem, Settled};
use crate::outbound::signing::{Signer, SigningKey};
use crate::outbound::{OutboundRequest, SendOptions};

/// Response bytes read at most (the receiver's JSON answer).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// An attempt's timeout when the connector sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The text an argument gets for a JSON `value` (strings as they are, other values as JSON
/// text); `None` for `null`.
pub fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn api() -> String {
    "api".into()
}

/// What a message's row keeps beside its payload, to answer after a restart. No secret.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub act: Uuid,
    pub persona: Uuid,
    pub command_id: Uuid,
    /// The command's integration (rows written before adapters had endpoints: `api`).
    #[serde(default = "api")]
    pub integration: String,
    pub connector: String,
    pub command: String,
    pub invocation_id: Option<Uuid>,
}

impl Meta {
    /// The meta of `item`, if it reads.
    pub fn of(item: &OutboxItem) -> Option<Meta> {
        serde_json::from_slice(&item.meta).ok()
    }

    /// The connector the message is for.
    pub fn key(&self, account: &Idn) -> Option<ConnectorKey> {
        Some(ConnectorKey {
            account: account.clone(),
            integration: Idn::parse("integration_idn", &self.integration).ok()?,
            connector: Idn::parse("connector_idn", &self.connector).ok()?,
        })
    }

    pub fn persona(&self) -> PersonaId {
        PersonaId(self.persona)
    }

    /// The command it answers, rebuilt (with `arguments` from the payload when given).
    pub fn command(&self, account: &Idn, payload: Option<&[u8]>) -> Option<Command> {
        let key = self.key(account)?;
        let mut c = Command::new(
            key.account,
            key.integration,
            key.connector,
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
        integration: command.integration.to_string(),
        connector: command.connector.to_string(),
        command: command.command.to_string(),
        invocation_id: command.invocation_id,
    };
    (
        Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
        Bytes::from(serde_json::to_vec(&meta).expect("JSON serializes")),
    )
}

/// Where one attempt goes, as the connector's settings say at that moment: each value with
/// the setting it came from (to name it when it is unusable).
pub struct Endpoint {
    pub url: (&'static str, Option<String>),
    pub secret: (&'static str, Option<String>),
    /// During a rotation, the secret the current one replaces: messages carry both signatures.
    pub previous_secret: Option<String>,
    /// A JSON object of headers sent too (credentials: never sent to another host).
    pub headers: Option<String>,
    /// Seconds, as text.
    pub timeout_seconds: Option<String>,
}

/// The signed POST of `item` to `endpoint`, or why none can be made (naming the setting).
pub fn signed_post(
    endpoint: Endpoint,
    item: &OutboxItem,
) -> Result<(OutboundRequest, SendOptions), String> {
    let (url_setting, url) = endpoint.url;
    let url = url
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("the connector has no {url_setting}"))?;
    let url = Url::parse(&url).map_err(|_| format!("{url_setting} is not a URL"))?;
    let (secret_setting, secret) = endpoint.secret;
    let secret = secret.ok_or_else(|| format!("the connector has no {secret_setting}"))?;
    let key = SigningKey::parse(&secret)
        .map_err(|_| format!("{secret_setting} is not a whsec_ secret"))?;
    let mut signer = Signer::new(key);
    if let Some(previous) = endpoint
        .previous_secret
        .as_deref()
        .and_then(|p| SigningKey::parse(p).ok())
    {
        signer = signer.with_previous(previous);
    }
    let mut headers = HeaderMap::new();
    let extra: Map<String, Value> = endpoint
        .headers
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
    signer
        .sign(
            &mut headers,
            &item.id.to_string(),
            chrono::Utc::now().timestamp(),
            &item.payload,
        )
        .map_err(|_| "the body could not be signed".to_owned())?;
    let mut request = OutboundRequest::new(Method::POST, url);
    request.headers = headers;
    request.body = item.payload.clone();
    request.credential_headers = credential_headers;
    let timeout = endpoint
        .timeout_seconds
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
    let options = SendOptions {
        timeout,
        max_response_bytes: MAX_ANSWER_BYTES,
        ..SendOptions::default()
    };
    Ok((request, options))
}

/// The setting keeping the secret a rotation of `secret` replaced (`signing_secret_previous`).
pub fn previous_setting(secret: &str) -> String {
    format!("{secret}_previous")
}

/// The setting saying until when that replaced secret still counts (RFC 3339).
pub fn until_setting(secret: &str) -> String {
    format!("{secret}_previous_until")
}

/// The longest overlap a rotation may give the secret it replaces.
pub const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    format!(
        "{}{}",
        crate::outbound::signing::SECRET_PREFIX,
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The secret the last rotation of `secret` replaced, while its overlap lasts at `now`
/// (`setting` reads the connector's settings).
pub fn previous_secret(
    setting: impl Fn(&str) -> Option<String>,
    secret: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let until = setting(&until_setting(secret))?;
    let until = chrono::DateTime::parse_from_rfc3339(&until).ok()?;
    if until <= now {
        return None;
    }
    setting(&previous_setting(secret)).filter(|p| !p.is_empty())
}

/// The settings a rotation of `secret` writes: `fresh` in its place and, for `overlap` from
/// `now`, `current` as the previous one (no overlap, or no current one: none kept). Answers
/// them and the end of the overlap.
pub fn rotation(
    secret: &str,
    current: Option<String>,
    fresh: &str,
    overlap: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> (Vec<(String, String)>, Option<chrono::DateTime<chrono::Utc>>) {
    let until = current
        .filter(|c| !c.is_empty() && !overlap.is_zero())
        .and_then(|c| Some((c, now + chrono::Duration::from_std(overlap).ok()?)));
    let (previous, until_text, until) = match until {
        Some((c, until)) => (
            c,
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Some(until),
        ),
        None => (String::new(), String::new(), None),
    };
    (
        vec![
            (secret.to_owned(), fresh.to_owned()),
            (previous_setting(secret), previous),
            (until_setting(secret), until_text),
        ],
        until,
    )
}

/// Why a message that left the outbox did not arrive; `None` when it did or was withdrawn.
pub fn failure(outcome: &Settled) -> Option<String> {
    match outcome {
        Settled::Delivered(_) | Settled::Withdrawn => None,
        Settled::Failed { reason } | Settled::Gone { reason } => Some(reason.clone()),
        Settled::Exhausted { attempts, last } => {
            Some(format!("undelivered after {attempts} attempts: {last}"))
        }
    }
}

/// Answers the command of a message that did not arrive: counted `failed`, `result_error` to
/// its persona (the peer's fault, not retryable: the outbox retried already).
pub fn answer_failed(events: &InternalEvents, command: &Command, meta: &Meta, reason: String) {
    count(command, "failed");
    let mut e = result_event(command, "result_error", meta.act, meta.persona());
    e.arguments.push("error", reason);
    e.arguments.push("fault", "peer");
    e.arguments.push("retryable", "false");
    events.emit(e);
}

/// The dead letter of a message that did not arrive: its command, replayable, when the meta
/// reads; else the payload as it is.
pub fn dead_letter(item: &OutboxItem, reason: DeadLetterReason, detail: String) -> DeadLetter {
    let meta = Meta::of(item);
    match meta
        .as_ref()
        .and_then(|m| Some((m.command(&item.account, Some(&item.payload))?, m.persona())))
    {
        Some((command, persona)) => DeadLetter::command(reason, detail, command, Some(persona)),
        None => DeadLetter::raw_for(
            reason,
            item.account.clone(),
            detail,
            "application/json".into(),
            item.payload.to_vec(),
        ),
    }
}

/// Destinations found gone (HTTP 410), told once until enabled again.
#[derive(Default)]
pub struct Gone(Mutex<HashSet<String>>);

impl Gone {
    /// Tells the flows once that `item`'s destination answered 410: `webhook_disabled` on
    /// `system`, naming the integration and connector.
    pub fn tell(&self, events: &InternalEvents, item: &OutboxItem, meta: &Meta, reason: &str) {
        let first = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(item.destination.clone());
        if !first {
            return;
        }
        tracing::warn!(destination = %item.destination, "webhook disabled: the receiver answered 410 Gone");
        let system = Idn::known("system");
        let mut notice = crate::domain::Event::for_persona(
            item.account.clone(),
            system.clone(),
            system,
            Idn::known("webhook_disabled"),
            meta.persona(),
        );
        notice
            .arguments
            .push("integrationIdn", meta.integration.as_str());
        notice
            .arguments
            .push("connectorIdn", meta.connector.as_str());
        notice.arguments.push("reason", reason);
        events.emit(notice);
    }

    /// `destination` takes messages again: a later 410 is told again.
    pub fn enabled(&self, destination: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(destination);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_the_command_and_its_meta_rebuilds_it() {
        let command = Command::new(
            Idn::known("acme"),
            Idn::known("telegram"),
            Idn::known("bot"),
            Idn::known("send_message"),
        )
        .with_argument("text", "Hi")
        .with_argument("chatId", "42");
        let act = Uuid::now_v7();
        let persona = PersonaId(Uuid::now_v7());
        let (body, meta) = message(&command, act, persona);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["type"], "send_message");
        assert_eq!(body["data"]["command_act_id"], act.to_string());
        assert_eq!(body["data"]["persona_id"], persona.0.to_string());
        assert_eq!(body["data"]["arguments"]["chatId"], "42");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        let meta: Meta = serde_json::from_slice(&meta).unwrap();
        let payload = serde_json::to_vec(&body).unwrap();
        let again = meta.command(&Idn::known("acme"), Some(&payload)).unwrap();
        assert_eq!(again.id, command.id);
        assert_eq!(again.integration.as_str(), "telegram");
        assert_eq!(again.arguments.get("text"), Some("Hi"));
        assert_eq!(again.connector.as_str(), "bot");
    }

    #[test]
    fn a_row_written_before_adapters_had_endpoints_reads_as_api() {
        let old = json!({"act": Uuid::nil(), "persona": Uuid::nil(), "command_id": Uuid::nil(),
            "connector": "hooks", "command": "send_email", "invocation_id": null});
        let meta: Meta = serde_json::from_value(old).unwrap();
        assert_eq!(meta.integration, "api");
    }

    #[test]
    fn a_rotated_secret_counts_until_its_overlap_ends() {
        let now = chrono::Utc::now();
        let (written, until) = rotation(
            "signing_secret",
            Some("whsec_old".into()),
            "whsec_new",
            Duration::from_secs(60),
            now,
        );
        assert_eq!(written[0], ("signing_secret".into(), "whsec_new".into()));
        assert_eq!(
            written[1],
            ("signing_secret_previous".into(), "whsec_old".into())
        );
        let settings: std::collections::HashMap<String, String> = written.into_iter().collect();
        let read = |idn: &str| settings.get(idn).cloned().filter(|v| !v.is_empty());
        assert_eq!(
            previous_secret(read, "signing_secret", now).as_deref(),
            Some("whsec_old")
        );
        let later = until.unwrap() + chrono::Duration::seconds(1);
        assert_eq!(previous_secret(read, "signing_secret", later), None);
        // No overlap: nothing kept.
        let (written, until) = rotation(
            "signing_secret",
            Some("whsec_old".into()),
            "whsec_new",
            Duration::ZERO,
            now,
        );
        assert_eq!((written[1].1.as_str(), until), ("", None));
        assert!(new_secret().starts_with("whsec_") && new_secret() != new_secret());
    }

    #[test]
    fn an_unusable_endpoint_names_its_setting() {
        let item = OutboxItem::new(Idn::known("acme"), "adapter:x", "k", "{}");
        let endpoint = |url: Option<&str>, secret: Option<&str>| Endpoint {
            url: ("command_delivery_url", url.map(str::to_owned)),
            secret: ("command_delivery_secret", secret.map(str::to_owned)),
            previous_secret: None,
            headers: None,
            timeout_seconds: None,
        };
        let err = |e: Endpoint| signed_post(e, &item).err().unwrap();
        assert!(err(endpoint(None, None)).contains("command_delivery_url"));
        assert!(err(endpoint(Some("nope"), None)).contains("command_delivery_url"));
        assert!(err(endpoint(Some("http://a.example/x"), None)).contains("command_delivery_secret"));
        assert!(err(endpoint(Some("http://a.example/x"), Some(""))).contains("whsec_"));
    }
}
