//! Typed errors of the store: opening it, and why a mutation was refused.

use super::Mode;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "data dir {path} is in use by another process (is a control plane already running on it?)"
    )]
    Locked { path: PathBuf },
    #[error("data dir {path} is not writable: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {path} is corrupt: {reason} (restore it from a backup or start with an empty --data-dir)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot open data dir {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "data dir {path} was created in {stored} mode; {}",
        mode_hint(*.stored)
    )]
    ModeMismatch {
        path: PathBuf,
        stored: Mode,
        requested: Mode,
    },
    #[error(
        "token hash key {path} is missing but the data dir holds records; restore the file \
         (without it no stored token can be verified) or start with an empty --data-dir"
    )]
    KeyMissing { path: PathBuf },
    #[error("key file {path} is invalid: {reason}")]
    KeyInvalid { path: PathBuf, reason: String },
    #[error(
        "cannot restrict {path} to mode {mode:o} (the data dir holds keys and credentials): \
         {source}"
    )]
    Permissions {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
    #[error(
        "the stored credentials of server '{server}' do not open: {source} (restore \
         secrets.key, and secrets.key.previous during a rotation, from the backup of this \
         data dir)"
    )]
    Sealed {
        server: String,
        source: canopy_core::SealError,
    },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is unreadable: {0}")]
    Decode(String),
    #[error("the store is shut down")]
    Closed,

    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("'{0}' is the last admin and cannot be deleted or made a user; make another user admin first")]
    LastAdmin(String),
    #[error("the server is already initialized")]
    AlreadyInitialized,
    #[error("this access token is already in use; choose another one")]
    TokenInUse,
    #[error("{kind} '{name}' changed meanwhile; try again")]
    Superseded { kind: &'static str, name: String },
    #[error("'{0}' is an admin; admins are not restricted by an allow list (only \"*\" applies)")]
    AdminScope(String),
}

fn mode_hint(stored: Mode) -> &'static str {
    match stored {
        Mode::Enterprise => {
            "start it with --enterprise, or use another --data-dir for development mode"
        }
        Mode::Development => {
            "start it without --enterprise, or use another --data-dir for enterprise mode"
        }
    }
}
