//! Flows: stored through the API (each change to the engine, then to the store) or read from
//! files (all or none, reloaded on SIGHUP); every account's stored flows load at start.

use super::*;

/// What a stored flow comes to: its document, the signing secret of a webhook runner given its
/// first one now (shown once), and warnings about what it names that does not exist yet.
pub struct PutFlowAnswer {
    pub doc: FlowDoc,
    pub runner_secret: Option<RunnerSecret>,
    pub warnings: Vec<FlowWarning>,
}

/// Something in an accepted flow that matches nothing yet (a connector not created).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowWarning {
    pub field: String,
    pub message: String,
}

impl Daemon {
    /// Adds or replaces a flow through the API; stored, live when this returns. A flow whose
    /// webhook runner URL is a denied IP literal is refused (`runner.url`). A flow with a
    /// webhook runner and no signing secret yet gets one, answered this once.
    pub async fn put_flow(&self, flow: Flow) -> Result<PutFlowAnswer, ChangeError> {
        let mut seen = self.control_lock().await;
        self.admit_runner_url(&flow)?;
        self.room_for_flow(&flow)?;
        let doc = FlowDoc::from_domain(&flow);
        // Accepted all the same: connectors may be created later.
        let warnings = flow
            .subscriptions
            .iter()
            .enumerate()
            .filter_map(|(k, sub)| {
                crate::routing::explain::absent_connector(
                    self.engine.registry(),
                    &flow.account,
                    sub,
                )
                .map(|message| FlowWarning {
                    field: format!("events[{k}].connector_idn"),
                    message,
                })
            })
            .collect();
        let row = FlowRow {
            account: flow.account.to_string(),
            agent: flow.agent.to_string(),
            flow: flow.flow.to_string(),
            document: serde_json::to_string(&doc).expect("flow documents serialize"),
        };
        let (account, agent, name) = (flow.account.clone(), flow.agent.clone(), flow.flow.clone());
        // Live before the flow is: its first invocation is signed.
        let keys = self.new_runner_keys(&flow);
        if let Err(e) = self.engine.put_flow(flow).await {
            if keys.is_some() {
                self.forget_runner_keys(&account, &agent, &name);
            }
            return Err(e.into());
        }
        // The secret first: a daemon that applies the flow signs its first invocation.
        if let Some(keys) = &keys {
            let secret = self
                .store_runner_keys(&account, &agent, &name, keys)
                .await?;
            self.share(&mut seen, secret.into()).await?;
        }
        self.store.put_flow(row.clone()).await?;
        self.share(&mut seen, row.into()).await?;
        Ok(PutFlowAnswer {
            doc,
            runner_secret: keys.map(|k| k.current),
            warnings,
        })
    }

    pub async fn delete_flow(
        &self,
        account: &Idn,
        agent: &Name,
        flow: &Name,
    ) -> Result<bool, ChangeError> {
        let mut seen = self.control_lock().await;
        // A file's flow would come back at the next reload: the file is what to change.
        let file = (*account == self.home_account())
            .then(|| {
                self.file_flows
                    .lock()
                    .expect("file flows lock")
                    .get(&(agent.clone(), flow.clone()))
                    .cloned()
            })
            .flatten();
        if let Some(path) = file {
            return Err(ChangeError::DefinedByFile {
                flow: format!("{agent}/{flow}"),
                path,
            });
        }
        let removed = self.engine.delete_flow(account, agent, flow).await;
        self.store
            .delete_flow(account.to_string(), agent.to_string(), flow.to_string())
            .await?;
        self.forget_runner_keys(account, agent, flow);
        let (a, g, f) = (account.as_str(), agent.as_str(), flow.as_str());
        // The flow first: no daemon runs it without its secret meanwhile.
        self.share_delete(&mut seen, control_records::RecordKey::flow(a, g, f))
            .await?;
        let secret = control_records::RecordKey::runner_secret(a, g, f);
        self.share_delete(&mut seen, secret).await?;
        Ok(removed)
    }

    /// The document of a live flow.
    pub fn flow(&self, account: &Idn, agent: &str, flow: &str) -> Option<FlowDoc> {
        self.engine
            .dispatcher()
            .index()
            .flow(account.as_str(), agent, flow)
            .map(|f| FlowDoc::from_domain(&f.flow))
    }

    /// Every live flow's document, sorted.
    pub fn flows(&self, account: &Idn) -> Vec<FlowDoc> {
        let index = self.engine.dispatcher().index();
        let mut v: Vec<_> = index
            .flows()
            .filter(|f| f.flow.account == *account)
            .map(|f| FlowDoc::from_domain(&f.flow))
            .collect();
        v.sort_by(|a, b| (&a.agent_idn, &a.flow_idn).cmp(&(&b.agent_idn, &b.flow_idn)));
        v
    }

    /// Loads `flows.dir` again (every file or none) into the home account, and every other
    /// account's stored flows. Stored (API) flows stay; file flows with the same name win over
    /// them. The files and the store are read on a blocking thread, off the async workers.
    /// Answers how many file flows there are.
    pub async fn reload_flow_files(&self) -> Result<usize, ReloadError> {
        // Held from the read of the stored flows to the swap: a shared flow applied meanwhile
        // is not replaced by what was read before it.
        let mut seen = self.control_lock().await;
        let home = self.home_account();
        let (dir, store) = (self.config.flows.dir.clone(), self.store.clone());
        let read_account = home.clone();
        let (files, mut stored) = tokio::task::spawn_blocking(move || {
            let files = flow_files::load_dir(&read_account, &dir)?;
            let stored = stored_flows(&store)?;
            Ok::<_, ReloadError>((files, stored))
        })
        .await
        .map_err(|e| ReloadError::Store(StoreError::Corrupt(format!("flow reload task: {e}"))))??;
        let mut by_key: BTreeMap<(Name, Name), Flow> = stored
            .remove(&home)
            .unwrap_or_default()
            .into_iter()
            .map(|f| ((f.agent.clone(), f.flow.clone()), f))
            .collect();
        let mut file_keys = BTreeMap::new();
        for (f, _, path) in &files {
            by_key.insert((f.agent.clone(), f.flow.clone()), f.clone());
            file_keys.insert((f.agent.clone(), f.flow.clone()), path.clone());
        }
        let n = files.len();
        let rejected = |error| ReloadError::Rejected {
            dir: self.config.flows.dir.clone(),
            error,
        };
        for (f, _, _) in &files {
            self.admit_runner_url(f).map_err(|mut e| {
                e.field = format!("{}/{}: {}", f.agent, f.flow, e.field);
                rejected(e)
            })?;
        }
        self.replace_account_flows(&mut seen, &home, by_key.into_values().collect())
            .await
            .map_err(|e| match e {
                ReloadError::Stored { error, .. } => rejected(error),
                other => other,
            })?;
        *self.file_flows.lock().expect("file flows lock") = file_keys;
        // The other accounts' flows are only stored ones: as they were accepted.
        for (account, flows) in stored {
            self.replace_account_flows(&mut seen, &account, flows)
                .await?;
        }
        Ok(n)
    }

    /// Puts `flows` in force as every flow of `account`. Flows with a webhook runner and no
    /// secret yet (from a file, or stored before secrets existed) get one; a file's flow shows
    /// it nowhere: rotate to learn it.
    pub(super) async fn replace_account_flows(
        &self,
        seen: &mut control_plane::Seen<'_>,
        account: &Idn,
        flows: Vec<Flow>,
    ) -> Result<(), ReloadError> {
        let new_keys: Vec<_> = flows
            .iter()
            .filter_map(|f| {
                self.new_runner_keys(f)
                    .map(|k| (f.agent.clone(), f.flow.clone(), k))
            })
            .collect();
        if let Err(error) = self.engine.replace_flows(account, flows).await {
            for (agent, flow, _) in &new_keys {
                self.forget_runner_keys(account, agent, flow);
            }
            return Err(ReloadError::Stored {
                account: account.clone(),
                error,
            });
        }
        for (agent, flow, keys) in &new_keys {
            let row = self.store_runner_keys(account, agent, flow, keys).await?;
            // Another daemon's secret for the same file's flow wins (applied here).
            if let Err(e) = self.share(seen, row.into()).await {
                tracing::warn!(agent = %agent, flow = %flow, error = %e, "control plane: a flow's new runner secret was not shared");
            }
        }
        Ok(())
    }
}

/// The flows stored through the API for `account` (a blocking read).
/// Every stored (API) flow, by account. Blocking.
pub(super) fn stored_flows(store: &Store) -> Result<BTreeMap<Idn, Vec<Flow>>, StoreError> {
    let mut by_account: BTreeMap<Idn, Vec<Flow>> = BTreeMap::new();
    for r in store.flows()? {
        let corrupt = |e: String| StoreError::Corrupt(format!("flow {}/{}: {e}", r.agent, r.flow));
        let account = Idn::parse("account", &r.account).map_err(|e| corrupt(e.to_string()))?;
        let doc: FlowDoc = serde_json::from_str(&r.document).map_err(|e| corrupt(e.to_string()))?;
        let flow = doc
            .to_domain(&account, &r.agent, &r.flow)
            .map_err(|e| corrupt(e.to_string()))?;
        by_account.entry(account).or_default().push(flow);
    }
    Ok(by_account)
}
