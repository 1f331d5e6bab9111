//! How a record of the shared control plane that another daemon wrote is applied here: the
//! way start-up restores rows (`start.rs`), into the engine and the local store; a deletion
//! removes. Idempotent: applying what is here already changes nothing.

use super::control_records::{Kind, Record, RecordKey};
use super::*;
use crate::store::accounts::TokenRow;

impl Daemon {
    /// Puts `record` here as another daemon wrote it.
    pub(super) async fn apply_record(&self, record: Record) -> Result<(), ApplyError> {
        match record {
            Record::Account(a) => {
                let idn = Idn::parse("account", &a.idn)?;
                self.store.put_account(a.idn, a.title).await?;
                self.engine.registry().ensure_account(&idn);
            }
            Record::Token(t) => self.tokens.adopt(TokenRow::from(t)).await?,
            Record::Connector(c) => self.apply_connector(c.into()).await?,
            Record::Settings(s) => {
                let settings = self.open(s.settings.clone(), (&s.account, &s.integration, ""))?;
                let account = Idn::parse("account", &s.account)?;
                self.engine.registry().ensure_account(&account);
                self.engine.registry().restore_integration_settings(
                    &account,
                    &s.integration,
                    settings,
                )?;
                self.store
                    .put_integration_settings(s.account, s.integration, s.settings)
                    .await?;
            }
            Record::Flow(f) => {
                let row = FlowRow::from(f);
                let account = Idn::parse("account", &row.account)?;
                let doc: FlowDoc = serde_json::from_str(&row.document)
                    .map_err(|e| ApplyError::Invalid(e.to_string()))?;
                let flow = doc
                    .to_domain(&account, &row.agent, &row.flow)
                    .map_err(|e| ApplyError::Invalid(e.to_string()))?;
                // A flow file of the home account wins over a stored flow of the same name; a
                // flow live as it is (restored at start) costs no index rebuild.
                let live = self
                    .engine
                    .dispatcher()
                    .index()
                    .flow(account.as_str(), flow.agent.as_str(), flow.flow.as_str())
                    .is_some_and(|f| f.flow == flow);
                // While start-up reads the bucket, flows go to the store only: one reload
                // afterwards puts them all in force (one index rebuild, not one per flow).
                if !live
                    && !self.flows_deferred()
                    && !self.is_file_flow(&account, &flow.agent, &flow.flow)
                {
                    self.engine.put_flow(flow).await?;
                }
                self.store.put_flow(row).await?;
            }
            Record::RunnerSecret(r) => {
                let row = crate::store::RunnerSecretRow::from(r);
                self.restore_runner_secrets(vec![row.clone()])?;
                self.store.put_runner_secret(row).await?;
            }
        }
        Ok(())
    }

    /// A connector as another daemon stored it: created, changed, started or stopped here
    /// alike (a connector of the same name with another id goes first).
    async fn apply_connector(&self, row: ConnectorRow) -> Result<(), ApplyError> {
        let settings = self.open(
            row.settings.clone(),
            (&row.account, &row.integration, &row.connector),
        )?;
        let account = Idn::parse("account", &row.account)?;
        let registry = self.engine.registry();
        let mut present = registry.find(&account, &row.integration, &row.connector);
        if let Some(old) = present.as_ref().filter(|v| v.id != row.id) {
            let old = old.id;
            self.remove_connector(old).await?;
            present = None;
        }
        match present {
            Some(view) => {
                registry.adopt(row.id, &row.title, settings)?;
                let running = view.status == crate::connectors::Status::Running;
                if row.running && !running {
                    self.engine.run_connector(row.id)?;
                } else if !row.running && running {
                    self.engine.stop_connector(row.id)?;
                }
            }
            None => {
                let created = row.created();
                registry.restore(
                    &account,
                    &row.integration,
                    &row.connector,
                    row.id,
                    &row.title,
                    settings,
                    false,
                    created,
                )?;
                if row.running {
                    self.engine.run_connector(row.id)?;
                }
            }
        }
        self.store.put_connector(row).await?;
        Ok(())
    }

    /// Stops and deletes connector `id` here.
    async fn remove_connector(&self, id: Uuid) -> Result<(), ApplyError> {
        let view = self.engine.registry().get(id)?;
        if view.status == crate::connectors::Status::Running {
            self.engine.stop_connector(id)?;
        }
        self.engine.delete_connector(id)?;
        self.store.delete_connector(id).await?;
        Ok(())
    }

    /// Removes what `key` named here.
    pub(super) async fn apply_delete(&self, key: &RecordKey) -> Result<(), ApplyError> {
        let parts = key.parts();
        match (key.kind(), parts.as_slice()) {
            (Kind::Connector, [account, integration, connector]) => {
                let account = Idn::parse("account", account)?;
                if let Some(v) = self
                    .engine
                    .registry()
                    .find(&account, integration, connector)
                {
                    self.remove_connector(v.id).await?;
                }
            }
            (kind @ (Kind::Flow | Kind::RunnerSecret), [account, agent, flow]) => {
                let account = Idn::parse("account", account)?;
                let agent = Name::parse("agent", agent)?;
                let flow = Name::parse("flow", flow)?;
                // A flow file of the home account and its secret stay.
                if self.is_file_flow(&account, &agent, &flow) {
                    return Ok(());
                }
                self.forget_runner_keys(&account, &agent, &flow);
                if kind == Kind::Flow {
                    // (Even while start-up reads the bucket: the reload after it replaces the
                    // flows of accounts that still have stored ones only.)
                    self.engine.delete_flow(&account, &agent, &flow).await;
                    // (The flow's runner secret row goes with it.)
                    self.store
                        .delete_flow(account.to_string(), agent.to_string(), flow.to_string())
                        .await?;
                }
            }
            // Accounts, tokens (revoked, not deleted) and integration settings stay.
            _ => tracing::debug!(key = %key, "control plane: a deletion of a record kept here"),
        }
        Ok(())
    }

    fn is_file_flow(&self, account: &Idn, agent: &Name, flow: &Name) -> bool {
        *account == self.home_account()
            && self
                .file_flows
                .lock()
                .map(|f| f.contains_key(&(agent.clone(), flow.clone())))
                .unwrap_or(false)
    }
}

/// Why a shared record was not applied here (logged and counted; the next change of its key
/// tries again).
#[derive(Debug, thiserror::Error)]
pub(super) enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Flow(#[from] FlowRejected),
    #[error(transparent)]
    Name(#[from] crate::domain::IdnError),
    #[error("{0}")]
    Invalid(String),
}
