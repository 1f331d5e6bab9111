//! Connectors and integration settings: each change made to the engine, then, awaited, to the
//! store (secret settings sealed), and with a shared control plane into its bucket.

use super::control_plane::Seen;
use super::control_records::{Record, RecordKey, SettingsRecord};
use super::*;

impl Daemon {
    /// Stores connector `id` as the engine has it, and shares it.
    pub(super) async fn persist_connector(
        &self,
        seen: &mut Seen<'_>,
        id: Uuid,
    ) -> Result<(), ChangeError> {
        let Some((view, settings, integration)) = self.engine.registry().stored(id) else {
            self.store.delete_connector(id).await?;
            return Ok(());
        };
        let k = &view.key;
        let sealed = self.seal(
            &integration.spec.connector_settings,
            &settings,
            (
                k.account.as_str(),
                k.integration.as_str(),
                k.connector.as_str(),
            ),
        );
        let row = ConnectorRow {
            id: view.id,
            account: k.account.to_string(),
            integration: k.integration.to_string(),
            connector: k.connector.to_string(),
            title: view.title.clone(),
            running: view.status == crate::connectors::Status::Running,
            settings: sealed,
            created_at: view.created_at.to_rfc3339(),
        };
        self.store.put_connector(row.clone()).await?;
        self.share(seen, Record::from(row)).await?;
        Ok(())
    }

    pub async fn create_connector(
        &self,
        account: &Idn,
        integration: &str,
        connector: &str,
        title: &str,
        settings: &[(String, String)],
    ) -> Result<ConnectorView, ChangeError> {
        let mut seen = self.control_lock().await;
        self.room_for_connector(account)?;
        let view =
            self.engine
                .create_connector(account, integration, connector, title, settings)?;
        self.persist_connector(&mut seen, view.id).await?;
        Ok(view)
    }

    pub async fn update_connector(
        &self,
        account: &Idn,
        id: Uuid,
        title: Option<&str>,
        settings: &[(String, String)],
    ) -> Result<ConnectorView, ChangeError> {
        let mut seen = self.control_lock().await;
        self.connector(account, id)?;
        let view = self.engine.registry().update(id, title, settings)?;
        self.persist_connector(&mut seen, id).await?;
        Ok(view)
    }

    pub async fn run_connector(
        &self,
        account: &Idn,
        id: Uuid,
    ) -> Result<ConnectorView, ChangeError> {
        let mut seen = self.control_lock().await;
        self.connector(account, id)?;
        let view = self.engine.run_connector(id)?;
        self.persist_connector(&mut seen, id).await?;
        Ok(view)
    }

    /// Rotates connector `id`'s signing secret (see `Engine::rotate_secret`), stored sealed.
    pub async fn rotate_secret(
        &self,
        account: &Idn,
        id: Uuid,
        overlap: std::time::Duration,
    ) -> Result<crate::engine::Rotated, ChangeError> {
        let mut seen = self.control_lock().await;
        self.connector(account, id)?;
        let rotated = self.engine.rotate_secret(id, overlap)?;
        self.persist_connector(&mut seen, id).await?;
        Ok(rotated)
    }

    pub async fn stop_connector(
        &self,
        account: &Idn,
        id: Uuid,
    ) -> Result<ConnectorView, ChangeError> {
        let mut seen = self.control_lock().await;
        self.connector(account, id)?;
        let view = self.engine.stop_connector(id)?;
        self.persist_connector(&mut seen, id).await?;
        Ok(view)
    }

    pub async fn delete_connector(&self, account: &Idn, id: Uuid) -> Result<(), ChangeError> {
        let mut seen = self.control_lock().await;
        let k = self.connector(account, id)?.key;
        self.engine.delete_connector(id)?;
        self.store.delete_connector(id).await?;
        let key = RecordKey::connector(
            k.account.as_str(),
            k.integration.as_str(),
            k.connector.as_str(),
        );
        self.share_delete(&mut seen, key).await?;
        Ok(())
    }

    pub async fn set_integration_settings(
        &self,
        account: &Idn,
        integration: &str,
        changes: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ChangeError> {
        let mut seen = self.control_lock().await;
        let account = account.clone();
        let shown =
            self.engine
                .registry()
                .set_integration_settings(&account, integration, changes)?;
        let i = self
            .engine
            .catalog()
            .find(integration)
            .cloned()
            .ok_or_else(|| ControlError::UnknownIntegration(integration.to_owned()))?;
        let settings = self
            .engine
            .registry()
            .stored_integration_settings(&account, &i.idn);
        let sealed = self.seal(
            &i.spec.integration_settings,
            &settings,
            (account.as_str(), i.idn.as_str(), ""),
        );
        self.store
            .put_integration_settings(account.to_string(), i.idn.to_string(), sealed.clone())
            .await?;
        let record = Record::Settings(SettingsRecord {
            account: account.to_string(),
            integration: i.idn.to_string(),
            settings: sealed,
        });
        self.share(&mut seen, record).await?;
        Ok(shown)
    }
}
