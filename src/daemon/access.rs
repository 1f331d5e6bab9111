//! Accounts and API tokens: who may call, and for which account. The HTTP layer turns a bearer
//! token into a principal here; an account's things are reached only through methods that take
//! the principal's account.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::control_records::Record;
use super::{ChangeError, ControlPlaneError, Daemon};
use crate::auth::{AuthError, Principal, Scope, Scopes, TokenKeeper, TokenRecord, TokenText};
use crate::domain::Idn;
use crate::store::accounts::AccountRow;
use crate::store::{StoreError, Written};

impl Daemon {
    pub fn tokens(&self) -> &TokenKeeper {
        &self.tokens
    }

    /// The principal of a bearer token (401/403 reasons in [`AuthError`]).
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        self.tokens.authenticate(bearer).await
    }

    /// Creates an account, with the daemon's internal connectors in it; `false` when it exists
    /// (here, or, with a shared control plane, made by another daemon meanwhile).
    pub async fn create_account(&self, idn: &Idn, title: &str) -> Result<bool, ChangeError> {
        let mut seen = self.control_lock().await;
        let created = self
            .store
            .put_account(idn.to_string(), title.to_owned())
            .await?
            == Written::Done;
        self.engine.registry().ensure_account(idn);
        if created {
            let row = AccountRow {
                idn: idn.to_string(),
                title: title.to_owned(),
                created_at: Utc::now(),
            };
            match self.share(&mut seen, Record::from(row)).await {
                // The same account, made by another daemon: it is applied here.
                Err(ControlPlaneError::Conflict { .. }) => return Ok(false),
                other => other?,
            }
        }
        Ok(created)
    }

    /// Every account.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.accounts())
            .await
            .map_err(|e| StoreError::Corrupt(format!("account read task: {e}")))?
    }

    /// Whether the account exists.
    pub async fn has_account(&self, idn: &Idn) -> Result<bool, StoreError> {
        Ok(self.accounts().await?.iter().any(|a| a.idn == idn.as_str()))
    }

    /// Creates a token in `account`; its text is in the answer and nowhere else.
    pub async fn create_token(
        &self,
        account: &Idn,
        name: &str,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(TokenText, TokenRecord), super::ChangeError> {
        let mut seen = self.control_lock().await;
        self.room_for_token(account).await?;
        let (text, record) = self
            .tokens
            .create(account.clone(), name.to_owned(), scopes, expires_at)
            .await?;
        self.share(&mut seen, Record::from(record.row())).await?;
        Ok((text, record))
    }

    /// Revokes token `id` if `may` allows its record (see [`TokenKeeper::revoke`]); shared
    /// with a shared control plane.
    pub async fn revoke_token(
        &self,
        id: &str,
        may: impl FnOnce(&TokenRecord) -> bool,
    ) -> Result<bool, super::ChangeError> {
        let mut seen = self.control_lock().await;
        if !self.tokens.revoke(id, may).await? {
            return Ok(false);
        }
        if let Some(row) = self.tokens.row(id).await? {
            self.share(&mut seen, Record::from(row)).await?;
        }
        Ok(true)
    }
}

/// On a store with no token at all, creates an admin token of the home account and writes it
/// to `path` (mode 0600, replacing what is there), so the first start needs no extra step.
/// Returns whether it wrote one.
pub async fn write_first_admin_token(
    tokens: &TokenKeeper,
    home: &Idn,
    path: &Path,
) -> Result<bool, FirstTokenError> {
    if tokens.any().await? {
        return Ok(false);
    }
    let (text, _) = tokens
        .create(
            home.clone(),
            "first start".to_owned(),
            Scopes::of(&[Scope::Admin]),
            None,
        )
        .await?;
    write_private(path, &format!("{}\n", text.as_str()))
        .map_err(|e| FirstTokenError::File(path.display().to_string(), e))?;
    Ok(true)
}

/// Writes `contents` to a file only its owner may read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Why the first admin token could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FirstTokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the admin token file {0}: {1}")]
    File(String, std::io::Error),
}
