//! Flow state values (`set_state`), as stored: written behind, pruned by age as new ones come,
//! read once at start.

use rusqlite::params;

use super::{Store, StoreError, Written};

/// One value; `owner` is a persona id, or `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub account: String,
    pub agent: String,
    pub flow: String,
    pub field: String,
    pub owner: String,
    pub value: String,
    pub set_ms: i64,
}

impl Store {
    /// Records a value (written behind); values set before `prune_before_ms` go.
    pub fn state_set(&self, row: StateRow, prune_before_ms: i64) {
        self.write_later(move |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO flow_state (account, agent, flow, field, owner, value, set_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.account,
                    row.agent,
                    row.flow,
                    row.field,
                    row.owner,
                    row.value,
                    row.set_ms
                ],
            )?;
            tx.execute(
                "DELETE FROM flow_state WHERE set_ms < ?1",
                params![prune_before_ms],
            )?;
            Ok(Written::Done)
        });
    }

    /// The newest `limit` values set at or after `since_ms`, oldest first. Blocking.
    pub fn flow_state(&self, since_ms: i64, limit: usize) -> Result<Vec<StateRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT account, agent, flow, field, owner, value, set_ms FROM (
                     SELECT * FROM flow_state WHERE set_ms >= ?1
                     ORDER BY set_ms DESC LIMIT ?2)
                 ORDER BY set_ms",
            )?;
            let rows = st.query_map(params![since_ms, limit as i64], |r| {
                Ok(StateRow {
                    account: r.get(0)?,
                    agent: r.get(1)?,
                    flow: r.get(2)?,
                    field: r.get(3)?,
                    owner: r.get(4)?,
                    value: r.get(5)?,
                    set_ms: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}
