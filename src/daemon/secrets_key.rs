//! Finds the key that seals secret settings: the environment variable named by
//! `store.secret_key_env`, else the key file `store.secret_key_file`, created with a fresh key
//! (mode 0600) when missing.

use std::io::Write;
use std::path::Path;

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
