//! Accounts and API tokens in the store. Token rows hold the hash, never the text.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError, Written};

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub account: String,
    pub name: String,
    pub scopes: String,
    pub hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub idn: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

fn time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        account: r.get(1)?,
        name: r.get(2)?,
        scopes: r.get(3)?,
        hash: r.get(4)?,
        created_at: time(r.get(5)?).unwrap_or_default(),
        expires_at: time(r.get(6)?),
        revoked_at: time(r.get(7)?),
    })
}

const TOKEN_COLUMNS: &str = "id, account, name, scopes, hash, created_at, expires_at, revoked_at";

impl Store {
    /// Creates the account; `Duplicate` when it exists.
    pub async fn put_account(&self, idn: String, title: String) -> Result<Written, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO accounts (idn, title, created_at) VALUES (?1, ?2, ?3)",
                params![idn, title, Utc::now().to_rfc3339()],
            )?;
            Ok(if n == 0 {
                Written::Duplicate
            } else {
                Written::Done
            })
        })
        .await
    }

    /// Every account, by idn. Blocking.
    pub fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare("SELECT idn, title, created_at FROM accounts ORDER BY idn")?;
            let rows = st.query_map([], |r| {
                Ok(AccountRow {
                    idn: r.get(0)?,
                    title: r.get(1)?,
                    created_at: time(r.get(2)?).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }

    pub async fn put_token(&self, row: TokenRow) -> Result<Written, StoreError> {
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                token_params(&row),
            )?;
            Ok(Written::Done)
        })
        .await
    }

    /// Stores a token row as another daemon of a shared control plane wrote it: inserted, or
    /// replacing the row with its id (a revocation).
    pub async fn upsert_token(&self, row: TokenRow) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO UPDATE SET account = excluded.account,
                         name = excluded.name, scopes = excluded.scopes, hash = excluded.hash,
                         expires_at = excluded.expires_at, revoked_at = excluded.revoked_at"
                ),
                token_params(&row),
            )?;
            Ok(Written::Done)
        })
        .await
        .map(|_| ())
    }

    /// Marks the token revoked; `Duplicate` when no live token has that id.
    pub async fn revoke_token(&self, id: String) -> Result<Written, StoreError> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, Utc::now().to_rfc3339()],
            )?;
            Ok(if n == 0 {
                Written::Duplicate
            } else {
                Written::Done
            })
        })
        .await
    }

    /// The token with this public id. Blocking.
    pub fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))?
                .query_row(params![id], token_row)
                .optional()
        })
    }

    /// Tokens, of one account or all, oldest first. Blocking.
    pub fn tokens(&self, account: Option<&str>) -> Result<Vec<TokenRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR account = ?1 ORDER BY created_at, id"
            ))?;
            let rows = st.query_map(params![account], token_row)?;
            rows.collect()
        })
    }
}

/// A token row's values in `TOKEN_COLUMNS` order.
fn token_params(row: &TokenRow) -> impl rusqlite::Params + '_ {
    (
        &row.id,
        &row.account,
        &row.name,
        &row.scopes,
        &row.hash,
        row.created_at.to_rfc3339(),
        row.expires_at.map(|t| t.to_rfc3339()),
        row.revoked_at.map(|t| t.to_rfc3339()),
    )
}
