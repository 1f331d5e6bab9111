//! The connector lifecycle: create (stopped), run, stop, delete, settings changes, the
//! internal connectors, and restoring what the store kept. Each change lands in the
//! [`Directory`], which the hot path reads; a connector that begins to run gets its actor from
//! the factory the engine hands over at construction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::actor::{ConnectorHandle, Shutdown};
use super::directory::{Directory, Entry};
use crate::catalog::settings::{self, SettingError, Settings, Writer};
use crate::catalog::Integration;
pub use crate::domain::ConnectorKey;
use crate::domain::{Idn, IdnError};
use crate::fault::{Blame, Fault};
use crate::telemetry::handles;

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
    /// Secret settings the daemon wrote as the connector was created (a `CLIENT_SECRET`): in
    /// the creation answer only, never again.
    pub revealed: Vec<(String, String)>,
    pub created_at: DateTime<Utc>,
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
    /// The connector is one of the daemon's own: it always exists and always runs.
    #[error("connector {0} is internal: it always exists and always runs")]
    InternalConnector(String),
    #[error("connector {0} is running: stop it before deleting it")]
    StillRunning(String),
}

/// Longest connector title, in bytes.
pub const MAX_TITLE_BYTES: usize = 200;

/// A title is 1 to [`MAX_TITLE_BYTES`] bytes, not only blanks.
fn check_title(title: &str) -> Result<(), ControlError> {
    let reason = if title.trim().is_empty() {
        "must not be empty".to_owned()
    } else if title.len() > MAX_TITLE_BYTES {
        format!("at most {MAX_TITLE_BYTES} bytes")
    } else {
        return Ok(());
    };
    Err(ControlError::Invalid {
        field: "title".into(),
        reason,
    })
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

impl Blame for ControlError {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
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

/// The id of an internal connector: a UUIDv5 of its key, the same at every start.
fn internal_id(key: &ConnectorKey) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5b0a_7d1e_2c4f_4e8a_9b3d_6f1c_8e2a_4d70);
    let name = format!("{}/{}/{}", key.account, key.integration, key.connector);
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// Starts the actor of a connector that begins to run.
pub type ActorFactory =
    Box<dyn Fn(&ConnectorKey, &Arc<Integration>, bool, &Settings) -> ConnectorHandle + Send + Sync>;

/// The lifecycle over the [`Directory`]. Reads go to the directory (`Deref`): the registry is
/// the directory plus the right to change it.
pub struct ConnectorRegistry {
    dir: Arc<Directory>,
    factory: ActorFactory,
}

impl std::ops::Deref for ConnectorRegistry {
    type Target = Directory;

    fn deref(&self) -> &Directory {
        &self.dir
    }
}

impl ConnectorRegistry {
    pub fn new(dir: Arc<Directory>, factory: ActorFactory) -> Self {
        ConnectorRegistry { dir, factory }
    }

    /// The directory the hot path reads.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.dir
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
                // Checked and inserted under the entry's guard: two first changes of a new
                // account racing start each internal connector once.
                let dashmap::Entry::Vacant(vacant) = self.connectors.entry(key.clone()) else {
                    continue;
                };
                // Stable across restarts: the id names the connector, not this run.
                let id = internal_id(&key);
                vacant.insert(Entry {
                    id,
                    title: format!("{} {}", integration.spec.title, c),
                    settings: Settings::default(),
                    status: Status::Running,
                    internal: true,
                    integration: integration.clone(),
                    actor: Some(self.start_actor(&key, integration, true, &Settings::default())),
                    created_at: Utc::now(),
                });
                handles::connectors(integration.idn.as_str(), "running").increment(1.0);
                self.by_id.insert(id, key);
            }
        }
    }

    fn start_actor(
        &self,
        key: &ConnectorKey,
        integration: &Arc<Integration>,
        internal: bool,
        settings: &Settings,
    ) -> ConnectorHandle {
        (self.factory)(key, integration, internal, settings)
    }

    /// Creates a **stopped** connector with validated settings.
    pub fn create(
        &self,
        account: &Idn,
        integration: &str,
        connector_idn: &str,
        title: &str,
        initial: &[(String, String)],
        written: impl FnOnce(&ConnectorKey) -> Vec<(String, String)>,
    ) -> Result<ConnectorView, ControlError> {
        let integration = self.integration(integration)?;
        let connector = Idn::parse("connector_idn", connector_idn)?;
        check_title(title)?;
        if integration.is_internal_connector(connector.as_str()) || integration.idn == *"system" {
            return Err(ControlError::InternalConnector(format!(
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
        let key = ConnectorKey {
            account: account.clone(),
            integration: integration.idn.clone(),
            connector: connector.clone(),
        };
        if self.connectors.contains_key(&key) {
            return Err(ControlError::Conflict {
                integration: integration.idn.to_string(),
                connector: connector.to_string(),
            });
        }
        let written = written(&key);
        let settings = settings::apply(
            &integration.spec.connector_settings,
            &settings,
            &written,
            Writer::Daemon,
        )?;
        let revealed: Vec<(String, String)> = written
            .into_iter()
            .filter(|(k, _)| {
                integration
                    .spec
                    .connector_settings
                    .iter()
                    .any(|p| p.idn == *k && p.is_secret)
            })
            .collect();
        self.ensure_account(account);
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
                let mut view = Directory::view(&key, &entry);
                view.revealed = revealed;
                v.insert(entry);
                self.by_id.insert(id, key);
                handles::connectors(integration.idn.as_str(), "stopped").increment(1.0);
                Ok(view)
            }
        }
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
            return Ok(Directory::view(&key, &e));
        }
        self.check_settings(&key, &e.integration, &e.settings)?;
        let integration = e.integration.clone();
        let settings = e.settings.clone();
        e.actor = Some(self.start_actor(&key, &integration, false, &settings));
        e.status = Status::Running;
        handles::connectors(key.integration.as_str(), "stopped").decrement(1.0);
        handles::connectors(key.integration.as_str(), "running").increment(1.0);
        Ok(Directory::view(&key, &e))
    }

    /// Whether connector `id` may run as far as its settings go (its own and its integration's
    /// required ones are set); the key when it may, or runs already.
    pub fn check_runnable(&self, id: Uuid) -> Result<(ConnectorKey, Status), ControlError> {
        let key = self.key_of(id)?;
        let e = self
            .connectors
            .get(&key)
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if e.status != Status::Running {
            self.check_settings(&key, &e.integration, &e.settings)?;
        }
        Ok((key.clone(), e.status))
    }

    fn check_settings(
        &self,
        key: &ConnectorKey,
        integration: &Integration,
        connector_settings: &Settings,
    ) -> Result<(), ControlError> {
        settings::check_complete(&integration.spec.connector_settings, connector_settings)?;
        let integration_settings = self
            .integration_settings
            .get(&(key.account.clone(), key.integration.clone()))
            .map(|s| s.clone())
            .unwrap_or_default();
        settings::check_complete(
            &integration.spec.integration_settings,
            &integration_settings,
        )
        .map_err(|er| ControlError::Invalid {
            field: format!("integration_settings.{}", er.setting),
            reason: er.reason,
        })
    }

    /// Stops a connector. Events already sent to it are still handled; new ones are refused.
    pub fn stop(&self, id: Uuid) -> Result<ConnectorView, ControlError> {
        let (key, mut e) = self.editable(id)?;
        if let Some(actor) = e.actor.take() {
            // Under the write guard: nothing can be sent after this Shutdown.
            actor.addr.do_send(Shutdown);
            e.status = Status::Stopped;
            handles::connectors(key.integration.as_str(), "running").decrement(1.0);
            handles::connectors(key.integration.as_str(), "stopped").increment(1.0);
        }
        Ok(Directory::view(&key, &e))
    }

    /// Deletes a stopped connector; answers its key.
    pub fn delete(&self, id: Uuid) -> Result<ConnectorKey, ControlError> {
        let key = self.key_of(id)?;
        let removed = self
            .connectors
            .remove_if(&key, |_, e| !e.internal && e.status == Status::Stopped);
        match removed {
            Some(_) => {
                self.by_id.remove(&id);
                handles::connectors(key.integration.as_str(), "stopped").decrement(1.0);
                Ok(key)
            }
            None => {
                let e = self
                    .connectors
                    .get(&key)
                    .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
                let name = format!("{}/{}", key.integration, key.connector);
                Err(if e.internal {
                    ControlError::InternalConnector(name)
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
        self.update_as(id, title, changes, Writer::User)
    }

    /// [`ConnectorRegistry::update`] by `writer` (the daemon writes read-only settings: a
    /// rotated secret).
    pub fn update_as(
        &self,
        id: Uuid,
        title: Option<&str>,
        changes: &[(String, String)],
        writer: Writer,
    ) -> Result<ConnectorView, ControlError> {
        let (key, mut e) = self.editable(id)?;
        let next = settings::apply(
            &e.integration.spec.connector_settings,
            &e.settings,
            changes,
            writer,
        )?;
        if e.status == Status::Running {
            settings::check_complete(&e.integration.spec.connector_settings, &next)?;
        }
        if let Some(t) = title {
            check_title(t)?;
            if t.trim().is_empty() {
                return Err(ControlError::Invalid {
                    field: "title".into(),
                    reason: "must not be empty".into(),
                });
            }
            e.title = t.to_owned();
        }
        e.settings = next;
        Ok(Directory::view(&key, &e))
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
        // A running connector never lacks a required setting, of its own or its integration's.
        let runs = self.connectors.iter().any(|e| {
            e.key().account == *account
                && e.key().integration == integration.idn
                && !e.internal
                && e.status == Status::Running
        });
        if runs {
            settings::check_complete(&integration.spec.integration_settings, &next).map_err(
                |er| ControlError::Invalid {
                    field: format!("integration_settings.{}", er.setting),
                    reason: format!("{} (a connector of {} runs)", er.reason, integration.idn),
                },
            )?;
        }
        self.integration_settings.insert(key, next.clone());
        Ok(Directory::public(
            &integration.spec.integration_settings,
            &next,
        ))
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

    /// Sets an existing connector's title and settings as another daemon of a shared control
    /// plane wrote them (validated there); its status is left as it is.
    pub fn adopt(&self, id: Uuid, title: &str, settings: Settings) -> Result<(), ControlError> {
        let (_, mut e) = self.editable(id)?;
        e.title = title.to_owned();
        e.settings = settings;
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

    /// Stops every actor (shutdown): each connector is left stopped, as `stop` leaves it.
    pub fn stop_all(&self) {
        for mut e in self.connectors.iter_mut() {
            if let Some(actor) = e.actor.take() {
                actor.addr.do_send(Shutdown);
                e.status = Status::Stopped;
                let integration = e.key().integration.as_str();
                handles::connectors(integration, "running").decrement(1.0);
                handles::connectors(integration, "stopped").increment(1.0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
