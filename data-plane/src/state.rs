//! The data plane's in-memory state: who may call (token index), what there is to call
//! (catalogue of servers, tools, prompts) and the applied revision.
//!
//! Readers (every `/mcp` request) do one `arc-swap` load of the [`View`] and one
//! concurrent-map lookup of the token hash: no lock a writer holds for long. The single
//! writer (the sync task, or the cache loader at start) applies snapshots by building a
//! new `View` aside and swapping it in, and applies client changes in place in the
//! token index, at a cost proportional to the change.

pub(crate) mod apply;
mod catalog;
mod convert;
mod scope;
#[cfg(test)]
pub(crate) mod tests;
mod tokens;
#[cfg(test)]
pub(crate) use tests as tests_support;

use arc_swap::ArcSwapOption;
use canopy_core::TokenHasher;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::Notify;

pub use apply::SnapshotBuilder;
pub use catalog::{Catalog, Def, Kind, Server};
pub use convert::Mode;
pub use scope::Scope;
pub use tokens::{ClientEntry, PrehashedHasher, TokenIndex};

use crate::identity::Identities;
use crate::metrics::Metrics;
use crate::status::SyncStatus;
use scope::ScopeInterner;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("no full state applied yet; a snapshot must come first")]
    NoState,
    #[error("snapshot chunk out of order: {0}")]
    SnapshotOrder(&'static str),
    #[error("change revision {got} leaves a gap after applied revision {applied}")]
    Gap { applied: u64, got: u64 },
    #[error("change {0} has no kind")]
    EmptyChange(u64),
    #[error("unknown mode {0}")]
    BadMode(i32),
    #[error("token hash key must be 32 bytes, got {0}")]
    BadKey(usize),
    #[error("client '{client}' has a token hash that is not 32 bytes")]
    BadTokenHash { client: String },
    #[error("server '{name}': {reason}")]
    BadServer { name: String, reason: String },
}

/// What the request path reads, swapped as a whole on snapshots and server changes.
pub struct View {
    pub mode: Mode,
    pub hasher: TokenHasher,
    pub catalog: Arc<Catalog>,
    /// Shared between successive views: client changes mutate it in place.
    pub tokens: Arc<TokenIndex>,
}

/// The writer's name → client table: a set of the clients themselves, looked up by the
/// name they hold (8 bytes per slot; a `HashMap<Arc<str>, Arc<ClientEntry>>` took 24).
/// Names are admin-chosen, not attacker-chosen, so a fast non-cryptographic hasher
/// (foldhash, per-process random seed) replaces SipHash, which was ~10% of applying a
/// large snapshot.
#[derive(Default)]
pub(crate) struct ClientMap(HashSet<ByName, foldhash::fast::RandomState>);

/// A client hashed and compared by its name.
struct ByName(Arc<ClientEntry>);

impl std::borrow::Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl std::hash::Hash for ByName {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Must hash exactly as `str` does (lookups are by `&str`).
        (*self.0.name).hash(h)
    }
}

impl ClientMap {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(HashSet::with_capacity_and_hasher(n, Default::default()))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<ClientEntry>> {
        self.0.get(name).map(|c| &c.0)
    }

    /// Inserts or replaces the client of the same name; returns the one replaced.
    pub(crate) fn insert(&mut self, entry: Arc<ClientEntry>) -> Option<Arc<ClientEntry>> {
        self.0.replace(ByName(entry)).map(|c| c.0)
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<ClientEntry>> {
        self.0.take(name).map(|c| c.0)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<ClientEntry>> + '_ {
        self.0.iter().map(|c| &c.0)
    }
}

/// Writer-only bookkeeping: what a change needs to find and what the cache file holds.
pub(crate) struct Writer {
    pub revision: u64,
    pub mode: Mode,
    pub key: [u8; 32],
    pub clients: ClientMap,
    pub scopes: ScopeInterner,
    pub servers: BTreeMap<Arc<str>, Arc<Server>>,
}

pub struct State {
    view: ArcSwapOption<View>,
    writer: Mutex<Option<Writer>>,
    generation: AtomicU64,
    pub(crate) status: SyncStatus,
    pub(crate) metrics: Arc<Metrics>,
    /// Signalled after every applied change, for the debounced cache writer.
    pub(crate) changed: Notify,
    /// Identity providers, access rules and revocations (OAuth access tokens).
    pub identities: Identities,
}

impl State {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            view: ArcSwapOption::empty(),
            writer: Mutex::new(None),
            generation: AtomicU64::new(1),
            status: SyncStatus::default(),
            metrics,
            changed: Notify::new(),
            identities: Identities::default(),
        }
    }

    /// The current view, `None` until a full state is applied.
    #[inline]
    pub fn view(&self) -> Option<arc_swap::Guard<Option<Arc<View>>>> {
        let g = self.view.load();
        g.is_some().then_some(g)
    }

    pub fn load_view(&self) -> Option<Arc<View>> {
        self.view.load_full()
    }

    pub fn status(&self) -> &SyncStatus {
        &self.status
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn has_state(&self) -> bool {
        self.view.load().is_some()
    }

    pub fn applied_revision(&self) -> u64 {
        self.status.applied_revision()
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        // Poisoning would only follow a panic in the writer; its data is still usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}
