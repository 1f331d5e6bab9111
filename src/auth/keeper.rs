//! Where tokens live: rows in the store, and a cache of them by public id so a request costs
//! no SQLite read. A cached row is trusted for [`TokenKeeper::ttl`] and then read again, so a
//! token created or revoked by `switchboard token` beside a running daemon takes effect within
//! that time; one created or revoked through the API takes effect at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::{AuthError, Principal, Scopes, TokenText};
use crate::domain::Idn;
use crate::store::accounts::TokenRow;
use crate::store::{Store, StoreError, Written};

/// A token as the daemon knows it (the hash, never the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub account: Idn,
    pub name: String,
    pub scopes: Scopes,
    pub hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    fn of(row: TokenRow) -> Option<TokenRecord> {
        Some(TokenRecord {
            account: Idn::parse("account", &row.account).ok()?,
            scopes: Scopes::parse(row.scopes.split(',').filter(|s| !s.is_empty())).ok()?,
            id: row.id,
            name: row.name,
            hash: row.hash,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }

    /// The row the store holds for it.
    pub fn row(&self) -> TokenRow {
        TokenRow {
            id: self.id.clone(),
            account: self.account.to_string(),
            name: self.name.clone(),
            scopes: self.scopes.joined(),
            hash: self.hash.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }

    /// Whether it is neither revoked nor expired at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

struct Cached {
    /// Shared, so a request takes a reference, not a copy of the row.
    record: Arc<TokenRecord>,
    loaded: Instant,
}

/// Tokens: created, listed, revoked, and checked.
#[derive(Clone)]
pub struct TokenKeeper {
    store: Store,
    cache: Arc<DashMap<String, Cached>>,
    ttl: Duration,
}

impl TokenKeeper {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

    pub fn new(store: Store, ttl: Duration) -> TokenKeeper {
        TokenKeeper {
            store,
            cache: Arc::new(DashMap::new()),
            ttl,
        }
    }

    /// How long a cached token row is trusted before it is read again.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Creates a token; its text is returned once and never again.
    pub async fn create(
        &self,
        account: Idn,
        name: String,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(TokenText, TokenRecord), StoreError> {
        let text = TokenText::generate();
        let record = TokenRecord {
            id: text.id().to_owned(),
            account,
            name,
            scopes,
            hash: text.hash().to_vec(),
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
        };
        self.store.put_token(record.row()).await?;
        self.remember(Arc::new(record.clone()));
        Ok((text, record))
    }

    /// Revokes the token `id` if `may` allows its record; `false` when there is no such live
    /// token (or `may` refuses it, so another account's tokens look absent).
    pub async fn revoke(
        &self,
        id: &str,
        may: impl FnOnce(&TokenRecord) -> bool,
    ) -> Result<bool, StoreError> {
        let Some(record) = self.load(id).await? else {
            return Ok(false);
        };
        if record.revoked_at.is_some() || !may(&record) {
            return Ok(false);
        }
        let done = self.store.revoke_token(id.to_owned()).await? == Written::Done;
        self.cache.remove(id);
        Ok(done)
    }

    /// Takes a token row another daemon of a shared control plane wrote (created or revoked):
    /// stored, and cached at once.
    pub async fn adopt(&self, row: TokenRow) -> Result<(), StoreError> {
        let record = TokenRecord::of(row.clone());
        self.store.upsert_token(row).await?;
        match record {
            Some(r) => self.remember(Arc::new(r)),
            None => tracing::warn!("a shared token row does not parse: not cached"),
        }
        Ok(())
    }

    /// The stored row of token `id`.
    pub async fn row(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let (store, key) = (self.store.clone(), id.to_owned());
        blocking(move || store.token(&key)).await
    }

    /// Tokens of `account` (all accounts when `None`), oldest first.
    pub async fn list(&self, account: Option<Idn>) -> Result<Vec<TokenRecord>, StoreError> {
        let store = self.store.clone();
        blocking(move || store.tokens(account.as_ref().map(Idn::as_str)))
            .await
            .map(|rows| rows.into_iter().filter_map(TokenRecord::of).collect())
    }

    /// Whether any token exists at all (none: the first start writes the admin token).
    pub async fn any(&self) -> Result<bool, StoreError> {
        Ok(!self.list(None).await?.is_empty())
    }

    /// The principal a bearer token acts as.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        let text = TokenText::parse(presented).ok_or(AuthError::Invalid)?;
        let record = match self.cached(text.id()) {
            Some(r) => r,
            // A store that fails to answer refuses the request; it never lets it through.
            None => self
                .load(text.id())
                .await
                .map_err(|_| AuthError::Invalid)?
                .ok_or(AuthError::Invalid)?,
        };
        if !text.matches(&record.hash) {
            return Err(AuthError::Invalid);
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if !record.live(Utc::now()) {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            account: record.account.clone(),
            scopes: record.scopes,
        })
    }

    fn cached(&self, id: &str) -> Option<Arc<TokenRecord>> {
        let c = self.cache.get(id)?;
        (c.loaded.elapsed() < self.ttl).then(|| c.record.clone())
    }

    fn remember(&self, record: Arc<TokenRecord>) {
        self.cache.insert(
            record.id.clone(),
            Cached {
                record,
                loaded: Instant::now(),
            },
        );
    }

    /// Reads the row again (off the async workers) and caches it. Unknown ids are not
    /// cached, so made-up ids cannot grow the cache.
    async fn load(&self, id: &str) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let (store, key) = (self.store.clone(), id.to_owned());
        let row = blocking(move || store.token(&key)).await?;
        let record = row.and_then(TokenRecord::of).map(Arc::new);
        match &record {
            Some(r) => self.remember(r.clone()),
            None => {
                self.cache.remove(id);
            }
        }
        Ok(record)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Sqlite(format!("blocking read: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("sb-keeper-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("t.db"), 64, 5000).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_authenticates_until_revoked_or_expired() {
        let keeper = TokenKeeper::new(store(), Duration::from_secs(60));
        let acct = Idn::known("acme");
        let (text, record) = keeper
            .create(acct.clone(), "ci".into(), Scopes::of(&[Scope::Read]), None)
            .await
            .unwrap();
        let p = keeper.authenticate(text.as_str()).await.unwrap();
        assert_eq!(p.account, acct);
        assert_eq!(
            p.need(Scope::EventsWrite),
            Err(AuthError::MissingScope(Scope::EventsWrite))
        );
        // A second keeper on the same store (a restart) finds it through the store.
        let again = TokenKeeper::new(keeper.store.clone(), Duration::from_secs(60));
        assert!(again.authenticate(text.as_str()).await.is_ok());
        assert!(keeper.revoke(&record.id, |_| true).await.unwrap());
        assert_eq!(
            keeper.authenticate(text.as_str()).await,
            Err(AuthError::Revoked)
        );
        assert!(!keeper.revoke(&record.id, |_| true).await.unwrap(), "once");

        let past = Utc::now() - chrono::Duration::seconds(1);
        let (old, _) = keeper
            .create(acct, "old".into(), Scopes::of(&[Scope::Read]), Some(past))
            .await
            .unwrap();
        assert_eq!(
            keeper.authenticate(old.as_str()).await,
            Err(AuthError::Expired)
        );
        // Right shape and checksum, unknown id.
        let made_up = TokenText::generate();
        assert_eq!(
            keeper.authenticate(made_up.as_str()).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(keeper.list(None).await.unwrap().len(), 2);
    }
}
