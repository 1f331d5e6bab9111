//! The signing secrets of flows' webhook runners, sealed ([`super::SecretBox`], bound to
//! their flow by the associated data): written when a flow gets its first secret or a
//! rotation, deleted with the flow, read once at start.

use rusqlite::params;

use super::{Store, StoreError, Written};

/// A flow's runner secrets as stored: sealed text, never the secrets themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSecretRow {
    pub account: String,
    pub agent: String,
    pub flow: String,
    pub current: String,
    /// The replaced secret and until when (Unix ms) it still signs.
    pub previous: Option<(String, i64)>,
}

impl Store {
    /// Stores a flow's secrets, replacing what it had; answers after commit.
    pub async fn put_runner_secret(&self, row: RunnerSecretRow) -> Result<(), StoreError> {
        self.write(move |tx| {
            let (previous, until) = row.previous.unzip();
            tx.execute(
                "INSERT INTO runner_secrets (account, agent, flow, current, previous, previous_until_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (account, agent, flow) DO UPDATE SET current = excluded.current,
                     previous = excluded.previous, previous_until_ms = excluded.previous_until_ms",
                params![row.account, row.agent, row.flow, row.current, previous, until],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    /// Every flow's secrets (a blocking read).
    pub fn runner_secrets(&self) -> Result<Vec<RunnerSecretRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT account, agent, flow, current, previous, previous_until_ms
                 FROM runner_secrets ORDER BY account, agent, flow",
            )?;
            let rows = st.query_map([], |r| {
                let previous: Option<String> = r.get(4)?;
                let until: Option<i64> = r.get(5)?;
                Ok(RunnerSecretRow {
                    account: r.get(0)?,
                    agent: r.get(1)?,
                    flow: r.get(2)?,
                    current: r.get(3)?,
                    previous: previous.zip(until),
                })
            })?;
            rows.collect()
        })
    }
}
