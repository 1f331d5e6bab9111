//! Commands to adapters in the embedded mode (no queue transport): a connector of an external
//! integration takes its commands at a delivery endpoint (`command_delivery_url`: signed
//! webhooks, exactly as the `api` native's outgoing ones, `webhook.rs`) or over its command
//! stream (`command_stream: true`, `stream.rs`), or both (the endpoint wins). Either way a
//! command is a message in the daemon's durable outbox (kind `adapter`, destination
//! `adapter:<account>/<integration>/<connector>`, keyed by persona: order per conversation, its
//! id the command act id), kept until delivered (a 2xx, an acknowledgement), retried with
//! backoff; the adapter answers with events (`POST /v1/events`), as over NATS. What did not
//! arrive (refused for good, out of budget, 410) answers `result_error` and is dead-lettered
//! (`delivery_failed`); a 410 disables the endpoint (`webhook_disabled`) until the connector
//! runs again. Creating such a connector writes its `command_delivery_secret` (shown once);
//! running one with neither way configured is refused naming `command_delivery_url`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::stream::{self, StreamSurface, Streams};
use super::webhook::{self, Endpoint, Gone, Meta};
use super::{AdapterCommand, CommandSink, NotDeliverable, Recall, RelayError};
use crate::commands::refusal::answer_refused;
use crate::commands::{CommandRefusal, ConnectorChange};
use crate::connectors::Directory;
use crate::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{Command, ConnectorKey, PersonaId};
use crate::ingress::InternalEvents;
use crate::outbound::outbox::{
    Attempt, Destination, OutboxError, OutboxItem, OutboxSlot, RetryPolicy, Settled, Withdraw,
};
use crate::outbound::retry::Backoff;
use crate::outbound::Egress;
use crate::telemetry::handles;

/// The outbox destination kind.
pub const KIND: &str = "adapter";
/// The outbox destination kind of recall notices (their own lanes: a notice never waits
/// behind the command it recalls).
pub const RECALL_KIND: &str = "recall";
/// How long a recall notice is tried: it is worth little later.
pub const RECALL_FOR: Duration = Duration::from_secs(300);
/// The connector setting naming the delivery endpoint.
pub const URL: &str = "command_delivery_url";
/// The connector setting holding the endpoint's signing secret (written at creation).
pub const SECRET: &str = "command_delivery_secret";
/// The connector setting opening the command stream (`true`).
pub const STREAM: &str = "command_stream";
/// How long a command to an endpoint is retried, from its first attempt (as `api`'s).
pub const RETRY_FOR: Duration = Duration::from_secs(3600);
/// How long a command waits for its adapter's stream (kept durable meanwhile).
pub const STREAM_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

/// The outbox destination of `connector`.
pub fn destination(connector: &ConnectorKey) -> String {
    format!(
        "{KIND}:{}/{}/{}",
        connector.account, connector.integration, connector.connector
    )
}

/// The outbox destination of `connector`'s recall notices.
pub fn recall_destination(connector: &ConnectorKey) -> String {
    format!(
        "{RECALL_KIND}:{}/{}/{}",
        connector.account, connector.integration, connector.connector
    )
}

/// How a connector takes its commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Endpoint,
    Stream,
}

/// What the delivery is built from.
pub struct DeliveryParts {
    pub directory: Arc<Directory>,
    pub egress: Egress,
    pub events: InternalEvents,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub outbox: Arc<OutboxSlot>,
}

/// The embedded relay: commands of external integrations to their adapters.
pub struct AdapterDelivery {
    directory: Arc<Directory>,
    events: InternalEvents,
    dead_letters: Arc<dyn DeadLetterStore>,
    outbox: Arc<OutboxSlot>,
    destination: Arc<AdapterDestination>,
}

struct AdapterDestination {
    directory: Arc<Directory>,
    egress: Egress,
    events: InternalEvents,
    streams: Arc<Streams>,
    gone: Gone,
    /// Commands a recall is withdrawing (`false`), and those it withdrew (`true`), until it
    /// reads them.
    recalling: Mutex<HashMap<Uuid, bool>>,
}

/// Recall notices: sent as the commands they name went (the endpoint, the stream).
struct RecallDestination(Arc<AdapterDestination>);

fn way(directory: &Directory, key: &ConnectorKey) -> Option<Way> {
    if directory.setting(key, URL).is_some_and(|u| !u.is_empty()) {
        return Some(Way::Endpoint);
    }
    (directory.setting(key, STREAM).as_deref() == Some("true")).then_some(Way::Stream)
}

impl AdapterDelivery {
    /// The delivery, its destination kind registered in the outbox.
    pub fn new(parts: DeliveryParts) -> Arc<AdapterDelivery> {
        let destination = Arc::new(AdapterDestination {
            directory: parts.directory.clone(),
            egress: parts.egress,
            events: parts.events.clone(),
            streams: Arc::default(),
            gone: Gone::default(),
            recalling: Mutex::default(),
        });
        parts.outbox.register(KIND, destination.clone());
        parts.outbox.register(
            RECALL_KIND,
            Arc::new(RecallDestination(destination.clone())),
        );
        Arc::new(AdapterDelivery {
            directory: parts.directory,
            events: parts.events,
            dead_letters: parts.dead_letters,
            outbox: parts.outbox,
            destination,
        })
    }

    /// The command stream's routes (documented).
    pub fn routes(
        &self,
    ) -> impl Fn(&mut utoipa_actix_web::service_config::ServiceConfig) + Send + Sync + 'static {
        let surface = actix_web::web::Data::new(StreamSurface {
            directory: self.directory.clone(),
            streams: self.destination.streams.clone(),
        });
        move |cfg| {
            cfg.app_data(surface.clone());
            stream::register(cfg);
        }
    }
}

impl CommandSink for AdapterDelivery {
    /// Queues the command in the outbox; refused (`result_error`) if its row does not commit.
    fn deliver(&self, c: AdapterCommand) -> Result<(), RelayError> {
        let command = &c.command;
        let key = ConnectorKey::new(&command.account, &command.integration, &command.connector);
        if way(&self.directory, &key).is_none() {
            return Err(RelayError::NoTransport);
        }
        let outbox = self
            .outbox
            .get()
            .ok_or_else(|| RelayError::Unavailable("the outbox is not started yet".into()))?;
        let (payload, meta) = webhook::message(command, c.act, c.persona);
        let item = OutboxItem::new(
            command.account.clone(),
            destination(&key),
            c.persona.0.to_string(),
            payload,
        )
        .with_id(c.act)
        .with_meta(meta);
        let durable = outbox.enqueue(item).map_err(|e| match e {
            OutboxError::Full => RelayError::Full,
            e => RelayError::Unavailable(e.to_string()),
        })?;
        let (events, dead_letters) = (self.events.clone(), self.dead_letters.clone());
        tokio::spawn(async move {
            if let Err(e) = durable.await {
                answer_refused(
                    &events,
                    &*dead_letters,
                    c.command.clone(),
                    c.act,
                    c.persona,
                    CommandRefusal::Unavailable {
                        integration: c.command.integration.to_string(),
                        reason: e.to_string(),
                    },
                );
            }
        });
        Ok(())
    }

    /// A new connector's endpoint secret (shown once).
    fn connector_created(&self, _connector: &ConnectorKey) -> Vec<(String, String)> {
        vec![(SECRET.into(), webhook::new_secret())]
    }

    fn rotatable_secret(&self) -> Option<&'static str> {
        Some(SECRET)
    }

    fn check_run(&self, connector: &ConnectorKey) -> Result<(), NotDeliverable> {
        match way(&self.directory, connector) {
            Some(_) => Ok(()),
            None => Err(NotDeliverable {
                setting: URL,
                reason: format!(
                    "without a message queue, commands reach this connector's adapter at a delivery endpoint ({URL}) or over its command stream ({STREAM}: true); neither is set"
                ),
            }),
        }
    }

    /// Withdraws the superseded commands still queued (never sent, no answer), and sends a
    /// recall notice for each one its adapter has (on its own lane: not behind the command).
    fn recall(&self, commands: Vec<Recall>) {
        let Some(outbox) = self.outbox.get().cloned() else {
            return;
        };
        let destination = self.destination.clone();
        tokio::spawn(async move {
            let ids: Vec<Uuid> = commands.iter().map(|r| r.act).collect();
            destination
                .recalling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(ids.iter().map(|id| (*id, false)));
            if let Err(e) = outbox.withdraw(Withdraw::Ids(ids.clone())).await {
                tracing::warn!(error = %e, "superseded commands could not be withdrawn");
            }
            let withdrawn: HashSet<Uuid> = {
                let mut recalling = destination
                    .recalling
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                ids.iter()
                    .filter(|id| recalling.remove(id) == Some(true))
                    .copied()
                    .collect()
            };
            for r in commands {
                if withdrawn.contains(&r.act) {
                    handles::recall("withdrawn");
                    continue;
                }
                let c = &r.command;
                let key = ConnectorKey::new(&c.account, &c.integration, &c.connector);
                let (payload, meta) = recall_notice(c, r.act, r.persona);
                let item = OutboxItem::new(
                    c.account.clone(),
                    recall_destination(&key),
                    r.persona.0.to_string(),
                    payload,
                )
                .with_meta(meta);
                if let Err(e) = outbox.enqueue(item) {
                    tracing::warn!(error = %e, "a recall notice was not queued");
                }
            }
        });
    }

    /// Running again enables an endpoint a 410 disabled; a deleted connector's queued commands
    /// are withdrawn.
    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        let destination = destination(connector);
        match change {
            ConnectorChange::Running => {
                outbox.enable(&destination);
                self.destination.gone.enabled(&destination);
            }
            ConnectorChange::Deleted => {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    let which = Withdraw::Matching {
                        destination,
                        key: None,
                        pick: Arc::new(|_| true),
                    };
                    if let Err(e) = outbox.withdraw(which).await {
                        tracing::warn!(error = %e, "a deleted connector's commands stay queued");
                    }
                });
            }
            ConnectorChange::Stopped => {}
        }
    }
}

/// The body of the recall of `command` (sent as `act`), and its meta: `{"type": "recall",
/// "timestamp", "data": {"command_act_id", "command_id", "command_idn", "persona_id",
/// "connector_idn", "invocation_id"?}}`.
fn recall_notice(command: &Command, act: Uuid, persona: PersonaId) -> (Bytes, Bytes) {
    let mut data = serde_json::json!({
        "command_act_id": act,
        "command_id": command.id,
        "command_idn": command.command.as_str(),
        "persona_id": persona.0,
        "connector_idn": command.connector.as_str(),
    });
    if let Some(i) = command.invocation_id {
        data["invocation_id"] = serde_json::json!(i);
    }
    let body = serde_json::json!({
        "type": "recall",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    });
    let (_, meta) = webhook::message(command, act, persona);
    (
        Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
        meta,
    )
}

fn unusable(reason: String) -> BoxFuture<'static, Attempt> {
    async move { Attempt::Failed(reason) }.boxed()
}

impl AdapterDestination {
    /// One attempt of `item` (a command, or a recall notice: `event`) by the way its
    /// connector takes commands now.
    fn attempt(&self, item: &OutboxItem, event: &str) -> BoxFuture<'static, Attempt> {
        let Some(key) = Meta::of(item).and_then(|m| m.key(&item.account)) else {
            return unusable("the message's connector is unreadable".into());
        };
        let setting = |idn: &str| self.directory.setting(&key, idn);
        match way(&self.directory, &key) {
            Some(Way::Endpoint) => {
                let endpoint = Endpoint {
                    url: (URL, setting(URL)),
                    secret: (SECRET, setting(SECRET)),
                    previous_secret: webhook::previous_secret(setting, SECRET, chrono::Utc::now()),
                    headers: None,
                    timeout_seconds: None,
                };
                match webhook::signed_post(endpoint, item) {
                    Ok((request, options)) => {
                        let egress = self.egress.clone();
                        async move { Attempt::of_sent(egress.send(request, &options).await) }
                            .boxed()
                    }
                    Err(reason) => unusable(reason),
                }
            }
            Some(Way::Stream) if event == "recall" => {
                let sent = self
                    .streams
                    .notify(&key, stream::frame(None, event, &item.payload));
                async move {
                    if sent {
                        Attempt::Delivered(Default::default())
                    } else {
                        Attempt::Retry {
                            reason: "no command stream is open".into(),
                            retry_after: Some(stream::NO_STREAM_RETRY),
                        }
                    }
                }
                .boxed()
            }
            Some(Way::Stream) => self.streams.offer(
                &key,
                item.id,
                stream::frame(Some(item.id), event, &item.payload),
            ),
            None => unusable(format!("the connector has neither {URL} nor {STREAM}")),
        }
    }
}

impl Destination for RecallDestination {
    fn deliver(&self, item: &OutboxItem, _attempt: u32) -> BoxFuture<'static, Attempt> {
        self.0.attempt(item, "recall")
    }

    fn retry_policy(&self, _item: &OutboxItem) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::new(RetryPolicy::DEFAULT_INITIAL, Duration::from_secs(30)),
            max_attempts: None,
            retry_for: RECALL_FOR,
        }
    }

    fn settled(&self, _item: &OutboxItem, outcome: &Settled) {
        if matches!(outcome, Settled::Delivered(_)) {
            handles::recall("notified");
        }
    }
}

impl Destination for AdapterDestination {
    fn deliver(&self, item: &OutboxItem, _attempt: u32) -> BoxFuture<'static, Attempt> {
        self.attempt(item, "command")
    }

    fn retry_policy(&self, item: &OutboxItem) -> RetryPolicy {
        let stream = Meta::of(item)
            .and_then(|m| m.key(&item.account))
            .is_some_and(|k| way(&self.directory, &k) == Some(Way::Stream));
        RetryPolicy {
            backoff: Backoff::new(RetryPolicy::DEFAULT_INITIAL, RetryPolicy::DEFAULT_MAX),
            max_attempts: None,
            retry_for: if stream { STREAM_RETRY_FOR } else { RETRY_FOR },
        }
    }

    fn settled(&self, item: &OutboxItem, outcome: &Settled) {
        if matches!(outcome, Settled::Withdrawn) {
            if let Some(w) = self
                .recalling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&item.id)
            {
                *w = true;
            }
            return;
        }
        let Some(meta) = Meta::of(item) else {
            tracing::error!(id = %item.id, "an adapter command's meta is unreadable");
            return;
        };
        let Some(command) = meta.command(&item.account, None) else {
            return;
        };
        if let Settled::Gone { reason } = outcome {
            self.gone.tell(&self.events, item, &meta, reason);
        }
        // Delivered: the adapter answers with its own events.
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
    fn a_connector_s_destination_names_its_integration() {
        let key = ConnectorKey {
            account: Idn::known("acme"),
            integration: Idn::known("telegram"),
            connector: Idn::known("bot"),
        };
        assert_eq!(destination(&key), "adapter:acme/telegram/bot");
    }
}
