//! Per-account quotas (`[limits]`): before a create, what the account holds is counted, and a
//! create past a limit is refused naming the limit's key, counted in
//! `switchboard_limits_reached_total{limit}`. Timers are held to theirs by the timer service.

use super::{ChangeError, Daemon};
use crate::domain::{Flow, Idn};
use crate::fault::{Blame, Fault};

/// A create refused: the account holds `max` of `what` already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the account holds {max} {what}, its limit ({limit})")]
pub struct LimitReached {
    /// The limit's configuration key (`limits.connectors_per_account`).
    pub limit: &'static str,
    pub max: u64,
    pub what: &'static str,
}

impl Blame for LimitReached {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

/// Refuses when `held` reached `max`.
fn within(
    held: usize,
    max: u64,
    limit: &'static str,
    what: &'static str,
) -> Result<(), LimitReached> {
    if held as u64 >= max {
        crate::telemetry::handles::limit_reached(limit);
        return Err(LimitReached { limit, max, what });
    }
    Ok(())
}

impl Daemon {
    /// Room for one more connector in `account`.
    pub(crate) fn room_for_connector(&self, account: &Idn) -> Result<(), LimitReached> {
        let held = self
            .engine
            .registry()
            .directory()
            .list(account, None)
            .iter()
            .filter(|c| !c.internal)
            .count();
        within(
            held,
            self.config.limits.connectors_per_account,
            "limits.connectors_per_account",
            "connectors",
        )
    }

    /// Room for `flow` in its account: a flow replaced takes none.
    pub(crate) fn room_for_flow(&self, flow: &Flow) -> Result<(), LimitReached> {
        let index = self.engine.dispatcher().index();
        let mut held = 0;
        for f in index.flows().filter(|f| f.flow.account == flow.account) {
            if f.flow.agent == flow.agent && f.flow.flow == flow.flow {
                return Ok(());
            }
            held += 1;
        }
        within(
            held,
            self.config.limits.flows_per_account,
            "limits.flows_per_account",
            "flows",
        )
    }

    /// Room for one more API token in `account` (revoked and expired ones not counted).
    pub(crate) async fn room_for_token(&self, account: &Idn) -> Result<(), ChangeError> {
        let now = chrono::Utc::now();
        let held = self
            .tokens
            .list(Some(account.clone()))
            .await?
            .iter()
            .filter(|t| t.live(now))
            .count();
        Ok(within(
            held,
            self.config.limits.tokens_per_account,
            "limits.tokens_per_account",
            "API tokens",
        )?)
    }
}
