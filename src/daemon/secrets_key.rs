//! Finds the key that seals secret settings: the environment variable named by
//! `store.secret_key_env`, else the key file `store.secret_key_file`, created with a fresh key
//! (mode 0600) when missing.

use std::io::Write;
use std::path::Path;

use crate::natives::component::{Component, Reseal, ResealError};
use crate::store::secrets::{SecretBox, SecretError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{origin}: {source}")]
    Bad { origin: String, source: SecretError },
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The sealing key and its base64 text.
pub fn load(env_name: &str, file: &Path) -> Result<(SecretBox, String), KeyError> {
    if let Ok(text) = std::env::var(env_name) {
        return SecretBox::from_base64(&text)
            .map(|k| (k, text))
            .map_err(|source| KeyError::Bad {
                origin: format!("environment variable {env_name}"),
                source,
            });
    }
    let io = |source| KeyError::Io {
        path: file.display().to_string(),
        source,
    };
    match std::fs::read_to_string(file) {
        Ok(text) => SecretBox::from_base64(&text)
            .map(|k| (k, text))
            .map_err(|source| KeyError::Bad {
                origin: format!("key file {}", file.display()),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretBox::generate();
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(file).map_err(io)?;
            f.write_all(key.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::warn!(path = %file.display(), "no secret key found: generated a new key file; keep it with the database");
            SecretBox::from_base64(&key)
                .map(|k| (k, key))
                .map_err(|source| KeyError::Bad {
                    origin: "generated key".into(),
                    source,
                })
        }
        Err(e) => Err(io(e)),
    }
}

/// What `switchboard rekey` did.
#[derive(Debug)]
pub struct Rekeyed {
    /// The new current key's id.
    pub key_id: String,
    /// Sealed values re-sealed under it.
    pub values: usize,
    /// Ids of the keys still in the file (none with `drop_old`).
    pub kept: Vec<String>,
}

/// Why a rekey did not happen (or did not finish: re-running it is safe).
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(
        "the keys come from the environment variable {0}: rotate them there (a new key on the \
         first line, the old ones after), start the daemon, then run rekey with the key file"
    )]
    FromEnvironment(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("a stored secret does not open with the keyring ({0}); nothing more was changed")]
    Open(String),
    /// Values sealed under an old key remain where rekey cannot re-seal them (a table no
    /// registered native re-seals): dropping the old keys would make them unreadable, so they
    /// stay in the file.
    #[error(
        "values sealed under an old key remain in {0}, which no native re-seals: the new key \
         seals from now on and the old keys are kept (run rekey without --drop-old)"
    )]
    StillSealedUnderOld(String),
}

/// The first `table.column` of the store holding a value sealed under one of `key_ids` (any
/// table: natives keep their own), or `None`. Blocking.
fn sealed_under(
    store: &crate::store::Store,
    key_ids: &[String],
) -> Result<Option<String>, crate::store::StoreError> {
    store.read(|c| {
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for table in tables {
            let columns: Vec<String> = c
                .prepare("SELECT name FROM pragma_table_info(?1)")?
                .query_map([&table], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for column in columns {
                for id in key_ids {
                    let query = format!(
                        "SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE ?1)"
                    );
                    let pattern = format!("%sealed:v2:{id}:%");
                    if c.query_row(&query, [&pattern], |r| r.get::<_, bool>(0))? {
                        return Ok(Some(format!("{table}.{column}")));
                    }
                }
            }
        }
        Ok(None)
    })
}

/// Seals every stored secret under a new key: the key file first gets the new key on top of
/// the old ones (so a crash midway loses nothing: both open), then every sealed value is
/// re-sealed (the daemon's, then each native's own through its [`Component::reseal`], its
/// tables made first if this store never had them), then, with `drop_old`, the old keys leave
/// the file.
pub async fn rekey(
    env_name: &str,
    file: &Path,
    store: &crate::store::Store,
    natives: &[Box<dyn Component>],
    drop_old: bool,
) -> Result<Rekeyed, RekeyError> {
    if std::env::var_os(env_name).is_some() {
        return Err(RekeyError::FromEnvironment(env_name.to_owned()));
    }
    let (old, _) = load(env_name, file)?;
    let new_key = SecretBox::generate();
    let ring_text = old.text_with_new_current(&new_key);
    let ring = SecretBox::from_base64(&ring_text).map_err(|source| KeyError::Bad {
        origin: "the new keyring".into(),
        source,
    })?;
    write_key_file(file, &ring_text)?;
    let reseal = |stored: &mut std::collections::BTreeMap<String, String>,
                  scope: (&str, &str, &str)|
     -> Result<usize, RekeyError> {
        let mut n = 0;
        for (k, v) in stored.iter_mut() {
            if ring.needs_reseal(v) {
                let aad = super::aad(scope.0, scope.1, scope.2, k);
                let plain = ring.open(v, &aad).map_err(|e| {
                    RekeyError::Open(format!("{}/{}/{}/{k}: {e}", scope.0, scope.1, scope.2))
                })?;
                *v = ring.seal(&plain, &aad);
                n += 1;
            }
        }
        Ok(n)
    };
    let mut values = 0;
    for mut row in store.connectors()? {
        let scope = (
            row.account.clone(),
            row.integration.clone(),
            row.connector.clone(),
        );
        let n = reseal(&mut row.settings, (&scope.0, &scope.1, &scope.2))?;
        if n > 0 {
            store.put_connector(row).await?;
            values += n;
        }
    }
    for (account, integration, mut settings) in store.integration_settings()? {
        let n = reseal(&mut settings, (&account, &integration, ""))?;
        if n > 0 {
            store
                .put_integration_settings(account, integration, settings)
                .await?;
            values += n;
        }
    }
    for mut row in store.runner_secrets()? {
        let aad = super::runner_secrets::aad(&row.account, &row.agent, &row.flow);
        let mut n = 0;
        let mut reseal_one = |v: &mut String| -> Result<(), RekeyError> {
            if ring.needs_reseal(v) {
                let plain = ring.open(v, &aad).map_err(|e| {
                    RekeyError::Open(format!(
                        "runner secret {}/{}/{}: {e}",
                        row.account, row.agent, row.flow
                    ))
                })?;
                *v = ring.seal(&plain, &aad);
                n += 1;
            }
            Ok(())
        };
        reseal_one(&mut row.current)?;
        if let Some((previous, _)) = row.previous.as_mut() {
            reseal_one(previous)?;
        }
        if n > 0 {
            store.put_runner_secret(row).await?;
            values += n;
        }
    }
    for (name, value) in store.daemon_keys()? {
        if value != UNKEYED && ring.needs_reseal(&value) {
            let aad = daemon_key_aad(&name);
            let plain = ring
                .open(&value, &aad)
                .map_err(|e| RekeyError::Open(format!("daemon key {name}: {e}")))?;
            store.put_daemon_key(name, ring.seal(&plain, &aad)).await?;
            values += 1;
        }
    }
    let ring = std::sync::Arc::new(ring);
    for native in natives {
        let Some(reseal) = native.reseal() else {
            continue;
        };
        store
            .migrate_component(native.idn(), native.migrations())
            .await?;
        values += reseal_native(store, native.idn(), reseal, ring.clone()).await?;
    }
    store.flush().await?;
    if drop_old {
        let (old_ids, reader) = (
            old.key_ids()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            store.clone(),
        );
        let left = super::start::blocking(move || sealed_under(&reader, &old_ids)).await?;
        if let Some(place) = left {
            return Err(RekeyError::StillSealedUnderOld(place));
        }
    }
    let kept = if drop_old {
        write_key_file(file, &format!("{new_key}\n"))?;
        Vec::new()
    } else {
        old.key_ids().into_iter().map(str::to_owned).collect()
    };
    Ok(Rekeyed {
        key_id: ring.current_id().to_owned(),
        values,
        kept,
    })
}

/// Runs a native's `reseal` in one job of the store's writer, all or nothing (a savepoint:
/// the writer commits jobs in groups).
async fn reseal_native(
    store: &crate::store::Store,
    idn: &'static str,
    reseal: Reseal,
    ring: std::sync::Arc<SecretBox>,
) -> Result<usize, RekeyError> {
    let (tx_out, rx) = tokio::sync::oneshot::channel();
    store
        .write(move |tx| {
            tx.execute_batch("SAVEPOINT native_reseal")?;
            let done = reseal(tx, &ring);
            tx.execute_batch(match done {
                Ok(_) => "RELEASE native_reseal",
                Err(_) => "ROLLBACK TO native_reseal; RELEASE native_reseal",
            })?;
            let _ = tx_out.send(done);
            Ok(crate::store::Written::Done)
        })
        .await?;
    match rx.await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(ResealError::Open { place, source })) => {
            Err(RekeyError::Open(format!("{idn}: {place}: {source}")))
        }
        Ok(Err(ResealError::Sqlite(e))) => Err(RekeyError::Store(e.into())),
        Err(_) => Err(RekeyError::Store(crate::store::StoreError::Closed)),
    }
}

/// Replaces the key file (mode 0600) through a temporary file and a rename.
fn write_key_file(file: &Path, text: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: file.display().to_string(),
        source,
    };
    let tmp = file.with_extension("key.new");
    super::access::write_private(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, file).map_err(io)
}

/// The name of the persona key in the store's `daemon_keys`, and what stands for "unkeyed".
const PERSONA_KEY: &str = "persona_key";
const UNKEYED: &str = "unkeyed";

/// The associated data a daemon key is sealed for.
fn daemon_key_aad(name: &str) -> String {
    format!("daemon/{name}")
}

/// The daemon's persona key, from the store; made on a first start (derived from the sealing
/// key, so replicas sharing that key derive the same persona ids), then kept sealed, so a later
/// `rekey` does not change persona ids. A store that already holds personas from before keys
/// existed stays unkeyed: its stored ids (actors, sessions, timers, flow state) keep meaning
/// the same people.
pub async fn persona_key(
    store: &crate::store::Store,
    secrets: &SecretBox,
) -> Result<crate::domain::PersonaKey, crate::store::StoreError> {
    use crate::domain::PersonaKey;
    use crate::store::StoreError;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let aad = daemon_key_aad(PERSONA_KEY);
    match store.daemon_key(PERSONA_KEY)? {
        Some(v) if v == UNKEYED => Ok(PersonaKey::Unkeyed),
        Some(sealed) => {
            let text = secrets
                .open(&sealed, &aad)
                .map_err(|e| StoreError::Corrupt(format!("the persona key: {e}")))?;
            let bytes: [u8; 16] = b64
                .decode(text)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("the persona key is not 16 bytes".into()))?;
            Ok(PersonaKey::Keyed(bytes))
        }
        None if store.has_personas()? => {
            tracing::warn!(
                "this store holds personas derived before persona keys existed: persona ids stay unkeyed"
            );
            store
                .put_daemon_key(PERSONA_KEY.into(), UNKEYED.into())
                .await?;
            Ok(PersonaKey::Unkeyed)
        }
        None => {
            let mut key = [0u8; 16];
            key.copy_from_slice(&secrets.derive("persona ids")[..16]);
            store
                .put_daemon_key(PERSONA_KEY.into(), secrets.seal(&b64.encode(key), &aad))
                .await?;
            Ok(PersonaKey::Keyed(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_keys_stay_while_a_table_rekey_does_not_know_holds_values_they_sealed() {
        let dir = std::env::temp_dir().join(format!("sb-rekey-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret.key");
        let env = "SB_TEST_REKEY_UNSET_VARIABLE";
        let (old, _) = load(env, &file).unwrap();
        let store = crate::store::Store::open(&dir.join("t.db"), 64, 5000).unwrap();
        // A native's own table with a value sealed under the old key, inside a JSON map.
        let sealed = old.seal("s3cr3t", "a/native/field");
        store
            .write(move |tx| {
                tx.execute_batch("CREATE TABLE native_things (id TEXT, sealed TEXT)")?;
                tx.execute(
                    "INSERT INTO native_things VALUES ('x', ?1)",
                    [format!("{{\"token\":\"{sealed}\"}}")],
                )?;
                Ok(crate::store::Written::Done)
            })
            .await
            .unwrap();
        let refused = rekey(env, &file, &store, &[], true).await.unwrap_err();
        assert!(
            matches!(&refused, RekeyError::StillSealedUnderOld(p) if p == "native_things.sealed"),
            "{refused}"
        );
        // The old key is still in the file: the value opens.
        let (ring, _) = load(env, &file).unwrap();
        let value: String = store
            .read(|c| c.query_row("SELECT sealed FROM native_things", [], |r| r.get(0)))
            .unwrap();
        let inner: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&value).unwrap();
        assert_eq!(
            ring.open(&inner["token"], "a/native/field").unwrap(),
            "s3cr3t"
        );
        // Without that table, the old keys go.
        store
            .write(|tx| {
                tx.execute_batch("DROP TABLE native_things")?;
                Ok(crate::store::Written::Done)
            })
            .await
            .unwrap();
        let done = rekey(env, &file, &store, &[], true).await.unwrap();
        assert!(done.kept.is_empty());
    }

    /// A native keeping one sealed value per row of its own table.
    struct Sealing;

    impl Component for Sealing {
        fn idn(&self) -> &'static str {
            "sealing"
        }

        fn migrations(&self) -> &'static [&'static str] {
            &["CREATE TABLE sealing_things (id TEXT PRIMARY KEY, sealed TEXT NOT NULL)"]
        }

        fn reseal(&self) -> Option<Reseal> {
            Some(|tx, ring| {
                let rows: Vec<(String, String)> = tx
                    .prepare("SELECT id, sealed FROM sealing_things")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut n = 0;
                for (id, sealed) in rows.into_iter().filter(|(_, v)| ring.needs_reseal(v)) {
                    let aad = format!("sealing/{id}");
                    let plain = ring
                        .open(&sealed, &aad)
                        .map_err(|source| ResealError::Open {
                            place: format!("sealing_things {id}"),
                            source,
                        })?;
                    tx.execute(
                        "UPDATE sealing_things SET sealed = ?2 WHERE id = ?1",
                        [&id, &ring.seal(&plain, &aad)],
                    )?;
                    n += 1;
                }
                Ok(n)
            })
        }

        fn build(
            self: Box<Self>,
            _: &crate::natives::component::NativeContext,
        ) -> crate::natives::component::Built {
            unreachable!("rekey builds no native")
        }
    }

    #[tokio::test]
    async fn rekey_reseals_a_native_s_own_values_so_the_old_keys_can_go() {
        let dir = std::env::temp_dir().join(format!("sb-rekey-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret.key");
        let env = "SB_TEST_REKEY_UNSET_VARIABLE";
        let (old, _) = load(env, &file).unwrap();
        let store = crate::store::Store::open(&dir.join("t.db"), 64, 5000).unwrap();
        let natives: Vec<Box<dyn Component>> = vec![Box::new(Sealing)];
        store
            .migrate_component("sealing", natives[0].migrations())
            .await
            .unwrap();
        let sealed = old.seal("s3cr3t", "sealing/x");
        store
            .write(move |tx| {
                tx.execute("INSERT INTO sealing_things VALUES ('x', ?1)", [sealed])?;
                Ok(crate::store::Written::Done)
            })
            .await
            .unwrap();
        let done = rekey(env, &file, &store, &natives, true).await.unwrap();
        assert!(done.kept.is_empty(), "the old key dropped");
        assert_eq!(done.values, 1);
        // The key file holds the new key alone, and it opens the value.
        let (ring, _) = load(env, &file).unwrap();
        assert_eq!(ring.key_ids(), [done.key_id.as_str()]);
        let value: String = store
            .read(|c| c.query_row("SELECT sealed FROM sealing_things", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(ring.open(&value, "sealing/x").unwrap(), "s3cr3t");

        // A value no key opens: rekey stops naming the native and the row, the keys stay.
        let stranger = SecretBox::from_base64(&SecretBox::generate()).unwrap();
        let bad = stranger.seal("x", "sealing/y");
        store
            .write(move |tx| {
                tx.execute("INSERT INTO sealing_things VALUES ('y', ?1)", [bad])?;
                Ok(crate::store::Written::Done)
            })
            .await
            .unwrap();
        let refused = rekey(env, &file, &store, &natives, true).await.unwrap_err();
        assert!(
            matches!(&refused, RekeyError::Open(p) if p.starts_with("sealing: sealing_things y")),
            "{refused}"
        );
        let (ring, _) = load(env, &file).unwrap();
        assert_eq!(ring.key_ids().len(), 2, "the keys stay");
    }
}
