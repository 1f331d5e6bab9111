//! Rows of the store (storage types) and the writes and reads of each table. Secret setting
//! values are sealed before they reach a row; see [`super::secrets`].

use std::collections::BTreeMap;

use rusqlite::params;
use uuid::Uuid;

use super::{Store, StoreError, Written};

/// A connector as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRow {
    pub id: Uuid,
    pub account: String,
    pub integration: String,
    pub connector: String,
    pub title: String,
    pub running: bool,
    /// Setting values, secret ones sealed.
    pub settings: BTreeMap<String, String>,
    pub created_at: String,
}

impl ConnectorRow {
    /// When it was created; now when the stored stamp does not parse.
    pub fn created(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now())
    }
}

/// A flow document as stored (JSON of `wire::FlowDoc`).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRow {
    pub account: String,
    pub agent: String,
    pub flow: String,
    pub document: String,
}

/// Integration-level settings of one account: `(account, integration, settings)`.
pub type IntegrationSettingsRow = (String, String, BTreeMap<String, String>);

/// A session with its `ended_at` and `end_reason` (both `None` while live).
type SessionWithEnd = (SessionRow, Option<String>, Option<String>);

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: Uuid,
    pub account: String,
    pub persona: Uuid,
    pub integration: String,
    pub connector: String,
    pub channel: String,
    pub started_at: String,
}

fn json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).expect("a string map serializes")
}

fn unjson(text: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("settings: {e}")))
}

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("uuid {text:?}: {e}")))
}

impl Store {
    pub async fn put_connector(&self, row: ConnectorRow) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO connectors (id, account, integration, connector, title, status, settings, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, status = excluded.status,
                     settings = excluded.settings",
                params![
                    row.id.to_string(),
                    row.account,
                    row.integration,
                    row.connector,
                    row.title,
                    if row.running { "running" } else { "stopped" },
                    json(&row.settings),
                    row.created_at
                ],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_connector(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM connectors WHERE id = ?1",
                params![id.to_string()],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    pub fn connectors(&self) -> Result<Vec<ConnectorRow>, StoreError> {
        let raw = self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, account, integration, connector, title, status, settings, created_at
                 FROM connectors ORDER BY account, integration, connector",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raw.into_iter()
            .map(
                |(id, account, integration, connector, title, status, settings, created_at)| {
                    Ok(ConnectorRow {
                        id: uuid(&id)?,
                        account,
                        integration,
                        connector,
                        title,
                        running: status == "running",
                        settings: unjson(&settings)?,
                        created_at,
                    })
                },
            )
            .collect()
    }

    pub async fn put_integration_settings(
        &self,
        account: String,
        integration: String,
        settings: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO integration_settings (account, integration, settings) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account, integration) DO UPDATE SET settings = excluded.settings",
                params![account, integration, json(&settings)],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    /// `(account, integration, settings)` of every account.
    pub fn integration_settings(&self) -> Result<Vec<IntegrationSettingsRow>, StoreError> {
        let raw = self.read(|c| {
            let mut st =
                c.prepare("SELECT account, integration, settings FROM integration_settings")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raw.into_iter()
            .map(|(a, i, s)| Ok((a, i, unjson(&s)?)))
            .collect()
    }

    pub async fn put_flow(&self, row: FlowRow) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO flows (account, agent, flow, document, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account, agent, flow) DO UPDATE SET document = excluded.document,
                     updated_at = excluded.updated_at",
                params![row.account, row.agent, row.flow, row.document, chrono::Utc::now().to_rfc3339()],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_flow(
        &self,
        account: String,
        agent: String,
        flow: String,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM flows WHERE account = ?1 AND agent = ?2 AND flow = ?3",
                params![account, agent, flow],
            )?;
            // The flow's runner secret goes with it: a flow stored again gets a new one.
            tx.execute(
                "DELETE FROM runner_secrets WHERE account = ?1 AND agent = ?2 AND flow = ?3",
                params![account, agent, flow],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    pub fn flows(&self) -> Result<Vec<FlowRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT account, agent, flow, document FROM flows ORDER BY account, agent, flow",
            )?;
            let rows = st.query_map([], |r| {
                Ok(FlowRow {
                    account: r.get(0)?,
                    agent: r.get(1)?,
                    flow: r.get(2)?,
                    document: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records a started session and its actor (deferred: bookkeeping, not acknowledgement).
    pub fn session_started(&self, row: SessionRow, external_id: Option<String>) {
        self.write_later(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO sessions (id, account, persona, integration, connector, channel, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.id.to_string(),
                    row.account,
                    row.persona.to_string(),
                    row.integration,
                    row.connector,
                    row.channel,
                    row.started_at
                ],
            )?;
            if let Some(x) = external_id {
                tx.execute(
                    "INSERT OR IGNORE INTO actors (account, integration, external_id, persona, first_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![row.account, row.integration, x, row.persona.to_string(), row.started_at],
                )?;
            }
            Ok(Written::Done)
        });
    }

    /// The external id of `persona`'s actor in `account` (the first seen, if the persona had
    /// several), or `None` when the store has no actor for it. Blocking.
    pub fn actor_of_persona(
        &self,
        account: &str,
        persona: &crate::domain::PersonaId,
    ) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.read(|c| {
            c.prepare_cached(
                "SELECT external_id FROM actors WHERE account = ?1 AND persona = ?2
                 ORDER BY first_seen, integration LIMIT 1",
            )?
            .query_row(params![account, persona.to_string()], |r| r.get(0))
            .optional()
        })
    }

    pub fn session_ended(&self, id: Uuid, reason: &'static str) {
        self.write_later(move |tx| {
            tx.execute(
                "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE id = ?1 AND ended_at IS NULL",
                params![id.to_string(), chrono::Utc::now().to_rfc3339(), reason],
            )?;
            Ok(Written::Done)
        });
    }

    /// Ended sessions of `account`, newest first, at most `limit`: `(row, ended_at, reason)`.
    pub fn ended_sessions(
        &self,
        account: &str,
        limit: usize,
    ) -> Result<Vec<(SessionRow, String, String)>, StoreError> {
        let rows = self.sessions(
            "WHERE account = ?1 AND ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT ?2",
            params![account, limit as i64],
        )?;
        Ok(rows
            .into_iter()
            .map(|(row, ended_at, reason)| {
                (
                    row,
                    ended_at.unwrap_or_default(),
                    reason.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Sessions that have not ended.
    pub fn live_sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let rows = self.sessions("WHERE ended_at IS NULL ORDER BY started_at", params![])?;
        Ok(rows.into_iter().map(|(row, _, _)| row).collect())
    }

    /// Session rows selected by `tail` (a WHERE and ORDER clause), with `ended_at` and
    /// `end_reason`.
    fn sessions(
        &self,
        tail: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<SessionWithEnd>, StoreError> {
        type Raw = ([String; 7], Option<String>, Option<String>);
        let raw: Vec<Raw> = self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, account, persona, integration, connector, channel, started_at, ended_at, end_reason
                 FROM sessions {tail}"
            ))?;
            let rows = st.query_map(args, |r| {
                let mut cols: [String; 7] = Default::default();
                for (i, col) in cols.iter_mut().enumerate() {
                    *col = r.get(i)?;
                }
                Ok((cols, r.get(7)?, r.get(8)?))
            })?;
            rows.collect()
        })?;
        raw.into_iter()
            .map(
                |(
                    [id, account, persona, integration, connector, channel, started_at],
                    ended_at,
                    reason,
                )| {
                    Ok((
                        SessionRow {
                            id: uuid(&id)?,
                            account,
                            persona: uuid(&persona)?,
                            integration,
                            connector,
                            channel,
                            started_at,
                        },
                        ended_at,
                        reason,
                    ))
                },
            )
            .collect()
    }
}
