//! The control plane's durable state on sled.
//!
//! * Every mutation ([`Mutation`]) is one multi-tree transaction that writes the entity,
//!   takes the next value of the single global revision counter and appends the change
//!   record under that revision (see `store/mutation.rs`).
//! * A single writer task applies queued mutations in batches and flushes once per batch
//!   (group commit); callers are answered only after the flush, and changes are
//!   published on a broadcast channel in revision order (see `store/writer.rs`).
//! * Reads go straight to sled.
//!
//! Consistency contract for the sync stream: call [`Store::subscribe`] first, then
//! [`Store::changes_since`] (or read a snapshot with [`Store::clients`] /
//! [`Store::servers`] labelled with the [`Store::revision`] read *before* reading them),
//! then apply broadcast records whose revision is above what was already sent. Change
//! records carry full post-change values, so replaying a change over a state that already
//! contains it converges.
//!
//! Not here: token plaintexts (only hashes are stored), upstream credentials in the clear
//! (server specs are sealed, see `store/server_codec.rs`), fetching identity providers' keys
//! (`crate::identity`).

mod changelog;
mod client_codec;
mod error;
mod identity;
mod mutation;
mod open;
mod records;
mod server_codec;
mod writer;

#[cfg(test)]
mod tests;

/// The sync wire form of a client, as live changes and snapshots carry it.
pub use client_codec::wire_state as client_wire_state;
pub use error::StoreError;
pub use identity::{
    Endpoints, IdentityMutation, ProviderRecord, ProviderSpec, Revocation, RuleCondition,
    RuleRecord,
};
pub use mutation::Mutation;
pub use records::{
    AuditPayload, Change, ChangeRecord, ClientRecord, Mode, Principal, Role, ServerRecord,
    ServerSpec, StoredToken, Transport, UserRecord,
};

use canopy_core::{TokenHash, TokenHasher};
use open::{Trees, META_COMPACTED, META_INITIALIZED, META_REVISION};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use writer::{Command, Shared};

/// Default number of change records kept for resuming data planes.
pub const DEFAULT_CHANGELOG_RETAIN: u64 = 100_000;
/// Live changes buffered per subscriber before it is told it lagged.
const BROADCAST_CAPACITY: usize = 16 * 1024;
/// Mutations queued for the writer before callers wait for room.
const QUEUE_CAPACITY: usize = 4 * 1024;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub changelog_retain: u64,
    /// Change records older than this are compacted away too (`None` = by count only).
    pub changelog_max_age: Option<std::time::Duration>,
}

impl StoreOptions {
    pub fn new(data_dir: impl Into<PathBuf>, mode: Mode) -> Self {
        Self {
            data_dir: data_dir.into(),
            mode,
            changelog_retain: DEFAULT_CHANGELOG_RETAIN,
            changelog_max_age: None,
        }
    }
}

/// Handle to the store. Clone is cheap; all clones share one database and writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    trees: Trees,
    hasher: TokenHasher,
    mode: Mode,
    data_dir: PathBuf,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.data_dir)
            .field("mode", &self.inner.mode)
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Decode(e.to_string()))
}

fn read_counter(tree: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
    match tree.get(key)? {
        None => Ok(0),
        Some(raw) => <[u8; 8]>::try_from(raw.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Decode("counter is not 8 bytes".into())),
    }
}

impl Store {
    /// Opens (or creates) the store in `options.data_dir` and starts its writer task.
    /// Must be called inside a tokio runtime.
    pub async fn open(options: StoreOptions) -> Result<Self, StoreError> {
        let dir = options.data_dir.clone();
        let mode = options.mode;
        let opened = tokio::task::spawn_blocking(move || open::open(&dir, mode))
            .await
            .map_err(|e| StoreError::Open {
                path: options.data_dir.clone(),
                reason: e.to_string(),
            })??;
        let trees = opened.trees;
        let shared = Arc::new(Shared {
            published: AtomicU64::new(read_counter(&trees.meta, META_REVISION)?),
            compacted_through: AtomicU64::new(read_counter(&trees.meta, META_COMPACTED)?),
            changes: broadcast::channel(BROADCAST_CAPACITY).0,
            changelog_retain: options.changelog_retain,
            changelog_max_age: options.changelog_max_age,
        });
        let (commands, rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = tokio::spawn(writer::run(trees.clone(), Arc::clone(&shared), rx));
        Ok(Self {
            inner: Arc::new(Inner {
                trees,
                hasher: opened.hasher,
                mode,
                data_dir: options.data_dir,
                shared,
                commands,
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// Applies one mutation; returns its revision once it is durable.
    pub async fn apply(&self, mutation: Mutation) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Apply {
                mutation: Box::new(mutation),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until everything queued before this call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Flush { reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Finishes queued writes, flushes and stops the writer. Later mutations fail with
    /// [`StoreError::Closed`]. The database closes when the last clone is dropped.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Stop).await;
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// The highest revision that is durable and published.
    pub fn revision(&self) -> u64 {
        self.inner.shared.published.load(Ordering::SeqCst)
    }

    /// Live changes, in revision order, from the moment of the call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeRecord>> {
        self.inner.shared.changes.subscribe()
    }

    /// Every change after `after` up to [`Store::revision`]; `None` when the change log
    /// no longer holds them all (compacted) or `after` is ahead of this store — the
    /// caller then needs a snapshot.
    pub fn changes_since(&self, after: u64) -> Result<Option<Vec<ChangeRecord>>, StoreError> {
        self.inner.trees.changes_since(&self.inner.shared, after)
    }

    /// Removes change records, keeping the last `keep_last`. Returns how many went.
    pub fn compact(&self, keep_last: u64) -> Result<u64, StoreError> {
        self.inner.trees.compact(&self.inner.shared, keep_last)
    }

    /// Removes change records written before `cutoff_ms` (Unix ms). Returns how many went.
    pub fn compact_older_than(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        self.inner
            .trees
            .compact_older_than(&self.inner.shared, cutoff_ms)
    }

    /// The sled database, for trees kept apart from the records (the audit trail's).
    pub(crate) fn database(&self) -> &sled::Db {
        &self.inner.trees.db
    }

    pub fn hasher(&self) -> &TokenHasher {
        &self.inner.hasher
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Whether `init-server` ran on this (enterprise) data dir.
    pub fn initialized(&self) -> Result<bool, StoreError> {
        Ok(self.inner.trees.meta.get(META_INITIALIZED)?.is_some())
    }

    /// Every MCP client, streamed (there may be millions).
    pub fn clients(
        &self,
    ) -> impl Iterator<Item = Result<ClientRecord, StoreError>> + Send + 'static {
        self.inner
            .trees
            .clients
            .iter()
            .values()
            .map(|v| client_codec::decode(&v?))
    }

    /// Every MCP client in its sync wire form (an encoded `ClientState`), streamed: what a
    /// snapshot sends, copied out of the stored records without decoding them.
    pub fn client_wire_states(
        &self,
    ) -> impl Iterator<Item = Result<bytes::Bytes, StoreError>> + Send + 'static {
        self.inner.trees.clients.iter().values().map(|v| {
            let v = v?;
            Ok(bytes::Bytes::copy_from_slice(&client_codec::wire(&v)?))
        })
    }

    /// How many MCP clients there are (a full key scan in sled: O(n), no decoding).
    pub fn client_count(&self) -> usize {
        self.inner.trees.clients.len()
    }

    pub fn client(&self, name: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.inner
            .trees
            .clients
            .get(name)?
            .map(|v| client_codec::decode(&v))
            .transpose()
    }

    pub fn servers(&self) -> Result<Vec<ServerRecord>, StoreError> {
        let trees = &self.inner.trees;
        let keys = server_codec::Keys::current(&trees.secrets);
        trees
            .servers
            .iter()
            .values()
            .map(|v| server_codec::decode(&v?, &keys))
            .collect()
    }

    pub fn server(&self, name: &str) -> Result<Option<ServerRecord>, StoreError> {
        let trees = &self.inner.trees;
        let keys = server_codec::Keys::current(&trees.secrets);
        trees
            .servers
            .get(name)?
            .map(|v| server_codec::decode(&v, &keys))
            .transpose()
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner
            .trees
            .users
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner
            .trees
            .users
            .get(name)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Who holds the token with this hash (expiry is checked on the principal's record).
    pub fn principal(&self, hash: &TokenHash) -> Result<Option<Principal>, StoreError> {
        self.inner
            .trees
            .tokens
            .get(hash.0)?
            .map(|v| decode(&v))
            .transpose()
    }
}
