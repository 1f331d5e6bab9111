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

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::Value;

use crate::commands::refusal::{count, result_event};
use crate::connectors::Directory;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::domain::ConnectorKey;
use crate::ingress::InternalEvents;
use crate::outbound::outbox::{Attempt, Destination, OutboxItem, RetryPolicy, Settled};
use crate::outbound::retry::Backoff;
use crate::outbound::{Egress, OutboundRequest, SendOptions};
use crate::relay::webhook::{self, text_of, Endpoint, Meta};

/// The outbox destination kind.
pub const KIND: &str = "api";
/// How long a message is retried, from its first attempt.
pub const RETRY_FOR: Duration = Duration::from_secs(3600);

/// The outbox destination of `connector`.
pub fn destination(connector: &ConnectorKey) -> String {
    format!("{KIND}:{}/{}", connector.account, connector.connector)
}

pub use webhook::message;

/// The `api` destination.
pub struct ApiDestination {
    pub directory: Arc<Directory>,
    pub egress: Egress,
    pub events: InternalEvents,
    /// Destinations found gone, told once (`webhook_disabled`) until enabled again.
    pub gone: webhook::Gone,
}

/// An attempt that cannot be made (its connector or settings are gone): refused for good.
fn unusable(reason: String) -> BoxFuture<'static, Attempt> {
    async move { Attempt::Failed(reason) }.boxed()
}

impl ApiDestination {
    fn key_of(&self, item: &OutboxItem) -> Option<ConnectorKey> {
        Meta::of(item)?.key(&item.account)
    }

    /// The signed request of one attempt, or why none can be made.
    fn request(
        &self,
        key: &ConnectorKey,
        item: &OutboxItem,
    ) -> Result<(OutboundRequest, SendOptions), String> {
        let setting = |idn: &str| self.directory.setting(key, idn);
        webhook::signed_post(
            Endpoint {
                url: ("outgoing_webhook_url", setting("outgoing_webhook_url")),
                secret: ("signing_secret", setting("signing_secret")),
                previous_secret: webhook::previous_secret(
                    setting,
                    "signing_secret",
                    chrono::Utc::now(),
                ),
                headers: setting("outgoing_headers"),
                timeout_seconds: setting("timeout_seconds"),
            },
            item,
        )
    }
}

impl Destination for ApiDestination {
    fn deliver(&self, item: &OutboxItem, _attempt: u32) -> BoxFuture<'static, Attempt> {
        let Some(key) = self.key_of(item) else {
            return unusable("the message's connector is unreadable".into());
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
        let Some(meta) = Meta::of(item) else {
            tracing::error!(id = %item.id, "an outgoing webhook's meta is unreadable");
            return;
        };
        let Some(command) = meta.command(&item.account, None) else {
            return;
        };
        if let Settled::Delivered(receipt) = outcome {
            count(&command, "sent");
            let mut e = result_event(&command, "result_success", meta.act, meta.persona());
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
        if let Settled::Gone { reason } = outcome {
            self.gone.tell(&self.events, item, &meta, reason);
        }
        if let Some(reason) = webhook::failure(outcome) {
            webhook::answer_failed(&self.events, &command, &meta, reason);
        }
    }

    fn dead_letter(
        &self,
        item: &OutboxItem,
        reason: DeadLetterReason,
        detail: String,
    ) -> DeadLetter {
        webhook::dead_letter(item, reason, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Idn;

    #[test]
    fn an_api_connector_s_destination_names_it() {
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
