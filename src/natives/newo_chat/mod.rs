//! The native `newo_chat` integration: the Agent Creator web-chat API. Creating a connector
//! takes its `domain` (the web origins it serves, [`origins`]) and generates a `client_secret`
//! (shown once in the creation answer, kept sealed with the connector's settings, indexed here
//! in memory by its SHA-256). Web clients call the public REST API ([`routes`], at
//! `/api/internal/v1/talking-head/…` on the daemon's listener): chat-settings, create-actor
//! (idempotent per `external_id`, [`store`]), send-actor-event (through the durable intake);
//! each request is held to the connector's origins, CORS and rate limits ([`limits`]; the
//! client's address behind a trusted proxy: [`client_ip`]), a
//! refusal names its reason ([`refusal`]). They receive what skills send over socket.io
//! ([`realtime`], on its own listener): every command to a `newo_chat` connector for an actor
//! is emitted to all that actor's sockets, or buffered until one connects ([`hub`]).
//! [`config`] is its `[newo_chat]` section.

pub mod client_ip;
pub mod config;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod origins;
pub mod realtime;
pub mod refusal;
pub mod routes;
pub mod store;

use std::net::TcpListener;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use dashmap::DashMap;
use rand::RngCore;
use rustc_hash::FxBuildHasher;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::commands::{
    Answer, Answered, CommandRefusal, ConnectorChange, Failure, NativeCommand, NativeIntegration,
};
use crate::connectors::{Directory, Status};
use crate::domain::{Arguments, ConnectorKey, Idn, PersonaKey};
use crate::fault::Fault;
use crate::natives::component::{Built, Component, Listeners, NativeContext};
use crate::natives::section::{Section, Sections};
use crate::store::Store;
use client_ip::TrustedProxies;
pub use config::NewoChatConfig;
use hub::{Hub, Message, Push, PushError, Settled};
use limits::Limits;
use refusal::ChatRefusal;
use store::ActorRow;

/// The integration's idn.
pub const IDN: &str = "newo_chat";

/// Its `[newo_chat]` section, for its registration line.
pub const SECTION: Section = Section::of::<NewoChatConfig>();
/// Prefix of a generated client secret.
pub const SECRET_PREFIX: &str = "ncs_";
/// Random bytes of a generated client secret.
const SECRET_BYTES: usize = 32;
/// How often the housekeeping task expires buffered commands and forgets idle rate keys.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_secs(60);

/// A new client secret: `ncs_` and 256 random bits.
fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", B64URL.encode(bytes))
}

/// The SHA-256 of a client secret: how the index knows it.
fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// What the REST routes, the sockets and the executor share.
pub struct Chat {
    pub(crate) directory: Arc<Directory>,
    pub(crate) store: Option<Store>,
    pub(crate) persona_key: PersonaKey,
    pub(crate) config: NewoChatConfig,
    pub(crate) limits: Limits,
    /// Whose address a request from a trusted reverse proxy counts against.
    pub(crate) proxies: TrustedProxies,
    /// Client secrets (their SHA-256) to their connectors.
    secrets: DashMap<[u8; 32], ConnectorKey, FxBuildHasher>,
    /// Opens once the secrets of the connectors the store keeps are indexed.
    indexed: tokio::sync::watch::Sender<bool>,
    pub(crate) hub: Hub,
}

impl Chat {
    fn new(cx: &NativeContext, config: NewoChatConfig) -> Self {
        Chat {
            directory: cx.directory.clone(),
            store: cx.store.clone(),
            persona_key: cx.persona_key,
            limits: Limits::new(&config),
            // (Validated at load.)
            proxies: config.proxies().unwrap_or_default(),
            hub: Hub::new(cx.store.clone(), config.buffer_per_actor),
            config,
            secrets: DashMap::with_hasher(FxBuildHasher),
            indexed: tokio::sync::watch::Sender::new(cx.store.is_none()),
        }
    }

    /// The connector `secret` opens (held to the per-secret rate first); waits until the
    /// connectors restored at start are indexed.
    pub async fn connector(&self, secret: &str) -> Result<ConnectorKey, ChatRefusal> {
        let hash = secret_hash(secret);
        self.limits.secret(&hex::encode(&hash[..8]))?;
        let mut indexed = self.indexed.subscribe();
        if indexed.wait_for(|done| *done).await.is_err() {
            return Err(ChatRefusal::NoStore);
        }
        let key = self
            .secrets
            .get(&hash)
            .map(|k| k.clone())
            .ok_or(ChatRefusal::UnknownSecret)?;
        // The connector's own settings decide: its secret, or the one a rotation replaced
        // while the overlap lasts (a deleted connector, or a secret past its overlap, fails).
        let setting = |idn: &str| self.directory.setting(&key, idn);
        let matches = |s: &str| !s.is_empty() && bool::from(s.as_bytes().ct_eq(secret.as_bytes()));
        let current = setting("client_secret").unwrap_or_default();
        let previous =
            crate::relay::webhook::previous_secret(setting, "client_secret", chrono::Utc::now());
        if !matches(&current) && !previous.as_deref().is_some_and(matches) {
            return Err(ChatRefusal::UnknownSecret);
        }
        Ok(key)
    }

    /// The client address of a request from `peer` with these `X-Forwarded-For` values, held to
    /// the per-IP rate.
    pub fn by_ip<'a>(
        &self,
        peer: std::net::IpAddr,
        forwarded: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ChatRefusal> {
        self.limits.ip(self.proxies.client(peer, forwarded))
    }

    /// Whether `origin` is among the connector's domains.
    pub fn allows(&self, key: &ConnectorKey, origin: &str) -> bool {
        self.directory
            .setting(key, "domain")
            .is_some_and(|d| origins::allowed(&d, origin))
    }

    /// Whether `origin` is among the domains of any connector (a CORS preflight, which
    /// carries no secret).
    pub fn any_allows(&self, origin: &str) -> bool {
        let keys: Vec<ConnectorKey> = self.secrets.iter().map(|e| e.value().clone()).collect();
        keys.iter().any(|k| self.allows(k, origin))
    }

    /// Whether the connector runs.
    pub fn running(&self, key: &ConnectorKey) -> bool {
        self.directory
            .find(&key.account, IDN, key.connector.as_str())
            .is_some_and(|v| v.status == Status::Running)
    }

    /// The store, or why the web chat cannot work without one.
    pub fn store(&self) -> Result<&Store, ChatRefusal> {
        self.store.as_ref().ok_or(ChatRefusal::NoStore)
    }

    /// The actor `external_id` of the connector, read on a blocking thread.
    pub async fn actor(
        &self,
        key: &ConnectorKey,
        external_id: &str,
    ) -> Result<Option<ActorRow>, crate::api::error::ApiError> {
        let store = self.store()?.clone();
        let (key, external_id) = (key.clone(), external_id.to_owned());
        let row = tokio::task::spawn_blocking(move || store::actor(&store, &key, &external_id))
            .await
            .map_err(|_| crate::store::StoreError::Closed)??;
        Ok(row)
    }

    /// Indexes the secrets of the connectors the store keeps (at start, once they are back).
    async fn index(&self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let _done = Indexed(&self.indexed);
        let rows = match tokio::task::spawn_blocking(move || store::connectors(&store)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "newo_chat connectors were not indexed");
                return;
            }
            Err(_) => return,
        };
        let found = rows.len();
        for (account, connector) in rows {
            let (Ok(account), Ok(connector)) = (
                Idn::parse("account", &account),
                Idn::parse("connector", &connector),
            ) else {
                continue;
            };
            let key = ConnectorKey {
                account,
                integration: Idn::known(IDN),
                connector,
            };
            let setting = |idn: &str| self.directory.setting(&key, idn);
            // A rotation's replaced secret too, while its overlap lasts.
            let previous = crate::relay::webhook::previous_secret(
                setting,
                "client_secret",
                chrono::Utc::now(),
            );
            for secret in setting("client_secret").into_iter().chain(previous) {
                self.secrets.insert(secret_hash(&secret), key.clone());
            }
        }
        tracing::info!(
            connectors = found,
            indexed = self.secrets.len(),
            "newo_chat client secrets indexed"
        );
    }

    /// Expires buffered commands past `newo_chat.buffer_ttl_ms`; forgets idle rate keys.
    async fn housekeeping(&self) {
        self.limits.shrink();
        let Some(store) = &self.store else {
            return;
        };
        let before = chrono::Utc::now().timestamp_millis() - self.config.buffer_ttl_ms as i64;
        match store::expire(store, before).await {
            Ok(n) if n > 0 => metrics::newo_chat_dropped("expired", n as u64),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "buffered web-chat commands were not expired"),
        }
    }
}

/// Opens the index's gate when dropped (indexed, or given up: lookups go on either way).
struct Indexed<'a>(&'a tokio::sync::watch::Sender<bool>);

impl Drop for Indexed<'_> {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// The `newo_chat` component, with its `[newo_chat]` section and its bound socket.io listener.
pub struct NewoChatComponent {
    config: NewoChatConfig,
    listener: Option<TcpListener>,
}

/// The component of `config`, for the registration list: binds `newo_chat.listen` (a daemon
/// that cannot, does not start).
pub fn component(
    sections: &Sections,
    listeners: Listeners,
) -> Result<Box<dyn Component>, std::io::Error> {
    let config: NewoChatConfig = sections.get();
    let listener = match listeners {
        Listeners::Bind => {
            let listener = TcpListener::bind(config.listen)?;
            listener.set_nonblocking(true)?;
            Some(listener)
        }
        Listeners::Skip => None,
    };
    Ok(Box::new(NewoChatComponent { config, listener }))
}

/// The component without a socket.io listener (an engine in tests: REST and commands only).
pub fn component_without_sockets(config: &NewoChatConfig) -> Box<dyn Component> {
    Box::new(NewoChatComponent {
        config: config.clone(),
        listener: None,
    })
}

impl Component for NewoChatComponent {
    fn idn(&self) -> &'static str {
        IDN
    }

    fn metrics(&self) -> Option<fn()> {
        Some(metrics::describe)
    }

    fn migrations(&self) -> &'static [&'static str] {
        store::MIGRATIONS
    }

    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        let chat = Arc::new(Chat::new(cx, self.config));
        if let Some(listener) = self.listener {
            if let Err(e) = realtime::start(listener, chat.clone(), cx.shutdown.clone()) {
                tracing::error!(error = %e, "the newo_chat socket.io listener did not start");
            }
        }
        let (started, shutdown, c) = (cx.started.clone(), cx.shutdown.clone(), chat.clone());
        tokio::spawn(async move {
            if !started.wait().await {
                return;
            }
            c.index().await;
            let mut tick = tokio::time::interval(HOUSEKEEPING);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => c.housekeeping().await,
                }
            }
        });
        let data = actix_web::web::Data::from(chat.clone());
        Built::executor(Arc::new(NewoChat { chat })).with_routes(move |cfg| {
            cfg.app_data(data.clone());
            routes::register(cfg);
        })
    }
}

/// The `newo_chat` native integration's executor.
pub struct NewoChat {
    chat: Arc<Chat>,
}

/// The payload of a command on the socket, as the Agent Creator API documents it.
fn payload(c: &NativeCommand<'_>) -> serde_json::Value {
    let command = c.command;
    let arguments: Vec<_> = command
        .arguments
        .iter()
        .map(|a| json!({"name": a.name.as_str(), "value": a.value.as_str()}))
        .collect();
    json!({
        "integration_idn": IDN,
        "connector_idn": command.connector.as_str(),
        "command_idn": command.command.as_str(),
        "external_event_id": c.act.to_string(),
        "arguments": arguments,
    })
}

impl NewoChat {
    /// A new client secret for `connector`, indexed (its SHA-256) from now on.
    fn fresh(&self, connector: &ConnectorKey) -> String {
        let secret = new_secret();
        self.chat
            .secrets
            .insert(secret_hash(&secret), connector.clone());
        secret
    }
}

/// Answers a command whose message went to the actor's buffer (committed, crowding out
/// `dropped` older ones): `result_error`, `buffered=true`: it did not reach a socket yet.
fn buffered(answer: Answer, dropped: usize) {
    metrics::newo_chat_buffered(1);
    if dropped > 0 {
        metrics::newo_chat_dropped("buffer_full", dropped as u64);
    }
    answer.fail(Failure {
        reason: "no socket of the actor is connected: buffered until one connects".into(),
        fault: Fault::Peer,
        retryable: false,
        arguments: Arguments::from_iter([("buffered", "true")]),
        unanswered: false,
    });
}

/// `result_success` naming how many sockets took the command.
fn delivered(n: usize) -> Arguments {
    Arguments::from_iter([("sockets", n.to_string())])
}

/// Answers a command whose message could not be buffered.
fn unbuffered(answer: Answer, e: PushError) {
    answer.refuse(CommandRefusal::Unavailable {
        integration: IDN.into(),
        reason: format!("the buffer was not written: {e}"),
    })
}

impl NativeIntegration for NewoChat {
    /// Emits the command to the actor's sockets (`result_success` with `sockets`, how many took
    /// it), or buffers it until one connects (`result_error`, `buffered=true`: it did not reach
    /// a socket yet). A command held behind a delivery of the actor's buffer is answered once
    /// it was emitted or, every joining socket gone, buffered.
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let command = c.command;
        let key = ConnectorKey::new(&command.account, &command.integration, &command.connector);
        let m = Message {
            event: command.command.to_string(),
            payload: payload(&c),
        };
        let unavailable = |reason: String| CommandRefusal::Unavailable {
            integration: IDN.into(),
            reason,
        };
        match self.chat.hub.push(&(key, c.persona), m) {
            Ok(Push::Delivered(n)) => Ok(Answered::Now(delivered(n))),
            Ok(Push::Held(settling)) => {
                let answer = c.answer_later();
                tokio::spawn(async move {
                    match settling.await.unwrap_or(Err(PushError::Stopped)) {
                        Ok(Settled::Delivered(n)) => answer.succeed(delivered(n)),
                        Ok(Settled::Buffered(dropped)) => buffered(answer, dropped),
                        Ok(Settled::Dropped) => answer.fail(Failure {
                            reason: "crowded out by newer commands while the actor's buffer was delivered".into(),
                            fault: Fault::Peer,
                            retryable: false,
                            arguments: Arguments::from_iter([("buffered", "false")]),
                            unanswered: false,
                        }),
                        Err(e) => unbuffered(answer, e),
                    }
                });
                Ok(Answered::Later)
            }
            Ok(Push::Buffered(written)) => {
                let answer = c.answer_later();
                tokio::spawn(async move {
                    match written.await {
                        Ok(dropped) => buffered(answer, dropped),
                        Err(e) => unbuffered(answer, PushError::Store(e)),
                    }
                });
                Ok(Answered::Later)
            }
            Err(PushError::Store(e)) => Err(unavailable(format!("{e}; try again"))),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    /// A stopped or deleted connector's sockets close; a deleted one's actors, buffer and
    /// secret go.
    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        match change {
            ConnectorChange::Running => {}
            ConnectorChange::Stopped => self.chat.hub.close(connector),
            ConnectorChange::Deleted => {
                self.chat.hub.close(connector);
                self.chat.secrets.retain(|_, k| k != connector);
                if let Some(store) = self.chat.store.clone() {
                    let key = connector.clone();
                    tokio::spawn(async move {
                        match store::forget_connector(&store, &key).await {
                            Ok(n) if n > 0 => {
                                metrics::newo_chat_dropped("connector_deleted", n as u64)
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "a deleted web-chat connector's rows stay")
                            }
                        }
                    });
                }
            }
        }
    }

    /// A new connector's client secret (shown once).
    fn connector_created(&self, connector: &ConnectorKey) -> Vec<(String, String)> {
        vec![("client_secret".into(), self.fresh(connector))]
    }

    /// `rotate-secret` replaces the client secret; the old one opens the connector until the
    /// overlap ends (`client_secret_previous_until`), then no more.
    fn rotatable_secret(&self) -> Option<&'static str> {
        Some("client_secret")
    }

    /// A rotation's new client secret, indexed from now on.
    fn fresh_secret(&self, connector: &ConnectorKey) -> Option<String> {
        Some(self.fresh(connector))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_long_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(SECRET_PREFIX), "{a}");
        assert!(a.len() >= SECRET_PREFIX.len() + 43, "{a}");
        assert_ne!(a, b);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
