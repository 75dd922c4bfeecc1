//! The cache file's sealing key: `<cache-file>.key`, 32 random bytes, mode 0600, created
//! with the first cache write. Losing it only costs the cache (the next write starts a new
//! key and file); the control plane still has everything.

use super::CacheError;
use canopy_core::SealingKey;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(super) fn path_for(cache: &Path) -> PathBuf {
    let mut name = cache.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> CacheError {
    CacheError::Key {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads the key; a key anyone else could have written or read is refused: a symlink, or
/// a file open to group or others (a planted key would let its planter read the cache).
fn read(path: &Path) -> Result<Option<SealingKey>, CacheError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(key_error(path, "is a symbolic link; refusing to use it"))
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_error(path, e)),
    }
    let mut file = std::fs::File::open(path).map_err(|e| key_error(path, e))?;
    let meta = file.metadata().map_err(|e| key_error(path, e))?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return Err(key_error(
            path,
            "must be a regular file with mode 0600; refusing to use it",
        ));
    }
    let mut buf = Vec::with_capacity(33);
    (&mut file)
        .take(33)
        .read_to_end(&mut buf)
        .map_err(|e| key_error(path, e))?;
    let key = <[u8; 32]>::try_from(buf.as_slice())
        .map_err(|_| key_error(path, format!("expected 32 bytes, found {}", buf.len())))?;
    Ok(Some(SealingKey::new(key)))
}

/// The key of an existing cache file.
pub(super) fn load(cache: &Path) -> Result<SealingKey, CacheError> {
    let path = path_for(cache);
    read(&path)?.ok_or_else(|| key_error(&path, "missing (the cache cannot be opened without it)"))
}

/// The key to write the cache with, created if there is none yet.
pub(super) fn load_or_create(cache: &Path) -> Result<SealingKey, CacheError> {
    let path = path_for(cache);
    if let Some(key) = read(&path)? {
        return Ok(key);
    }
    let raw = SealingKey::generate();
    // O_EXCL: never follows a planted symlink, and of two writers only one creates the key.
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            file.write_all(&raw)
                .and_then(|()| file.sync_all())
                .map_err(|e| key_error(&path, e))?;
            Ok(SealingKey::new(raw))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => load(cache),
        Err(e) => Err(key_error(&path, e)),
    }
}
