//! Opening a data dir: the sled database, its trees, the keys, the mode, file modes.
//!
//! Layout of `<data-dir>` (mode 0700, every file 0600, tightened at each start):
//! * `db/` — the sled database (all records);
//! * `token-hash.key` — 32 random bytes, the BLAKE3 key tokens are hashed with. Kept
//!   outside the database so a copy of the records alone cannot be used to test guessed
//!   tokens.
//! * `secrets.key` — 32 random bytes, the key upstream credentials are sealed with in the
//!   records (see `server_codec.rs`); `secrets.key.previous` exists only during a key
//!   rotation (docs/deploy.md).

use super::records::Mode;
use super::server_codec::{self, Keys};
use super::StoreError;
use canopy_core::{SealingKey, TokenHasher};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) const KEY_FILE: &str = "token-hash.key";
pub(super) const SECRETS_KEY_FILE: &str = "secrets.key";
/// The key being rotated away from: read at start to reseal, then no longer needed.
pub(super) const PREVIOUS_SECRETS_KEY_FILE: &str = "secrets.key.previous";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
pub(super) const META_MODE: &[u8] = b"mode";
pub(super) const META_REVISION: &[u8] = b"revision";
pub(super) const META_INITIALIZED: &[u8] = b"initialized";
pub(super) const META_COMPACTED: &[u8] = b"compacted_through";
/// JSON list of admin user names (for the last-admin rule inside transactions).
pub(super) const META_ADMINS: &[u8] = b"admins";
/// Id of the secrets key every stored spec was last found sealed with: while it matches
/// and no rotation is under way, the start skips the scan for values to reseal.
const META_SEALED_WITH: &[u8] = b"sealed_with";

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
    /// Seals server specs (upstream credentials) in `servers` and `changelog`.
    pub secrets: SealingKey,
}

pub(super) struct Opened {
    pub trees: Trees,
    pub hasher: TokenHasher,
}

pub(super) fn open(data_dir: &Path, mode: Mode) -> Result<Opened, StoreError> {
    create_dir(data_dir)?;
    // Before anything is written into it: a dir made by someone else may be open to all.
    restrict(data_dir, DIR_MODE)?;
    let db_path = data_dir.join("db");
    let db = sled::Config::new()
        .path(&db_path)
        .open()
        .map_err(|e| open_error(&db_path, e))?;
    let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&db_path, e));
    let servers = tree("servers")?;
    let changelog = tree("changelog")?;
    let meta = tree("meta")?;
    let secrets = open_secrets(data_dir, &servers, &changelog, &meta)?;
    db.flush().map_err(|e| open_error(&db_path, e))?;
    let trees = Trees {
        users: tree("users")?,
        clients: tree("clients")?,
        servers,
        tokens: tree("tokens")?,
        meta,
        changelog,
        changelog_at: tree("changelog_at")?,
        identity: tree("identity")?,
        secrets,
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
    restrict_tree(data_dir)?;
    Ok(Opened { trees, hasher })
}

/// Loads (or creates) the secrets key and reseals whatever is not sealed with it: records
/// of versions before sealing, and during a rotation those sealed with the previous key.
fn open_secrets(
    data_dir: &Path,
    servers: &sled::Tree,
    changelog: &sled::Tree,
    meta: &sled::Tree,
) -> Result<SealingKey, StoreError> {
    let key_path = data_dir.join(SECRETS_KEY_FILE);
    let stored = read_key(&key_path)?;
    let raw = stored.unwrap_or_else(SealingKey::generate);
    let key = SealingKey::new(raw);
    let previous_path = data_dir.join(PREVIOUS_SECRETS_KEY_FILE);
    let previous = read_key(&previous_path)?.map(SealingKey::new);
    let keys = Keys {
        current: &key,
        previous: previous.as_ref(),
    };
    let sealed_with = meta.get(META_SEALED_WITH)?;
    if stored.is_some() && previous.is_none() && sealed_with.as_deref() == Some(key.id().as_bytes())
    {
        return Ok(key);
    }
    // Opens every stored spec before writing anything: with a lost key the start stops
    // here and the data dir is left as it was.
    let reseal = server_codec::plan_reseal(servers, changelog, &keys)?;
    if stored.is_none() {
        write_key(&key_path, &raw)?;
    }
    let count = reseal.len();
    reseal.apply()?;
    meta.insert(META_SEALED_WITH, key.id().as_bytes())?;
    if count > 0 {
        tracing::info!(
            values = count,
            key_id = %key.id(),
            "sealed stored upstream credentials with {SECRETS_KEY_FILE}"
        );
    }
    if previous.is_some() {
        tracing::warn!(
            "every stored credential is sealed with the current {SECRETS_KEY_FILE}; \
             {PREVIOUS_SECRETS_KEY_FILE} is no longer needed, delete it"
        );
    }
    Ok(key)
}

/// Sets `path`'s mode, or says why it cannot be done.
fn restrict(path: &Path, mode: u32) -> Result<(), StoreError> {
    // Follows a symlinked data dir (entries inside that are links never get here).
    let current = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if current.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        StoreError::Permissions {
            path: path.to_owned(),
            mode,
            source,
        }
    })
}

/// Directories 0700 and files 0600 throughout the data dir (symlinks are left alone: a
/// mode change would follow them out of the dir).
fn restrict_tree(dir: &Path) -> Result<(), StoreError> {
    restrict(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
        if kind.is_dir() {
            restrict_tree(&path)?;
        } else if kind.is_file() {
            restrict(&path, FILE_MODE)?;
        }
    }
    Ok(())
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

fn read_key(path: &Path) -> Result<Option<[u8; 32]>, StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut buf = Vec::with_capacity(33);
    file.read_to_end(&mut buf).map_err(|e| io_error(path, e))?;
    let key = <[u8; 32]>::try_from(buf.as_slice()).map_err(|_| StoreError::KeyInvalid {
        path: path.to_owned(),
        reason: format!("expected 32 bytes, found {}", buf.len()),
    })?;
    Ok(Some(key))
}

fn create_key(path: &Path) -> Result<[u8; 32], StoreError> {
    let key = TokenHasher::generate_key();
    write_key(path, &key)?;
    Ok(key)
}

fn write_key(path: &Path, key: &[u8; 32]) -> Result<(), StoreError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(key)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}
