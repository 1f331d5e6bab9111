//! The connector directory: every connector of every account, its settings and status, and
//! the handle of its actor while it runs. The hot path only reads it: ingress reaches a running
//! connector's inbox through it ([`Inboxes`]), the command stage checks a command's connector
//! runs. Changes go through the lifecycle in [`super::registry`].
//!
//! **Sending under the guard.** Whoever sends to a connector's inbox does so while holding the
//! directory's read guard ([`Directory::with_running`]). Stopping takes the write guard, removes
//! the handle, then tells the actor to stop: every event sent before is in its inbox, which it
//! drains before stopping, and nothing can be sent after. Changes take effect without losing
//! events in flight.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::actor::ConnectorHandle;
use super::registry::{ConnectorView, ControlError, Status};
use crate::admission::Unreachable;
use crate::catalog::settings::{self, Settings};
use crate::catalog::{Catalog, Integration, SettingSpec};
use crate::domain::{ConnectorKey, Idn};
use crate::ingress::{Inbound, Inboxes};

pub(super) struct Entry {
    pub(super) id: Uuid,
    pub(super) title: String,
    pub(super) settings: Settings,
    pub(super) status: Status,
    pub(super) internal: bool,
    pub(super) integration: Arc<Integration>,
    pub(super) actor: Option<ConnectorHandle>,
    pub(super) created_at: DateTime<Utc>,
}

pub struct Directory {
    pub(super) catalog: Arc<Catalog>,
    pub(super) connectors: DashMap<ConnectorKey, Entry, FxBuildHasher>,
    pub(super) by_id: DashMap<Uuid, ConnectorKey, FxBuildHasher>,
    pub(super) integration_settings: DashMap<(Idn, Idn), Settings, FxBuildHasher>,
}

impl Directory {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Directory {
            catalog,
            connectors: DashMap::with_hasher(FxBuildHasher),
            by_id: DashMap::with_hasher(FxBuildHasher),
            integration_settings: DashMap::with_hasher(FxBuildHasher),
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
    ) -> Result<R, (T, Unreachable)> {
        let (integration, connector) = (&key.integration, &key.connector);
        match self.connectors.get(key) {
            Some(e) => match &e.actor {
                Some(actor) => Ok(send(actor, payload)),
                None => Err((
                    payload,
                    Unreachable::ConnectorStopped {
                        integration: integration.to_string(),
                        connector: connector.to_string(),
                    },
                )),
            },
            None if self.catalog.get(integration.as_str()).is_none() => Err((
                payload,
                Unreachable::UnknownIntegration(integration.to_string()),
            )),
            None => Err((
                payload,
                Unreachable::UnknownConnector {
                    integration: integration.to_string(),
                    connector: connector.to_string(),
                },
            )),
        }
    }

    pub(super) fn view(key: &ConnectorKey, e: &Entry) -> ConnectorView {
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
            revealed: Vec::new(),
            created_at: e.created_at,
        }
    }

    pub(super) fn integration(&self, idn: &str) -> Result<Arc<Integration>, ControlError> {
        self.catalog
            .find(idn)
            .cloned()
            .ok_or_else(|| ControlError::UnknownIntegration(idn.to_owned()))
    }

    /// Connector `id`'s key and entry, to change: not found, or refused when it is internal.
    #[allow(clippy::type_complexity)]
    pub(super) fn editable(
        &self,
        id: Uuid,
    ) -> Result<
        (
            ConnectorKey,
            dashmap::mapref::one::RefMut<'_, ConnectorKey, Entry>,
        ),
        ControlError,
    > {
        let key = self.key_of(id)?;
        let e = self
            .connectors
            .get_mut(&key)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if e.internal {
            return Err(ControlError::InternalConnector(format!(
                "{}/{}",
                key.integration, key.connector
            )));
        }
        Ok((key, e))
    }

    pub(super) fn key_of(&self, id: Uuid) -> Result<ConnectorKey, ControlError> {
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

    pub(super) fn public(presets: &[SettingSpec], s: &Settings) -> Vec<(String, String)> {
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

    /// The effective value of an integration-level setting of `account` (the explicit one, else
    /// the preset's default), secrets included: for native integrations, never for responses.
    pub fn integration_setting(
        &self,
        account: &Idn,
        integration: &Idn,
        idn: &str,
    ) -> Option<String> {
        let spec = self.catalog.get(integration.as_str())?;
        let explicit = self
            .integration_settings
            .get(&(account.clone(), integration.clone()))
            .and_then(|s| s.get(idn).map(str::to_owned));
        explicit.or_else(|| {
            spec.spec
                .integration_settings
                .iter()
                .find(|p| p.idn == idn)
                .and_then(|p| p.default_value.clone())
        })
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
}

impl Inboxes for Directory {
    #[inline]
    fn with_inbox(
        &self,
        key: &ConnectorKey,
        send: &mut dyn FnMut(&mpsc::Sender<Inbound>),
    ) -> Result<(), Unreachable> {
        self.with_running(key, (), |actor, ()| send(actor.inbox()))
            .map_err(|((), reach)| reach)
    }
}
