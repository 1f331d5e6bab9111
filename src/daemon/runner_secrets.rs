//! The signing secrets of flows' webhook runners, as the daemon keeps them: one per flow with
//! a webhook runner, generated when such a flow is first stored (over the API or from a file)
//! and shown once, in the answer of the PUT that created it; [`Daemon::rotate_runner_secret`]
//! makes a new one and shows it once, while the replaced one keeps signing for
//! `runners.secret_overlap_ms` (or not at all: [`Previous::Revoke`], after a leak). Sealed in the store (bound to their flow), live in the webhook
//! factory's [`RunnerKeys`]; no GET answers them, and they are never logged. Also where a flow's
//! runner URL meets the egress policy before the flow is accepted.

use std::sync::Arc;

use super::Daemon;
use crate::domain::{Flow, Idn, Name, RunnerSpec};
use crate::fault::{Blame, Fault};
use crate::routing::flow_table::FlowRejected;
use crate::skill_runner::webhook::{FlowKeys, RunnerKeys, RunnerSecret};
use crate::store::{RunnerSecretRow, SecretBox, StoreError};

/// Why a runner secret was not rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no flow {0}")]
    NoFlow(String),
    #[error("flow {0} has no webhook runner: nothing it sends is signed")]
    NotWebhook(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ControlPlane(#[from] super::ControlPlaneError),
}

impl Blame for RotateError {
    fn fault(&self) -> Fault {
        match self {
            RotateError::NoFlow(_) | RotateError::NotWebhook(_) => Fault::Caller,
            RotateError::Store(e) => e.fault(),
            RotateError::ControlPlane(e) => e.fault(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            RotateError::Store(e) => e.retryable(),
            RotateError::ControlPlane(e) => e.retryable(),
            _ => false,
        }
    }
}

/// What becomes of the secret a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Previous {
    /// It signs too until `runners.secret_overlap_ms` has passed, while runners move over.
    #[default]
    Overlap,
    /// It stops signing at once (it leaked): only the new secret signs.
    Revoke,
}

/// A new secret, shown this once, and until when (Unix ms) the one it replaced still signs.
#[derive(Debug)]
pub struct RotatedSecret {
    pub secret: RunnerSecret,
    pub previous_until_ms: Option<i64>,
}

/// Why a runner URL with a userinfo part is refused (the API, flow files, `switchboard check`).
pub const USERINFO_REFUSED: &str = "must not carry credentials (user:password@): a runner \
     authenticates the daemon by its signing secret, and the URL is shown to every read token";

pub(crate) fn aad(account: &str, agent: &str, flow: &str) -> String {
    format!("runner-secret/{account}/{agent}/{flow}")
}

fn is_webhook(flow: &Flow) -> bool {
    matches!(flow.runner, RunnerSpec::Webhook { .. })
}

impl Daemon {
    /// The webhook runners' live keys.
    fn runner_keys(&self) -> &Arc<RunnerKeys> {
        &self.runner_keys
    }

    /// Refuses a flow whose webhook runner URL carries credentials (`user:pass@`), or is an IP
    /// literal the egress policy denies (`runner.url`). A host name is judged when the runner
    /// connects, every time. (Flows stored before either rule load as they were.)
    pub(crate) fn admit_runner_url(&self, flow: &Flow) -> Result<(), FlowRejected> {
        let RunnerSpec::Webhook { url, .. } = &flow.runner else {
            return Ok(());
        };
        if crate::outbound::has_userinfo(url) {
            return Err(FlowRejected {
                field: "runner.url".into(),
                reason: USERINFO_REFUSED.into(),
            });
        }
        self.egress
            .judge_literal(url)
            .map_err(|denied| FlowRejected {
                field: "runner.url".into(),
                reason: format!("{denied}; an operator may allow it with [egress] allow"),
            })
    }

    /// Gives a flow with a webhook runner its first secret, live at once; `None` when it has
    /// one (or needs none). Persist it with [`Daemon::store_runner_keys`] once the flow is in;
    /// take it back with [`Daemon::forget_runner_keys`] if the flow is refused.
    pub(crate) fn new_runner_keys(&self, flow: &Flow) -> Option<FlowKeys> {
        if !is_webhook(flow) {
            return None;
        }
        self.runner_keys()
            .generate_if_absent(&flow.account, &flow.agent, &flow.flow)
    }

    pub(crate) fn forget_runner_keys(&self, account: &Idn, agent: &Name, flow: &Name) {
        self.runner_keys().remove(account, agent, flow);
    }

    /// Seals and stores a flow's keys; answers the row after commit (to share).
    pub(crate) async fn store_runner_keys(
        &self,
        account: &Idn,
        agent: &Name,
        flow: &Name,
        keys: &FlowKeys,
    ) -> Result<RunnerSecretRow, StoreError> {
        let aad = aad(account.as_str(), agent.as_str(), flow.as_str());
        let row = RunnerSecretRow {
            account: account.to_string(),
            agent: agent.to_string(),
            flow: flow.to_string(),
            current: self.secrets.seal(keys.current.expose(), &aad),
            previous: keys
                .previous
                .as_ref()
                .map(|(s, until)| (self.secrets.seal(s.expose(), &aad), *until)),
        };
        self.store.put_runner_secret(row.clone()).await?;
        Ok(row)
    }

    /// Replaces the secret of the live flow `agent`/`flow`'s webhook runner; the new one is
    /// answered this once. The replaced one signs on until the overlap ends, or stops at once
    /// with [`Previous::Revoke`] (one an earlier rotation left signing stops either way).
    pub async fn rotate_runner_secret(
        &self,
        account: &Idn,
        agent: &str,
        flow: &str,
        previous: Previous,
    ) -> Result<RotatedSecret, RotateError> {
        let mut seen = self.control_lock().await;
        let name = format!("{agent}/{flow}");
        let live = self
            .engine
            .dispatcher()
            .index()
            .flow(account.as_str(), agent, flow)
            .map(|f| f.flow.clone())
            .ok_or_else(|| RotateError::NoFlow(name.clone()))?;
        if !is_webhook(&live) {
            return Err(RotateError::NotWebhook(name));
        }
        let keys = self.runner_keys().rotate(
            &live.account,
            &live.agent,
            &live.flow,
            chrono::Utc::now().timestamp_millis(),
            match previous {
                Previous::Overlap => self.config.runners.secret_overlap_ms,
                Previous::Revoke => 0,
            },
        );
        let row = self
            .store_runner_keys(&live.account, &live.agent, &live.flow, &keys)
            .await?;
        self.share(&mut seen, row.into()).await?;
        tracing::info!(agent = %live.agent, flow = %live.flow, previous = ?previous, "runner secret rotated");
        Ok(RotatedSecret {
            previous_until_ms: keys.previous.as_ref().map(|(_, until)| *until),
            secret: keys.current,
        })
    }

    /// Loads the stored secrets into the live keys (a blocking read; at start).
    pub(crate) fn restore_runner_secrets(
        &self,
        rows: Vec<crate::store::RunnerSecretRow>,
    ) -> Result<usize, StoreError> {
        let n = rows.len();
        for row in rows {
            let aad = aad(&row.account, &row.agent, &row.flow);
            let corrupt = |e: String| {
                StoreError::Corrupt(format!("runner secret of {}/{}: {e}", row.agent, row.flow))
            };
            let open = |sealed: &str| {
                self.secrets
                    .open(sealed, &aad)
                    .map_err(|e| corrupt(e.to_string()))
                    .and_then(|s| RunnerSecret::parse(&s).map_err(|e| corrupt(e.to_string())))
            };
            debug_assert!(SecretBox::is_sealed(&row.current));
            let keys = FlowKeys {
                current: open(&row.current)?,
                previous: match &row.previous {
                    Some((sealed, until)) => Some((open(sealed)?, *until)),
                    None => None,
                },
            };
            let parse =
                |field: &str, v: &str| Name::parse(field, v).map_err(|e| corrupt(e.to_string()));
            let account =
                Idn::parse("account", &row.account).map_err(|e| corrupt(e.to_string()))?;
            self.runner_keys().set(
                &account,
                &parse("agent", &row.agent)?,
                &parse("flow", &row.flow)?,
                keys,
            );
        }
        Ok(n)
    }
}
