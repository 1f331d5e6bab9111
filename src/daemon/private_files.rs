//! The files only the daemon's user may read: the store with its `-wal` and `-shm`, the secret
//! key file and the admin token file. The daemon creates them 0600 (SQLite gives `-wal` and
//! `-shm` the mode of the database); one found at start with group or other bits (copied in,
//! restored from a backup, made by an older version) is tightened to 0600 with a warning, and
//! the daemon refuses to start when that fails.

use std::path::{Path, PathBuf};

/// The mode of every private file.
pub const PRIVATE_MODE: u32 = 0o600;

/// A private file the daemon could not make private.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} may be read beyond its owner (mode {mode:04o}) and could not be made 0600: {source}; \
     run `chmod 600 {path}` as its owner"
)]
pub struct ModeError {
    pub path: String,
    pub mode: u32,
    pub source: std::io::Error,
}

/// The store's files: the database, its write-ahead log and its shared-memory index.
pub fn store_files(db: &Path) -> [PathBuf; 3] {
    let beside = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_owned(), beside("-wal"), beside("-shm")]
}

/// Tightens each file of `paths` that exists with group or other permission bits to 0600, with
/// one warning per file; returns the files it tightened. A path that does not exist (yet) or is
/// empty is passed over.
pub fn tighten<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Vec<PathBuf>, ModeError> {
    use std::os::unix::fs::PermissionsExt;
    let mut tightened = Vec::new();
    for path in paths {
        if path.as_os_str().is_empty() {
            continue;
        }
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode() & 0o7777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ModeError {
                    path: path.display().to_string(),
                    mode: 0,
                    source,
                })
            }
        };
        if mode & 0o077 == 0 {
            continue;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_MODE)).map_err(
            |source| ModeError {
                path: path.display().to_string(),
                mode,
                source,
            },
        )?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{mode:04o}"),
            now = "0600",
            "a private file could be read beyond its owner: tightened it to 0600"
        );
        tightened.push(path.to_owned());
    }
    Ok(tightened)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn loose_files_are_tightened_and_private_or_missing_ones_left_alone() {
        let dir = std::env::temp_dir().join(format!("sb-modes-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let [db, wal, shm] = store_files(&dir.join("switchboard.db"));
        assert_eq!(wal, dir.join("switchboard.db-wal"));
        assert_eq!(shm, dir.join("switchboard.db-shm"));
        let key = dir.join("switchboard.key");
        for (p, m) in [(&db, 0o644), (&wal, 0o640), (&key, 0o604), (&shm, 0o600)] {
            std::fs::write(p, "x").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let missing = dir.join("admin.token");
        let all = [&db, &wal, &shm, &key, &missing];
        let tightened = tighten(all.iter().map(|p| p.as_path())).unwrap();
        assert_eq!(tightened, vec![db.clone(), wal.clone(), key.clone()]);
        for p in [&db, &wal, &shm, &key] {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        assert!(!missing.exists());
        assert!(tighten(all.iter().map(|p| p.as_path())).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
