//! The daemon's own keys in the store (sealed by the caller), by name.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError, Written};

impl Store {
    /// The stored value of key `name`. Blocking.
    pub fn daemon_key(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM daemon_keys WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Every stored key, `(name, value)`. Blocking.
    pub fn daemon_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare("SELECT name, value FROM daemon_keys ORDER BY name")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    pub async fn put_daemon_key(&self, name: String, value: String) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO daemon_keys (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            Ok(Written::Done)
        })
        .await
        .map(drop)
    }

    /// Whether the store already holds personas (actors or sessions): ids derived before the
    /// daemon had a persona key.
    pub fn has_personas(&self) -> Result<bool, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM actors) OR EXISTS (SELECT 1 FROM sessions)",
                [],
                |r| r.get(0),
            )
        })
    }
}
