//! The native `api` integration: third-party systems talk to agents over webhooks. Creating an
//! `api` connector assigns its `incoming_webhook_url`, an unguessable path this native owns
//! (`/hooks/api/<account>/<connector>/<token>`, 256 random bits), and a `signing_secret`
//! (`whsec_…`, shown once in the creation answer). A POST there ([`incoming`]) is checked per
//! Standard Webhooks (or, with `verify_signature=false` set explicitly, by the connector's
//! token), read by the documented rule ([`mapping`]), held to the `incoming_events` allow-list
//! and enters through the durable intake, its `webhook-id` deduplicating retries; a refusal is
//! a 4xx naming the reason ([`refusal`]). Commands to the connector go out as signed
//! webhooks to its `outgoing_webhook_url` through the daemon's durable outbox ([`outgoing`]:
//! its own `api` destination kind, registered in `NativeContext::outbox`).

pub mod incoming;
pub mod mapping;
pub mod outgoing;
pub mod refusal;

use std::sync::Arc;

use actix_web::web;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use rand::RngCore;

use crate::commands::{
    Answered, CommandRefusal, ConnectorChange, NativeCommand, NativeIntegration,
};
use crate::connectors::Directory;
use crate::dead_letter::NativeReason;
use crate::domain::{ConnectorKey, PersonaId};
use crate::natives::component::{Built, Component, NativeContext};
use crate::outbound::outbox::{OutboxError, OutboxSlot, Withdraw};
use outgoing::ApiDestination;

/// The integration's idn.
pub const IDN: &str = "api";
/// Random bytes of an incoming webhook URL's token.
const TOKEN_BYTES: usize = 32;

/// The `api` component, for the registration list.
pub struct ApiComponent;

/// The component: incoming webhooks, and commands out through its outbox.
pub fn component() -> Box<dyn Component> {
    Box::new(ApiComponent)
}

impl Component for ApiComponent {
    fn idn(&self) -> &'static str {
        IDN
    }

    fn dead_letter_reasons(&self) -> &'static [NativeReason] {
        &[refusal::WEBHOOK_REFUSED]
    }

    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        let surface = web::Data::new(incoming::Surface {
            directory: cx.directory.clone(),
            dead_letters: cx.dead_letters.clone(),
        });
        let destination = Arc::new(ApiDestination {
            directory: cx.directory.clone(),
            egress: cx.egress.clone(),
            events: cx.events.clone(),
            gone: Default::default(),
        });
        cx.outbox.register(outgoing::KIND, destination.clone());
        let native = Arc::new(ApiNative {
            directory: cx.directory.clone(),
            destination,
            outbox: cx.outbox.clone(),
        });
        Built::executor(native).with_routes(move |cfg| {
            cfg.app_data(surface.clone());
            incoming::register(cfg);
        })
    }
}

/// The `api` native integration's executor.
pub struct ApiNative {
    directory: Arc<Directory>,
    destination: Arc<ApiDestination>,
    /// The daemon's outbox, started after the start gate (never without a store).
    outbox: Arc<OutboxSlot>,
}

/// The incoming webhook path of `connector` with `token`.
pub fn incoming_path(connector: &ConnectorKey, token: &str) -> String {
    format!(
        "{}/{}/{}/{token}",
        incoming::PREFIX,
        connector.account,
        connector.connector
    )
}

/// A conversation's ordering key in the outbox.
fn persona_key(persona: PersonaId) -> String {
    persona.0.to_string()
}

/// `n` random bytes.
fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

impl NativeIntegration for ApiNative {
    /// Queues the command for the connector's outgoing webhook; answered once it settles.
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let command = c.command;
        let key = ConnectorKey::new(&command.account, &command.integration, &command.connector);
        let setting = |idn: &str| self.directory.setting(&key, idn);
        let accepted: Vec<String> = setting("outgoing_commands")
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default();
        if !accepted.is_empty() && !accepted.iter().any(|a| a == command.command.as_str()) {
            return Err(CommandRefusal::NotAccepted {
                integration: format!("{IDN}/{}", command.connector),
                command: command.command.to_string(),
            });
        }
        if setting("outgoing_webhook_url").is_none_or(|u| u.is_empty()) {
            return Err(CommandRefusal::InvalidArgument {
                argument: "outgoing_webhook_url".into(),
                reason: format!("connector {} has no outgoing webhook", command.connector),
            });
        }
        let unavailable = |reason: String| CommandRefusal::Unavailable {
            integration: IDN.into(),
            reason,
        };
        let outbox = self
            .outbox
            .get()
            .ok_or_else(|| unavailable("the outbox is not started yet".into()))?;
        let (payload, meta) = outgoing::message(command, c.act, c.persona);
        let item = crate::outbound::outbox::OutboxItem::new(
            command.account.clone(),
            outgoing::destination(&key),
            persona_key(c.persona),
            payload,
        )
        .with_id(c.act)
        .with_meta(meta);
        let durable = outbox
            .enqueue(item)
            .map_err(|e| unavailable(e.to_string()))?;
        let answer = c.answer_later();
        tokio::spawn(async move {
            // Kept: the outbox answers once it settles. Not kept: answered now.
            if let Err(e) = durable.await {
                let retry = matches!(e, OutboxError::Full);
                answer.refuse(CommandRefusal::Unavailable {
                    integration: IDN.into(),
                    reason: format!("{e}{}", if retry { "; try again" } else { "" }),
                });
            }
        });
        Ok(Answered::Later)
    }

    /// Running again enables a destination a 410 disabled; a deleted connector's queued
    /// messages are withdrawn.
    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        let destination = outgoing::destination(connector);
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
                        tracing::warn!(error = %e, "a deleted api connector's webhooks stay queued");
                    }
                });
            }
            ConnectorChange::Stopped => {}
        }
    }

    fn recalls(&self) -> bool {
        true
    }

    /// A superseded turn's outgoing webhooks that have not left are withdrawn, unsent (no
    /// answer: the turn is over); one being sent or sent already stays as it is.
    fn recall(&self, commands: Vec<crate::commands::relay::Recall>) {
        let Some(outbox) = self.outbox.get().cloned() else {
            return;
        };
        let ids: Vec<uuid::Uuid> = commands.iter().map(|r| r.act).collect();
        tokio::spawn(async move {
            match outbox.withdraw(Withdraw::Ids(ids)).await {
                Ok(n) => crate::telemetry::handles::recalls_withdrawn(n),
                Err(e) => tracing::warn!(error = %e, "a superseded turn's webhooks stay queued"),
            }
        });
    }

    /// The secret a rotation replaces (keeping the old one for an overlap).
    fn rotatable_secret(&self) -> Option<&'static str> {
        Some("signing_secret")
    }

    /// A new connector's incoming URL and signing secret (secret: shown once).
    fn connector_created(&self, connector: &ConnectorKey) -> Vec<(String, String)> {
        created_settings(connector)
    }
}

/// The settings the daemon writes for a new `api` connector: its incoming URL, a fresh secret.
fn created_settings(connector: &ConnectorKey) -> Vec<(String, String)> {
    let token = B64URL.encode(random(TOKEN_BYTES));
    let secret = crate::relay::webhook::new_secret();
    vec![
        (
            "incoming_webhook_url".into(),
            incoming_path(connector, &token),
        ),
        ("signing_secret".into(), secret),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterStore};
    use crate::store::dead_letters::SqliteDeadLetters;

    /// `webhook_refused` is the api native's own reason: stored, counted and listed by its code
    /// as before, and a letter stored before (or by an earlier version) reads back as it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_webhook_s_letter_keeps_its_code_and_reads_back() {
        crate::dead_letter::native::register(ApiComponent.dead_letter_reasons());
        let reason = DeadLetterReason::Native(refusal::WEBHOOK_REFUSED);
        assert_eq!(reason.code(), "webhook_refused");
        assert_eq!(DeadLetterReason::of_code("webhook_refused"), Some(reason));

        let dir = std::env::temp_dir().join(format!("sb-api-dl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Store::open(&dir.join("t.db"), 64, 5000).unwrap();
        let letters = SqliteDeadLetters::new(store.clone());
        let letter = DeadLetter::raw_for(
            reason,
            Idn::known("acme"),
            "api/hooks: signature".into(),
            "application/json".into(),
            b"{}".to_vec(),
        );
        let id = letter.id;
        letters.record(letter);
        let stored = loop {
            if let Some(l) = tokio::task::block_in_place(|| letters.get(id)).unwrap() {
                break l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(stored.reason, reason);
        let code: String = tokio::task::block_in_place(|| {
            store.read(move |c| {
                c.query_row(
                    "SELECT reason FROM dead_letters WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
            })
        })
        .unwrap();
        assert_eq!(code, "webhook_refused");
        let _ = std::fs::remove_dir_all(&dir);
    }
    use crate::domain::Idn;
    use crate::outbound::signing::SigningKey;

    #[test]
    fn a_new_connector_gets_an_unguessable_url_and_a_usable_secret() {
        let key = ConnectorKey {
            account: Idn::known("acme"),
            integration: Idn::known("api"),
            connector: Idn::known("hooks"),
        };
        let a = created_settings(&key);
        let b = created_settings(&key);
        let url = &a[0].1;
        assert!(url.starts_with("/hooks/api/acme/hooks/"), "{url}");
        assert!(url.rsplit('/').next().unwrap().len() >= 43, "{url}");
        assert_ne!(a, b, "each creation draws anew");
        assert_eq!(a[1].0, "signing_secret");
        assert!(SigningKey::parse(&a[1].1).is_ok());
    }
}
