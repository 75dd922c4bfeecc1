//! Opening a data dir: the sled database, its trees, the token-hash key and the mode.
//!
//! Layout of `<data-dir>`:
//! * `db/` — the sled database (all records);
//! * `token-hash.key` — 32 random bytes (mode 0600), the BLAKE3 key tokens are hashed
//!   with. Kept outside the database so a copy of the records alone cannot be used to
//!   test guessed tokens.

use super::records::Mode;
use super::StoreError;
use canopy_core::TokenHasher;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub(super) const KEY_FILE: &str = "token-hash.key";
pub(super) const META_MODE: &[u8] = b"mode";
pub(super) const META_REVISION: &[u8] = b"revision";
pub(super) const META_INITIALIZED: &[u8] = b"initialized";
pub(super) const META_COMPACTED: &[u8] = b"compacted_through";
/// JSON list of admin user names (for the last-admin rule inside transactions).
pub(super) const META_ADMINS: &[u8] = b"admins";

/// The trees of one store. Cloning is cheap (sled trees are reference counted).
#[derive(Clone)]
pub(super) struct Trees {
    pub db: sled::Db,
    pub users: sled::Tree,
    pub clients: sled::Tree,
    pub servers: sled::Tree,
    /// Token hash → principal (JSON).
    pub tokens: sled::Tree,
    /// Revision counter, mode, initialized flag, compaction mark.
    pub meta: sled::Tree,
    /// Big-endian revision → change (JSON).
    pub changelog: sled::Tree,
    /// Big-endian revision → Unix ms it was written (big-endian u64), for compaction by
    /// age. Written in the same transaction as the change record.
    pub changelog_at: sled::Tree,
    /// Identity providers, access rules, revoked subjects (see `store/identity.rs`).
    pub identity: sled::Tree,
}

pub(super) struct Opened {
    pub trees: Trees,
    pub hasher: TokenHasher,
}

pub(super) fn open(data_dir: &Path, mode: Mode) -> Result<Opened, StoreError> {
    create_dir(data_dir)?;
    let db_path = data_dir.join("db");
    let db = sled::Config::new()
        .path(&db_path)
        .open()
        .map_err(|e| open_error(&db_path, e))?;
    let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&db_path, e));
    let trees = Trees {
        users: tree("users")?,
        clients: tree("clients")?,
        servers: tree("servers")?,
        tokens: tree("tokens")?,
        meta: tree("meta")?,
        changelog: tree("changelog")?,
        changelog_at: tree("changelog_at")?,
        identity: tree("identity")?,
        db: db.clone(),
    };

    let stored = trees
        .meta
        .get(META_MODE)
        .map_err(|e| open_error(&db_path, e))?;
    let key_path = data_dir.join(KEY_FILE);
    let hasher = match stored {
        Some(raw) => {
            let stored = Mode::parse(&raw).ok_or_else(|| StoreError::Corrupt {
                path: db_path.clone(),
                reason: "unknown mode marker".into(),
            })?;
            if stored != mode {
                return Err(StoreError::ModeMismatch {
                    path: data_dir.to_owned(),
                    stored,
                    requested: mode,
                });
            }
            match read_key(&key_path)? {
                Some(key) => TokenHasher::new(key),
                None => return Err(StoreError::KeyMissing { path: key_path }),
            }
        }
        None => {
            // Fresh data dir. The key is created before the mode marker, so a crash in
            // between leaves a dir that is still "fresh" and reuses the key next time.
            let key = match read_key(&key_path)? {
                Some(key) => key,
                None => create_key(&key_path)?,
            };
            trees
                .meta
                .insert(META_MODE, mode.as_str())
                .map_err(|e| open_error(&db_path, e))?;
            db.flush().map_err(|e| open_error(&db_path, e))?;
            TokenHasher::new(key)
        }
    };
    Ok(Opened { trees, hasher })
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(source) => Err(io_error(dir, source)),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    match source.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => StoreError::Unwritable {
            path: path.to_owned(),
            source,
        },
        _ => StoreError::Open {
            path: path.to_owned(),
            reason: source.to_string(),
        },
    }
}

/// Turns sled's open errors into ones that say what to do.
fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        // sled reports a held file lock only through this message.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                path: path.parent().unwrap_or(path).to_owned(),
            }
        }
        sled::Error::Io(io) => io_error(path, io),
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        sled::Error::Unsupported(reason) => StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        },
        other => StoreError::Open {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn read_key(path: &PathBuf) -> Result<Option<[u8; 32]>, StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut buf = Vec::with_capacity(33);
    file.read_to_end(&mut buf).map_err(|e| io_error(path, e))?;
    let key = <[u8; 32]>::try_from(buf.as_slice()).map_err(|_| StoreError::KeyInvalid {
        path: path.clone(),
        reason: format!("expected 32 bytes, found {}", buf.len()),
    })?;
    Ok(Some(key))
}

fn create_key(path: &PathBuf) -> Result<[u8; 32], StoreError> {
    let key = TokenHasher::generate_key();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(&key)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))?;
    Ok(key)
}
