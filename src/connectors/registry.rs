//! The connector registry: every connector of every account, its settings and status, and the
//! handle of its actor (address and inbox) while it runs. Lifecycle (create stopped, run, stop, delete), settings
//! validation and the internal connectors live here; the hot path only reads.
//!
//! **Sending under the guard.** Whoever sends to a connector actor does so while holding the
//! registry's read guard ([`ConnectorRegistry::with_running`]). Stopping takes the write guard,
//! removes the handle, then tells the actor to stop: every command sent before is already in
//! its mailbox, ahead of the stop, every event sent before is in its inbox, which it drains
//! before stopping, and nothing can be sent after. Changes take effect without losing events
//! in flight.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use uuid::Uuid;

use super::actor::{ConnectorHandle, Shutdown};
use super::settings::{self, SettingError, Settings, Writer};
use crate::catalog::{Catalog, Integration};
use crate::domain::{Idn, IdnError};
use crate::telemetry::handles;

/// `(account, integration, connector)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorKey {
    pub account: Idn,
    pub integration: Idn,
    pub connector: Idn,
}

impl ConnectorKey {
    pub fn new(account: &Idn, integration: &Idn, connector: &Idn) -> Self {
        ConnectorKey {
            account: account.clone(),
            integration: integration.clone(),
            connector: connector.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

struct Entry {
    id: Uuid,
    title: String,
    settings: Settings,
    status: Status,
    internal: bool,
    integration: Arc<Integration>,
    actor: Option<ConnectorHandle>,
    created_at: DateTime<Utc>,
}

/// A connector as the control plane shows it. Secret settings are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorView {
    pub id: Uuid,
    pub key: ConnectorKey,
    pub title: String,
    pub status: Status,
    pub internal: bool,
    /// Non-secret settings with their values.
    pub settings: Vec<(String, String)>,
    pub created_at: DateTime<Utc>,
}

/// Why a connector cannot be reached right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    UnknownIntegration(String),
    UnknownConnector {
        integration: String,
        connector: String,
    },
    Stopped {
        integration: String,
        connector: String,
    },
}

/// The control plane's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
    #[error("no connector {0}")]
    NotFound(String),
    #[error("connector {integration}/{connector} already exists")]
    Conflict {
        integration: String,
        connector: String,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("connector {0} is internal: it always exists and always runs")]
    Internal(String),
    #[error("connector {0} is running: stop it before deleting it")]
    StillRunning(String),
}

impl ControlError {
    pub fn field(&self) -> Option<&str> {
        match self {
            ControlError::Invalid { field, .. } => Some(field),
            ControlError::Conflict { .. } => Some("connector_idn"),
            _ => None,
        }
    }
}

impl From<IdnError> for ControlError {
    fn from(e: IdnError) -> Self {
        ControlError::Invalid {
            field: e.field.clone(),
            reason: format!("{} (got {:?})", e.reason, e.value),
        }
    }
}

impl From<SettingError> for ControlError {
    fn from(e: SettingError) -> Self {
        ControlError::Invalid {
            field: format!("settings.{}", e.setting),
            reason: e.reason,
        }
    }
}

/// Starts the actor of a connector that begins to run.
pub type ActorFactory =
    Box<dyn Fn(&ConnectorKey, &Arc<Integration>, bool) -> ConnectorHandle + Send + Sync>;

pub struct ConnectorRegistry {
    catalog: Arc<Catalog>,
    connectors: DashMap<ConnectorKey, Entry, FxBuildHasher>,
    by_id: DashMap<Uuid, ConnectorKey, FxBuildHasher>,
    integration_settings: DashMap<(Idn, Idn), Settings, FxBuildHasher>,
    factory: OnceLock<ActorFactory>,
}

impl ConnectorRegistry {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        ConnectorRegistry {
            catalog,
            connectors: DashMap::with_hasher(FxBuildHasher),
            by_id: DashMap::with_hasher(FxBuildHasher),
            integration_settings: DashMap::with_hasher(FxBuildHasher),
            factory: OnceLock::new(),
        }
    }

    /// Wires the actor factory in, once, before any connector runs.
    pub fn set_factory(&self, factory: ActorFactory) {
        if self.factory.set(factory).is_err() {
            panic!("connector actor factory set twice");
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Calls `send(addr, payload)` with the running connector `key`'s actor while holding the
    /// read guard; gives `payload` back with the reason when the connector cannot be reached.
    #[inline]
    pub fn with_running<T, R>(
        &self,
        key: &ConnectorKey,
        payload: T,
        send: impl FnOnce(&ConnectorHandle, T) -> R,
    ) -> Result<R, (T, Reach)> {
        let (integration, connector) = (&key.integration, &key.connector);
        match self.connectors.get(key) {
            Some(e) => match &e.actor {
                Some(actor) => Ok(send(actor, payload)),
                None => Err((
                    payload,
                    Reach::Stopped {
                        integration: integration.to_string(),
                        connector: connector.to_string(),
                    },
                )),
            },
            None if self.catalog.get(integration.as_str()).is_none() => {
                Err((payload, Reach::UnknownIntegration(integration.to_string())))
            }
            None => Err((
                payload,
                Reach::UnknownConnector {
                    integration: integration.to_string(),
                    connector: connector.to_string(),
                },
            )),
        }
    }

    fn view(key: &ConnectorKey, e: &Entry) -> ConnectorView {
        let secret = |idn: &str| {
            e.integration
                .spec
                .connector_settings
                .iter()
                .any(|p| p.idn == idn && p.is_secret)
        };
        ConnectorView {
            id: e.id,
            key: key.clone(),
            title: e.title.clone(),
            status: e.status,
            internal: e.internal,
            settings: e
                .settings
                .0
                .iter()
                .filter(|(k, _)| !secret(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_at: e.created_at,
        }
    }

    fn integration(&self, idn: &str) -> Result<Arc<Integration>, ControlError> {
        self.catalog
            .find(idn)
            .cloned()
            .ok_or_else(|| ControlError::UnknownIntegration(idn.to_owned()))
    }

    /// Makes sure the internal connectors of `account` exist and run.
    pub fn ensure_account(&self, account: &Idn) {
        for integration in self.catalog.all() {
            for c in &integration.internal_connectors {
                let key = ConnectorKey {
                    account: account.clone(),
                    integration: integration.idn.clone(),
                    connector: c.clone(),
                };
                if self.connectors.contains_key(&key) {
                    continue;
                }
                let id = Uuid::new_v4();
                let mut entry = Entry {
                    id,
                    title: format!("{} {}", integration.spec.title, c),
                    settings: Settings::default(),
                    status: Status::Running,
                    internal: true,
                    integration: integration.clone(),
                    actor: None,
                    created_at: Utc::now(),
                };
                entry.actor = Some(self.start_actor(&key, integration, true));
                handles::connectors(integration.idn.as_str(), "running").increment(1.0);
                self.by_id.insert(id, key.clone());
                self.connectors.insert(key, entry);
            }
        }
    }

    fn start_actor(
        &self,
        key: &ConnectorKey,
        integration: &Arc<Integration>,
        internal: bool,
    ) -> ConnectorHandle {
        let factory = self
            .factory
            .get()
            .expect("the engine wires the actor factory before connectors run");
        factory(key, integration, internal)
    }

    /// Creates a **stopped** connector with validated settings.
    pub fn create(
        &self,
        account: &Idn,
        integration: &str,
        connector_idn: &str,
        title: &str,
        initial: &[(String, String)],
    ) -> Result<ConnectorView, ControlError> {
        let integration = self.integration(integration)?;
        let connector = Idn::parse("connector_idn", connector_idn)?;
        if title.trim().is_empty() {
            return Err(ControlError::Invalid {
                field: "title".into(),
                reason: "must not be empty".into(),
            });
        }
        if integration.is_internal_connector(connector.as_str()) || integration.idn == *"system" {
            return Err(ControlError::Internal(format!(
                "{}/{}",
                integration.idn, connector
            )));
        }
        let settings = settings::apply(
            &integration.spec.connector_settings,
            &Settings::default(),
            initial,
            Writer::User,
        )?;
        self.ensure_account(account);
        let key = ConnectorKey {
            account: account.clone(),
            integration: integration.idn.clone(),
            connector: connector.clone(),
        };
        let id = Uuid::new_v4();
        match self.connectors.entry(key.clone()) {
            dashmap::Entry::Occupied(_) => Err(ControlError::Conflict {
                integration: integration.idn.to_string(),
                connector: connector.to_string(),
            }),
            dashmap::Entry::Vacant(v) => {
                let entry = Entry {
                    id,
                    title: title.to_owned(),
                    settings,
                    status: Status::Stopped,
                    internal: false,
                    integration: integration.clone(),
                    actor: None,
                    created_at: Utc::now(),
                };
                let view = Self::view(&key, &entry);
                v.insert(entry);
                self.by_id.insert(id, key);
                handles::connectors(integration.idn.as_str(), "stopped").increment(1.0);
                Ok(view)
            }
        }
    }

    fn key_of(&self, id: Uuid) -> Result<ConnectorKey, ControlError> {
        self.by_id
            .get(&id)
            .map(|k| k.clone())
            .ok_or_else(|| ControlError::NotFound(id.to_string()))
    }

    pub fn get(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        let key = self.key_of(id)?;
        let e = self
            .connectors
            .get(&key)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        Ok(Self::view(&key, &e))
    }

    pub fn find(&self, account: &Idn, integration: &str, connector: &str) -> Option<ConnectorView> {
        let key = ConnectorKey {
            account: account.clone(),
            integration: Idn::parse("integration", integration).ok()?,
            connector: Idn::parse("connector", connector).ok()?,
        };
        self.connectors.get(&key).map(|e| Self::view(&key, &e))
    }

    /// The connectors of `account`, optionally of one integration, sorted.
    pub fn list(&self, account: &Idn, integration: Option<&str>) -> Vec<ConnectorView> {
        let mut out: Vec<_> = self
            .connectors
            .iter()
            .filter(|e| &e.key().account == account)
            .filter(|e| integration.is_none_or(|i| e.key().integration == *i))
            .map(|e| Self::view(e.key(), e.value()))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Starts a connector. Refused while a required setting (of the connector or of its
    /// integration) has no value.
    pub fn run(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        let key = self.key_of(id)?;
        let mut e = self
            .connectors
            .get_mut(&key)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if e.status == Status::Running {
            return Ok(Self::view(&key, &e));
        }
        settings::check_complete(&e.integration.spec.connector_settings, &e.settings)?;
        let integration_settings = self
            .integration_settings
            .get(&(key.account.clone(), key.integration.clone()))
            .map(|s| s.clone())
            .unwrap_or_default();
        settings::check_complete(
            &e.integration.spec.integration_settings,
            &integration_settings,
        )
        .map_err(|er| ControlError::Invalid {
            field: format!("integration_settings.{}", er.setting),
            reason: er.reason,
        })?;
        let integration = e.integration.clone();
        e.actor = Some(self.start_actor(&key, &integration, false));
        e.status = Status::Running;
        handles::connectors(key.integration.as_str(), "stopped").decrement(1.0);
        handles::connectors(key.integration.as_str(), "running").increment(1.0);
        Ok(Self::view(&key, &e))
    }

    /// Stops a connector. Events already sent to it are still handled; new ones are refused.
    pub fn stop(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        let key = self.key_of(id)?;
        let mut e = self
            .connectors
            .get_mut(&key)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if e.internal {
            return Err(ControlError::Internal(format!(
                "{}/{}",
                key.integration, key.connector
            )));
        }
        if let Some(actor) = e.actor.take() {
            // Under the write guard: nothing can be sent after this Shutdown.
            actor.addr.do_send(Shutdown);
            e.status = Status::Stopped;
            handles::connectors(key.integration.as_str(), "running").decrement(1.0);
            handles::connectors(key.integration.as_str(), "stopped").increment(1.0);
        }
        Ok(Self::view(&key, &e))
    }

    /// Deletes a stopped connector.
    pub fn delete(&self, id: Uuid) -> Result<(), ControlError> {
        let key = self.key_of(id)?;
        let removed = self
            .connectors
            .remove_if(&key, |_, e| !e.internal && e.status == Status::Stopped);
        match removed {
            Some(_) => {
                self.by_id.remove(&id);
                handles::connectors(key.integration.as_str(), "stopped").decrement(1.0);
                Ok(())
            }
            None => {
                let e = self
                    .connectors
                    .get(&key)
                    .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
                let name = format!("{}/{}", key.integration, key.connector);
                Err(if e.internal {
                    ControlError::Internal(name)
                } else {
                    ControlError::StillRunning(name)
                })
            }
        }
    }

    /// Changes a connector's title and settings. A running connector keeps running, so its
    /// required settings cannot be cleared.
    pub fn update(
        &self,
        id: Uuid,
        title: Option<&str>,
        changes: &[(String, String)],
    ) -> Result<ConnectorView, ControlError> {
        let key = self.key_of(id)?;
        let mut e = self
            .connectors
            .get_mut(&key)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if e.internal {
            return Err(ControlError::Internal(format!(
                "{}/{}",
                key.integration, key.connector
            )));
        }
        let next = settings::apply(
            &e.integration.spec.connector_settings,
            &e.settings,
            changes,
            Writer::User,
        )?;
        if e.status == Status::Running {
            settings::check_complete(&e.integration.spec.connector_settings, &next)?;
        }
        if let Some(t) = title {
            if t.trim().is_empty() {
                return Err(ControlError::Invalid {
                    field: "title".into(),
                    reason: "must not be empty".into(),
                });
            }
            e.title = t.to_owned();
        }
        e.settings = next;
        Ok(Self::view(&key, &e))
    }

    /// Sets integration-level settings of `account`.
    pub fn set_integration_settings(
        &self,
        account: &Idn,
        integration: &str,
        changes: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ControlError> {
        let integration = self.integration(integration)?;
        let key = (account.clone(), integration.idn.clone());
        let current = self
            .integration_settings
            .get(&key)
            .map(|s| s.clone())
            .unwrap_or_default();
        let next = settings::apply(
            &integration.spec.integration_settings,
            &current,
            changes,
            Writer::User,
        )?;
        self.integration_settings.insert(key, next.clone());
        Ok(Self::public(&integration.spec.integration_settings, &next))
    }

    /// Integration-level settings of `account`, secrets left out.
    pub fn integration_settings(
        &self,
        account: &Idn,
        integration: &str,
    ) -> Result<Vec<(String, String)>, ControlError> {
        let integration = self.integration(integration)?;
        let s = self
            .integration_settings
            .get(&(account.clone(), integration.idn.clone()))
            .map(|s| s.clone())
            .unwrap_or_default();
        Ok(Self::public(&integration.spec.integration_settings, &s))
    }

    fn public(presets: &[crate::catalog::SettingSpec], s: &Settings) -> Vec<(String, String)> {
        s.0.iter()
            .filter(|(k, _)| !presets.iter().any(|p| &p.idn == *k && p.is_secret))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The effective value of a connector setting, secrets included: for the daemon's own
    /// native integrations, never for responses.
    pub fn setting(&self, key: &ConnectorKey, idn: &str) -> Option<String> {
        let e = self.connectors.get(key)?;
        settings::effective(&e.integration.spec.connector_settings, &e.settings, idn)
            .map(str::to_owned)
    }

    /// Puts back a stored connector with its id; runs it if it was running and still can.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &self,
        account: &Idn,
        integration: &str,
        connector: &str,
        id: Uuid,
        title: &str,
        settings: Settings,
        running: bool,
        created_at: DateTime<Utc>,
    ) -> Result<(), ControlError> {
        let integration = self.integration(integration)?;
        let connector = Idn::parse("connector_idn", connector)?;
        self.ensure_account(account);
        let key = ConnectorKey {
            account: account.clone(),
            integration: integration.idn.clone(),
            connector,
        };
        self.connectors.insert(
            key.clone(),
            Entry {
                id,
                title: title.to_owned(),
                settings,
                status: Status::Stopped,
                internal: false,
                integration: integration.clone(),
                actor: None,
                created_at,
            },
        );
        self.by_id.insert(id, key);
        handles::connectors(integration.idn.as_str(), "stopped").increment(1.0);
        if running {
            self.run(id)?;
        }
        Ok(())
    }

    /// Puts back stored integration-level settings.
    pub fn restore_integration_settings(
        &self,
        account: &Idn,
        integration: &str,
        settings: Settings,
    ) -> Result<(), ControlError> {
        let integration = self.integration(integration)?;
        self.integration_settings
            .insert((account.clone(), integration.idn.clone()), settings);
        Ok(())
    }

    /// Everything the store keeps of a connector, secret values in clear: for persistence only.
    pub fn stored(&self, id: Uuid) -> Option<(ConnectorView, Settings, Arc<Integration>)> {
        let key = self.by_id.get(&id)?.clone();
        let e = self.connectors.get(&key)?;
        Some((
            Self::view(&key, &e),
            e.settings.clone(),
            e.integration.clone(),
        ))
    }

    /// Integration-level settings in clear: for persistence only.
    pub fn stored_integration_settings(&self, account: &Idn, integration: &Idn) -> Settings {
        self.integration_settings
            .get(&(account.clone(), integration.clone()))
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Stops every actor (shutdown).
    pub fn stop_all(&self) {
        for mut e in self.connectors.iter_mut() {
            if let Some(actor) = e.actor.take() {
                actor.addr.do_send(Shutdown);
            }
        }
    }
}
