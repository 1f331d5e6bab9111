//! Credentials at rest, in the `http` native's own table: plain fields as JSON, secret fields
//! and the OAuth tokens sealed with the daemon's keyring (associated data
//! `<account>/http/credential/<id>/<field>`: a sealed value copied to another credential or
//! field does not open). Configuration and tokens are apart (`sealed`, `tokens`), so an edit
//! and a refresh never overwrite each other. Reads run on blocking threads.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use super::clock::Clock;
use super::error::CredentialError;
use super::kind::{check_field, check_together, status, CredentialType, Status};
use super::pending::PendingFlows;
use crate::natives::component::ResealError;
use crate::store::{SecretBox, Store, StoreError, Written};

/// The table, the `http` component's first migration.
pub const TABLE: &str = "CREATE TABLE http_credentials (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        plain TEXT NOT NULL,
        sealed TEXT NOT NULL,
        tokens TEXT NOT NULL DEFAULT '{}',
        needs_reauth INTEGER NOT NULL DEFAULT 0,
        expires_at INTEGER,
        refreshed_at INTEGER,
        created_at INTEGER NOT NULL,
        UNIQUE (account, name)
    )";

const COLUMNS: &str =
    "id, account, name, kind, plain, sealed, tokens, needs_reauth, expires_at, refreshed_at, created_at";

/// Longest credential name, in characters.
pub const MAX_NAME: usize = 100;

/// A stored credential: secret fields still sealed.
#[derive(Clone)]
pub struct Credential {
    pub id: Uuid,
    pub account: String,
    pub name: String,
    pub kind: CredentialType,
    /// Fields that are not secret.
    pub plain: BTreeMap<String, String>,
    /// Secret fields, sealed.
    sealed: BTreeMap<String, String>,
    /// The OAuth tokens, sealed.
    tokens: BTreeMap<String, String>,
    pub needs_reauth: bool,
    /// When the access token expires (Unix ms).
    pub expires_at: Option<i64>,
    /// When the token was last refreshed (Unix ms).
    pub refreshed_at: Option<i64>,
    pub created_at: i64,
}

impl Credential {
    /// The names of the secret fields set (their values are never shown).
    pub fn secrets_set(&self) -> Vec<&str> {
        self.sealed.keys().map(String::as_str).collect()
    }

    pub fn status(&self) -> Status {
        let set: Vec<&str> = self
            .plain
            .keys()
            .chain(self.sealed.keys())
            .chain(self.tokens.keys())
            .map(String::as_str)
            .collect();
        status(self.kind, &set, self.needs_reauth)
    }
}

fn aad(account: &str, id: impl std::fmt::Display, field: &str) -> String {
    format!("{account}/http/credential/{id}/{field}")
}

fn json_map(text: &str) -> rusqlite::Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn text_of(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).expect("a map of strings serializes")
}

fn row(r: &Row<'_>) -> rusqlite::Result<Credential> {
    let id: String = r.get(0)?;
    let kind: String = r.get(3)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("credential {what}").into(),
        )
    };
    Ok(Credential {
        id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
        account: r.get(1)?,
        name: r.get(2)?,
        kind: CredentialType::parse(&kind).ok_or_else(|| bad("kind"))?,
        plain: json_map(&r.get::<_, String>(4)?)?,
        sealed: json_map(&r.get::<_, String>(5)?)?,
        tokens: json_map(&r.get::<_, String>(6)?)?,
        needs_reauth: r.get(7)?,
        expires_at: r.get(8)?,
        refreshed_at: r.get(9)?,
        created_at: r.get(10)?,
    })
}

/// Tokens an OAuth provider granted.
pub struct Tokens {
    pub access: String,
    /// A new refresh token, if the provider sent one (else the stored one stays).
    pub refresh: Option<String>,
    /// When the access token expires (Unix ms), if the provider said.
    pub expires_at: Option<i64>,
}

/// A field change of a create or configure: a value, or `None` to remove the field.
pub type Change = (String, Option<String>);

/// The credentials of every account.
#[derive(Clone)]
pub struct CredentialStore {
    store: Store,
    secrets: Arc<SecretBox>,
    /// When things happen: creations, refreshes, expiries.
    pub clock: Clock,
}

/// Checks a name: 1 to [`MAX_NAME`] characters, not blank.
pub fn check_name(name: &str) -> Result<String, CredentialError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(CredentialError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    Ok(name.to_owned())
}

impl CredentialStore {
    pub fn new(store: Store, secrets: Arc<SecretBox>, clock: Clock) -> CredentialStore {
        CredentialStore {
            store,
            secrets,
            clock,
        }
    }

    /// The flows waiting for their callback, in the same store, sealed with the same keyring.
    pub fn pending_flows(&self) -> PendingFlows {
        PendingFlows::new(self.store.clone(), self.secrets.clone(), self.clock)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, CredentialError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|e| StoreError::Corrupt(format!("credential read task: {e}")))?
            .map_err(CredentialError::from)
    }

    /// The account's credentials, by name.
    pub async fn list(&self, account: &str) -> Result<Vec<Credential>, CredentialError> {
        let account = account.to_owned();
        self.read(move |c| {
            let mut q = c.prepare(&format!(
                "SELECT {COLUMNS} FROM http_credentials WHERE account = ?1 ORDER BY name"
            ))?;
            let rows = q.query_map([account], row)?.collect();
            rows
        })
        .await
    }

    /// Every account's OAuth credentials holding a token and not waiting for a new
    /// authorization: what the daily sweep looks at.
    pub async fn oauth_connected(&self) -> Result<Vec<Credential>, CredentialError> {
        self.read(move |c| {
            let mut q = c.prepare(&format!(
                "SELECT {COLUMNS} FROM http_credentials
                 WHERE kind IN ('oauth2', 'intercom') AND needs_reauth = 0 AND tokens != '{{}}'
                 ORDER BY id"
            ))?;
            let rows = q.query_map([], row)?.collect();
            rows
        })
        .await
    }

    /// The account's credential with this id or name; another account's is not found.
    pub async fn find(
        &self,
        account: &str,
        id_or_name: &str,
    ) -> Result<Credential, CredentialError> {
        let (account, key) = (account.to_owned(), id_or_name.to_owned());
        let by_id = Uuid::parse_str(id_or_name)
            .map(|u| u.to_string())
            .unwrap_or_default();
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM http_credentials WHERE account = ?1 AND (id = ?2 OR name = ?3)
                     ORDER BY id = ?2 DESC LIMIT 1"
                ),
                params![account, by_id, key],
                row,
            )
            .optional()
        })
        .await?
        .ok_or_else(|| CredentialError::NotFound(id_or_name.to_owned()))
    }

    /// Applies `changes` (checked for `kind`) to the fields of credential `id`.
    fn apply(
        &self,
        kind: CredentialType,
        (account, id): (&str, Uuid),
        plain: &mut BTreeMap<String, String>,
        sealed: &mut BTreeMap<String, String>,
        changes: Vec<Change>,
    ) -> Result<(), CredentialError> {
        for (name, value) in changes {
            let field = match &value {
                Some(v) => check_field(kind, &name, v),
                None => check_field(kind, &name, ""),
            };
            let field = match (field, &value) {
                (Ok(f), _) => f,
                // Removing a field needs only that it exists.
                (Err(_), None) if kind.field(&name).is_some() => {
                    kind.field(&name).expect("checked")
                }
                (Err((f, reason)), _) => return Err(CredentialError::invalid(f, reason)),
            };
            plain.remove(&name);
            sealed.remove(&name);
            if let Some(v) = value {
                if field.secret {
                    sealed.insert(
                        name.clone(),
                        self.secrets.seal(&v, &aad(account, id, &name)),
                    );
                } else {
                    plain.insert(name, v);
                }
            }
        }
        check_together(kind, plain).map_err(|(f, r)| CredentialError::invalid(f, r))
    }

    /// Creates a credential of `kind` named `name` with `changes` set.
    pub async fn create(
        &self,
        account: &str,
        name: &str,
        kind: CredentialType,
        changes: Vec<Change>,
    ) -> Result<Credential, CredentialError> {
        let name = check_name(name)?;
        let id = Uuid::now_v7();
        let (mut plain, mut sealed) = (BTreeMap::new(), BTreeMap::new());
        self.apply(kind, (account, id), &mut plain, &mut sealed, changes)?;
        let (a, n) = (account.to_owned(), name.clone());
        let (p, s) = (text_of(&plain), text_of(&sealed));
        let now = self.clock.now_ms();
        let written = self
            .store
            .write(move |tx| {
                let n = tx.execute(
                    "INSERT OR IGNORE INTO http_credentials (id, account, name, kind, plain, sealed, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![id.to_string(), a, n, kind.as_str(), p, s, now],
                )?;
                Ok(if n == 0 { Written::Duplicate } else { Written::Done })
            })
            .await?;
        if written == Written::Duplicate {
            return Err(CredentialError::NameTaken(name));
        }
        self.find(account, &id.to_string()).await
    }

    /// Renames and/or reconfigures credential `id` of `account`.
    pub async fn update(
        &self,
        account: &str,
        id: &str,
        name: Option<&str>,
        changes: Vec<Change>,
    ) -> Result<Credential, CredentialError> {
        let mut c = self.find(account, id).await?;
        let name = name.map(check_name).transpose()?;
        self.apply(
            c.kind,
            (account, c.id),
            &mut c.plain,
            &mut c.sealed,
            changes,
        )?;
        let new_name = name.clone().unwrap_or_else(|| c.name.clone());
        let (a, key) = (account.to_owned(), c.id.to_string());
        let (p, s) = (text_of(&c.plain), text_of(&c.sealed));
        let written = self
            .store
            .write(move |tx| {
                let n = tx.execute(
                    "UPDATE OR IGNORE http_credentials SET name = ?3, plain = ?4, sealed = ?5
                     WHERE account = ?1 AND id = ?2",
                    params![a, key, new_name, p, s],
                )?;
                Ok(if n == 0 {
                    Written::Duplicate
                } else {
                    Written::Done
                })
            })
            .await?;
        if written == Written::Duplicate {
            return match name {
                Some(n) => Err(CredentialError::NameTaken(n)),
                None => Err(CredentialError::NotFound(id.to_owned())),
            };
        }
        self.find(account, &c.id.to_string()).await
    }

    /// Deletes credential `id` of `account`.
    pub async fn delete(&self, account: &str, id: Uuid) -> Result<(), CredentialError> {
        let (a, key) = (account.to_owned(), id.to_string());
        let written = self
            .store
            .write(move |tx| {
                let n = tx.execute(
                    "DELETE FROM http_credentials WHERE account = ?1 AND id = ?2",
                    params![a, key],
                )?;
                Ok(if n == 0 {
                    Written::Duplicate
                } else {
                    Written::Done
                })
            })
            .await?;
        match written {
            Written::Done => Ok(()),
            Written::Duplicate => Err(CredentialError::NotFound(id.to_string())),
        }
    }

    /// Stores `tokens` for credential `c` (connected again: `needs_reauth` cleared).
    pub async fn set_tokens(&self, c: &Credential, tokens: Tokens) -> Result<(), CredentialError> {
        let mut sealed = c.tokens.clone();
        let seal = |k: &str, v: &str| self.secrets.seal(v, &aad(&c.account, c.id, k));
        sealed.insert("access_token".into(), seal("access_token", &tokens.access));
        if let Some(r) = &tokens.refresh {
            sealed.insert("refresh_token".into(), seal("refresh_token", r));
        }
        let (a, key, t) = (c.account.clone(), c.id.to_string(), text_of(&sealed));
        let (expires, now) = (tokens.expires_at, self.clock.now_ms());
        self.store
            .write(move |tx| {
                tx.execute(
                    "UPDATE http_credentials SET tokens = ?3, expires_at = ?4, refreshed_at = ?5,
                     needs_reauth = 0 WHERE account = ?1 AND id = ?2",
                    params![a, key, t, expires, now],
                )?;
                Ok(Written::Done)
            })
            .await?;
        Ok(())
    }

    /// Marks credential `c` as needing a new authorization.
    pub async fn mark_needs_reauth(&self, c: &Credential) -> Result<(), CredentialError> {
        let (a, key) = (c.account.clone(), c.id.to_string());
        self.store
            .write(move |tx| {
                tx.execute(
                    "UPDATE http_credentials SET needs_reauth = 1 WHERE account = ?1 AND id = ?2",
                    params![a, key],
                )?;
                Ok(Written::Done)
            })
            .await?;
        Ok(())
    }

    /// The secret fields and tokens of `c`, opened (for the request that carries them only).
    pub fn open(&self, c: &Credential) -> Result<BTreeMap<String, String>, CredentialError> {
        c.sealed
            .iter()
            .chain(c.tokens.iter())
            .map(|(k, v)| {
                self.secrets
                    .open(v, &aad(&c.account, c.id, k))
                    .map(|plain| (k.clone(), plain))
                    .map_err(|_| CredentialError::Sealed(c.id.to_string()))
            })
            .collect()
    }
}

/// Re-seals, under the keyring's current key, the secret fields and tokens another key of the
/// ring sealed (`switchboard rekey`); answers how many. Reads every credential before writing
/// any: a value that does not open changes nothing.
pub fn reseal(tx: &rusqlite::Transaction<'_>, ring: &SecretBox) -> Result<usize, ResealError> {
    let rows: Vec<(String, String, String, String)> = tx
        .prepare("SELECT id, account, sealed, tokens FROM http_credentials")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut changed = Vec::new();
    let mut values = 0;
    for (id, account, sealed, tokens) in rows {
        let mut maps = [json_map(&sealed)?, json_map(&tokens)?];
        let before = values;
        for (field, v) in maps.iter_mut().flat_map(|m| m.iter_mut()) {
            if ring.needs_reseal(v) {
                let aad = aad(&account, &id, field);
                let plain = ring.open(v, &aad).map_err(|source| ResealError::Open {
                    place: format!("http_credentials {id} {field}"),
                    source,
                })?;
                *v = ring.seal(&plain, &aad);
                values += 1;
            }
        }
        if values > before {
            let [sealed, tokens] = maps;
            changed.push((id, text_of(&sealed), text_of(&tokens)));
        }
    }
    for (id, sealed, tokens) in changed {
        tx.execute(
            "UPDATE http_credentials SET sealed = ?2, tokens = ?3 WHERE id = ?1",
            params![id, sealed, tokens],
        )?;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> (CredentialStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sb-credentials-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.db");
        let store = Store::open(&path, 64, 5000).unwrap();
        let ring = SecretBox::from_base64(&SecretBox::generate()).unwrap();
        (
            CredentialStore::new(store, Arc::new(ring), Clock::start()),
            path,
        )
    }

    fn set(name: &str, value: &str) -> Change {
        (name.to_owned(), Some(value.to_owned()))
    }

    #[tokio::test]
    async fn secrets_are_sealed_at_rest_and_open_for_their_credential_only() {
        let (s, path) = credentials();
        s.store
            .migrate_component("http", super::super::MIGRATIONS)
            .await
            .unwrap();
        let c = s
            .create(
                "acme",
                "HubSpot API",
                CredentialType::Bearer,
                vec![set("token", "tok-planted-1")],
            )
            .await
            .unwrap();
        assert_eq!(c.status(), Status::Connected);
        assert_eq!(c.secrets_set(), ["token"]);
        s.store.flush().await.unwrap();
        let file = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for bytes in [file, wal] {
            assert!(
                !bytes.windows(13).any(|w| w == b"tok-planted-1"),
                "the token is in the file"
            );
        }
        assert_eq!(s.open(&c).unwrap()["token"], "tok-planted-1");
        // By name, in its account only.
        assert_eq!(s.find("acme", "HubSpot API").await.unwrap().id, c.id);
        assert!(matches!(
            s.find("other", "HubSpot API").await,
            Err(CredentialError::NotFound(_))
        ));
        // A sealed value moved to another credential does not open.
        let mut moved = s
            .create("acme", "Other", CredentialType::Bearer, vec![])
            .await
            .unwrap();
        moved.sealed = c.sealed.clone();
        assert!(matches!(s.open(&moved), Err(CredentialError::Sealed(_))));
    }

    #[tokio::test]
    async fn names_are_unique_per_account_and_fields_change_or_go() {
        let (s, _) = credentials();
        s.store
            .migrate_component("http", super::super::MIGRATIONS)
            .await
            .unwrap();
        let a = s
            .create(
                "acme",
                "A",
                CredentialType::ApiKey,
                vec![set("value", "k"), set("header", "X-K")],
            )
            .await
            .unwrap();
        s.create("acme", "B", CredentialType::Basic, vec![])
            .await
            .unwrap();
        s.create("globex", "A", CredentialType::Basic, vec![])
            .await
            .unwrap();
        assert!(matches!(
            s.create("acme", "A", CredentialType::Basic, vec![]).await,
            Err(CredentialError::NameTaken(_))
        ));
        assert!(matches!(
            s.update("acme", &a.id.to_string(), Some("B"), vec![]).await,
            Err(CredentialError::NameTaken(_))
        ));
        let a = s
            .update(
                "acme",
                &a.id.to_string(),
                Some("Renamed"),
                vec![("header".into(), None), set("query_param", "key")],
            )
            .await
            .unwrap();
        assert_eq!(a.name, "Renamed");
        assert_eq!(a.plain.get("query_param").map(String::as_str), Some("key"));
        assert!(!a.plain.contains_key("header"));
        assert!(matches!(
            s.update("acme", &a.id.to_string(), None, vec![set("header", "X")]).await,
            Err(CredentialError::Invalid { field, .. }) if field == "settings.query_param"
        ));
        s.delete("acme", a.id).await.unwrap();
        assert!(s.delete("acme", a.id).await.is_err());
        assert_eq!(s.list("acme").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn reseal_moves_every_secret_and_token_to_the_new_key_and_leaves_nothing_to_redo() {
        let dir = std::env::temp_dir().join(format!("sb-credentials-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("test.db"), 64, 5000).unwrap();
        store
            .migrate_component("http", super::super::MIGRATIONS)
            .await
            .unwrap();
        let old_text = SecretBox::generate();
        let old = SecretBox::from_base64(&old_text).unwrap();
        let s = CredentialStore::new(store.clone(), Arc::new(old), Clock::start());
        let c = s
            .create(
                "acme",
                "CRM",
                CredentialType::Basic,
                vec![set("username", "ada"), set("password", "pw-1")],
            )
            .await
            .unwrap();
        s.set_tokens(
            &c,
            Tokens {
                access: "at-1".into(),
                refresh: Some("rt-1".into()),
                expires_at: None,
            },
        )
        .await
        .unwrap();
        let new_text = SecretBox::generate();
        let ring = SecretBox::from_base64(&s.secrets.text_with_new_current(&new_text)).unwrap();
        let ring = Arc::new(ring);
        let run = |ring: Arc<SecretBox>| {
            let (tx_n, rx_n) = tokio::sync::oneshot::channel();
            let write = store.write(move |tx| {
                let _ = tx_n.send(reseal(tx, &ring).unwrap());
                Ok(Written::Done)
            });
            async move {
                write.await.unwrap();
                rx_n.await.unwrap()
            }
        };
        // The password, the access and the refresh token; the user name is not sealed.
        assert_eq!(run(ring.clone()).await, 3);
        assert_eq!(run(ring).await, 0, "nothing left under the old key");
        let new_only = CredentialStore::new(
            store.clone(),
            Arc::new(SecretBox::from_base64(&new_text).unwrap()),
            Clock::start(),
        );
        let again = new_only.find("acme", "CRM").await.unwrap();
        let open = new_only.open(&again).unwrap();
        assert_eq!(
            (
                open["password"].as_str(),
                open["access_token"].as_str(),
                open["refresh_token"].as_str()
            ),
            ("pw-1", "at-1", "rt-1")
        );
        // A value no key of the ring opens: an error naming where, nothing changed.
        let stranger = Arc::new(SecretBox::from_base64(&SecretBox::generate()).unwrap());
        let (tx_e, rx_e) = tokio::sync::oneshot::channel();
        store
            .write(move |tx| {
                let _ = tx_e.send(reseal(tx, &stranger).map_err(|e| e.to_string()));
                Ok(Written::Done)
            })
            .await
            .unwrap();
        let refused = rx_e.await.unwrap().unwrap_err();
        assert!(refused.starts_with("http_credentials "), "{refused}");
    }
}
