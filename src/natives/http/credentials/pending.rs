//! Authorization-code flows waiting for their callback, kept in the `http` native's own table so
//! a daemon restart between `oauth/start` and `/oauth/callback` loses none: by a hash of the
//! state (the state itself stays with the browser), the PKCE verifier sealed, the redirect URI
//! and the credential. Single use (the callback that deletes the row is the one that gets it)
//! and valid for [`FLOW_TTL`] from the start; expired rows go when a flow starts, and at most
//! [`MAX_PENDING`] wait (the oldest go first).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::clock::Clock;
use super::error::CredentialError;
use super::oauth::Callback;
use crate::natives::component::ResealError;
use crate::store::{SecretBox, Store, StoreError, Written};

/// How long an authorization may take, from start to callback.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Flows waiting for their callback at most.
pub const MAX_PENDING: i64 = 10_000;

/// The table, the `http` component's second migration.
pub const TABLE: &str = "CREATE TABLE http_oauth_flows (
        state_hash TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        credential TEXT NOT NULL,
        verifier TEXT NOT NULL,
        redirect TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX http_oauth_flows_created ON http_oauth_flows (created_at)";

/// What a state is kept as.
fn hash(state: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(b"switchboard oauth state\0")
            .chain_update(state.as_bytes())
            .finalize(),
    )
}

/// The associated data a flow's verifier is sealed for.
fn aad(account: &str, state_hash: &str) -> String {
    format!("{account}/http/oauth_flow/{state_hash}")
}

/// The flows waiting for their callback.
pub struct PendingFlows {
    store: Store,
    secrets: Arc<SecretBox>,
    clock: Clock,
}

impl PendingFlows {
    pub fn new(store: Store, secrets: Arc<SecretBox>, clock: Clock) -> PendingFlows {
        PendingFlows {
            store,
            secrets,
            clock,
        }
    }

    /// Keeps flow `state` until its callback (or [`FLOW_TTL`]).
    pub async fn keep(&self, state: &str, flow: &Callback) -> Result<(), CredentialError> {
        let key = hash(state);
        let verifier = self.secrets.seal(&flow.verifier, &aad(&flow.account, &key));
        let (account, id, redirect) = (
            flow.account.clone(),
            flow.id.to_string(),
            flow.redirect.clone(),
        );
        let now = self.clock.now_ms();
        let expired = now - FLOW_TTL.as_millis() as i64;
        self.store
            .write(move |tx| {
                tx.execute(
                    "DELETE FROM http_oauth_flows WHERE created_at <= ?1",
                    [expired],
                )?;
                tx.execute(
                    "DELETE FROM http_oauth_flows WHERE state_hash IN (SELECT state_hash
                     FROM http_oauth_flows ORDER BY created_at DESC LIMIT -1 OFFSET ?1)",
                    [MAX_PENDING - 1],
                )?;
                tx.execute(
                    "INSERT OR REPLACE INTO http_oauth_flows
                     (state_hash, account, credential, verifier, redirect, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![key, account, id, verifier, redirect, now],
                )?;
                Ok(Written::Done)
            })
            .await?;
        Ok(())
    }

    /// The flow of `state`, once: a second callback, or one past [`FLOW_TTL`], finds none.
    pub async fn take(&self, state: &str) -> Result<Option<Callback>, CredentialError> {
        let key = hash(state);
        let (store, k) = (self.store.clone(), key.clone());
        let row: Option<(String, String, String, String, i64)> =
            tokio::task::spawn_blocking(move || {
                store.read(|c| {
                    c.query_row(
                        "SELECT account, credential, verifier, redirect, created_at
                         FROM http_oauth_flows WHERE state_hash = ?1",
                        [k],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )
                    .optional()
                })
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("oauth flow read task: {e}")))??;
        let Some((account, credential, verifier, redirect, created_at)) = row else {
            return Ok(None);
        };
        let k = key.clone();
        let taken = self
            .store
            .write(move |tx| {
                let n = tx.execute("DELETE FROM http_oauth_flows WHERE state_hash = ?1", [k])?;
                Ok(if n == 1 {
                    Written::Done
                } else {
                    Written::Duplicate
                })
            })
            .await?;
        if taken == Written::Duplicate
            || self.clock.now_ms() >= created_at + FLOW_TTL.as_millis() as i64
        {
            return Ok(None);
        }
        let id = Uuid::parse_str(&credential)
            .map_err(|_| StoreError::Corrupt("an oauth flow's credential id".into()))?;
        let verifier = self
            .secrets
            .open(&verifier, &aad(&account, &key))
            .map_err(|_| CredentialError::Sealed(credential))?;
        Ok(Some(Callback {
            account,
            id,
            verifier,
            redirect,
        }))
    }
}

/// Re-seals the verifiers of the flows waiting (`switchboard rekey`); answers how many.
pub fn reseal(tx: &rusqlite::Transaction<'_>, ring: &SecretBox) -> Result<usize, ResealError> {
    let rows: Vec<(String, String, String)> = tx
        .prepare("SELECT state_hash, account, verifier FROM http_oauth_flows")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut changed = Vec::new();
    for (key, account, verifier) in rows {
        if ring.needs_reseal(&verifier) {
            let aad = aad(&account, &key);
            let plain = ring
                .open(&verifier, &aad)
                .map_err(|source| ResealError::Open {
                    place: format!("http_oauth_flows {key}"),
                    source,
                })?;
            changed.push((key, ring.seal(&plain, &aad)));
        }
    }
    for (key, verifier) in &changed {
        tx.execute(
            "UPDATE http_oauth_flows SET verifier = ?2 WHERE state_hash = ?1",
            [key, verifier],
        )?;
    }
    Ok(changed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: Uuid) -> Callback {
        Callback {
            account: "acme".into(),
            id,
            verifier: "verifier-planted-1".into(),
            redirect: "http://127.0.0.1:1/oauth/callback".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flow_outlives_the_store_handle_once_and_for_ten_minutes() {
        let dir = std::env::temp_dir().join(format!("sb-oauth-flows-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.db");
        let store = Store::open(&path, 64, 5000).unwrap();
        store
            .migrate_component("http", super::super::MIGRATIONS)
            .await
            .unwrap();
        let ring = Arc::new(SecretBox::from_base64(&SecretBox::generate()).unwrap());
        let flows = PendingFlows::new(store.clone(), ring.clone(), Clock::start());
        let id = Uuid::now_v7();
        flows.keep("state-a", &flow(id)).await.unwrap();
        flows.keep("state-b", &flow(id)).await.unwrap();
        store.flush().await.unwrap();
        // Neither the state nor the verifier is in the file.
        let file = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for bytes in [file, wal] {
            for planted in [&b"verifier-planted-1"[..], b"state-a"] {
                assert!(!bytes.windows(planted.len()).any(|w| w == planted));
            }
        }
        drop((flows, store));

        // Another handle on the file (a restarted daemon) finds it, once.
        let store = Store::open(&path, 64, 5000).unwrap();
        let flows = PendingFlows::new(store.clone(), ring.clone(), Clock::start());
        let got = flows.take("state-a").await.unwrap().expect("kept");
        assert_eq!((got.id, got.verifier.as_str()), (id, "verifier-planted-1"));
        assert_eq!(got.redirect, "http://127.0.0.1:1/oauth/callback");
        assert!(flows.take("state-a").await.unwrap().is_none(), "single use");
        assert!(flows.take("unknown").await.unwrap().is_none());

        // Past ten minutes, none (and the row is gone).
        tokio::time::advance(FLOW_TTL).await;
        assert!(flows.take("state-b").await.unwrap().is_none(), "expired");
        let left: i64 = store
            .read(|c| c.query_row("SELECT COUNT(*) FROM http_oauth_flows", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(left, 0);
    }
}
