//! Command acts issued to adapters, as stored: written behind, pruned by age as new ones come,
//! read once at start.

use rusqlite::params;
use uuid::Uuid;

use super::{Store, StoreError, Written};

/// One issued act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActRow {
    pub act: Uuid,
    pub account: String,
    pub integration: String,
    pub connector: String,
    pub persona: Uuid,
    pub issued_ms: i64,
}

impl Store {
    /// Records an issued act (written behind); acts issued before `prune_before_ms` go.
    pub fn act_issued(&self, row: ActRow, prune_before_ms: i64) {
        self.write_later(move |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO command_acts (act, account, integration, connector, persona, issued_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.act.to_string(),
                    row.account,
                    row.integration,
                    row.connector,
                    row.persona.to_string(),
                    row.issued_ms
                ],
            )?;
            tx.execute(
                "DELETE FROM command_acts WHERE issued_ms < ?1",
                params![prune_before_ms],
            )?;
            Ok(Written::Done)
        });
    }

    /// The newest `limit` acts issued at or after `since_ms`, oldest first. Blocking.
    pub fn command_acts(&self, since_ms: i64, limit: usize) -> Result<Vec<ActRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT act, account, integration, connector, persona, issued_ms FROM (
                     SELECT * FROM command_acts WHERE issued_ms >= ?1
                     ORDER BY issued_ms DESC LIMIT ?2)
                 ORDER BY issued_ms",
            )?;
            let rows = st.query_map(params![since_ms, limit as i64], |r| {
                let uuid = |i: usize| -> rusqlite::Result<Uuid> {
                    let text: String = r.get(i)?;
                    Uuid::parse_str(&text).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            i,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })
                };
                Ok(ActRow {
                    act: uuid(0)?,
                    account: r.get(1)?,
                    integration: r.get(2)?,
                    connector: r.get(3)?,
                    persona: uuid(4)?,
                    issued_ms: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}
