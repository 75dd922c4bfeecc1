//! The clients of a snapshot, read once from the store and kept encoded in memory.
//!
//! Reading a million clients out of sled costs the control plane about a second of CPU; a
//! fleet that scales out, or restarts data planes without cache files, would pay it once
//! per data plane. Instead one reader fills this cache (at start, and again when it is too
//! old), and every data plane that needs a snapshot gets the cached clients at revision R
//! followed by the change records after R. That is exactly a snapshot at R followed by live
//! changes, so the data plane cannot tell the difference (re-applying a change is
//! idempotent: each carries the entity's full value).
//!
//! One reader at a time: data planes that need a snapshot while the cache is being filled
//! wait for it instead of reading the store in parallel (after a control-plane start, a
//! whole fleet may ask at once). The reader is a task of its own, so a slow or stalled data
//! plane never holds up the others.
//!
//! The cache is refilled when the change log no longer reaches back to R (compacted) or the
//! changes since R outgrow [`max_backlog`] — replaying many changes would cost more than
//! reading the store again. It holds about the encoded size of every client (~100 bytes
//! each; ~100 MB at a million clients).

use super::End;
use crate::store::{ChangeRecord, Store, StoreError};
use bytes::Bytes;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The client part of one snapshot, chunk by chunk, as `SnapshotChunk.encoded_clients`.
pub struct CachedClients {
    /// The store's revision read before the clients were (the snapshot's revision).
    pub revision: u64,
    pub chunks: Vec<Vec<Bytes>>,
}

impl CachedClients {
    pub fn total(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }
}

/// Cached clients at revision R and the change records after R.
pub type Current = (Arc<CachedClients>, Vec<ChangeRecord>);

#[derive(Default)]
pub struct SnapshotCache {
    last: Mutex<Option<Arc<CachedClients>>>,
    /// Held by whoever reads the store into the cache.
    reading: tokio::sync::Mutex<()>,
}

/// Attempts at a usable cache before giving up (only a change log compacted faster than
/// the store can be read exhausts them).
const ATTEMPTS: usize = 3;

impl SnapshotCache {
    /// Cached clients at some revision R ≥ `at_least` and the changes after R: refilled from
    /// the store first when there is no cache or it is too old. `at_least` is what the data
    /// plane was already sent: a snapshot older than that would briefly take back changes it
    /// applied (a revoked token working again until the backlog caught up).
    pub async fn current(
        self: &Arc<Self>,
        store: &Arc<Store>,
        chunk_clients: usize,
        at_least: u64,
    ) -> Result<Current, End> {
        for _ in 0..ATTEMPTS {
            if let Some(usable) = self.usable(store, at_least, false)? {
                return Ok(usable);
            }
            let _reading = self.reading.lock().await;
            // Filled while this one waited?
            if let Some(usable) = self.usable(store, at_least, false)? {
                return Ok(usable);
            }
            self.fill(store, chunk_clients).await?;
            // A fresh fill is used whatever its backlog (writes may be heavy).
            if let Some(usable) = self.usable(store, at_least, true)? {
                return Ok(usable);
            }
        }
        Err(End::Internal(
            "the change log was compacted faster than a snapshot could be read; \
             raise --changelog-retain"
                .into(),
        ))
    }

    /// Fills the cache in the background (at start, so the first data planes need not wait
    /// for the store).
    pub fn prefill(self: &Arc<Self>, store: &Arc<Store>, chunk_clients: usize) {
        let (cache, store) = (Arc::clone(self), Arc::clone(store));
        tokio::spawn(async move {
            if let Err(e) = cache.current(&store, chunk_clients, 0).await {
                tracing::warn!(error = %e.describe(), "could not prepare the snapshot cache; data planes will wait for it when they need a snapshot");
            }
        });
    }

    fn get(&self) -> Option<Arc<CachedClients>> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn put(&self, clients: CachedClients) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.as_ref().is_none_or(|l| l.revision <= clients.revision) {
            *last = Some(Arc::new(clients));
        }
    }

    fn usable(
        &self,
        store: &Store,
        at_least: u64,
        any_backlog: bool,
    ) -> Result<Option<Current>, StoreError> {
        let Some(cached) = self.get().filter(|c| c.revision >= at_least) else {
            return Ok(None);
        };
        Ok(match store.changes_since(cached.revision)? {
            Some(backlog) if any_backlog || backlog.len() <= max_backlog(cached.total()) => {
                Some((cached, backlog))
            }
            _ => None,
        })
    }

    /// Reads every client from the store into the cache, in a task of its own: it finishes
    /// (and the cache keeps its work) even if the data plane that asked goes away.
    async fn fill(self: &Arc<Self>, store: &Arc<Store>, chunk_clients: usize) -> Result<(), End> {
        let (cache, store) = (Arc::clone(self), Arc::clone(store));
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let reader = Arc::clone(&store);
            let read = tokio::task::spawn_blocking(move || read_all(&reader, chunk_clients));
            let clients = match read.await {
                Ok(result) => result?,
                Err(e) => return Err(End::Internal(format!("snapshot reader failed: {e}"))),
            };
            // The records read may include changes the writer applied but has not flushed
            // yet: make them durable before any data plane can hold them.
            store.flush().await?;
            tracing::info!(
                revision = clients.revision,
                clients = clients.total(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot cache filled from the store"
            );
            cache.put(clients);
            Ok(())
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(End::Internal(format!("snapshot reader failed: {e}"))),
        }
    }
}

/// Every client's wire form, in chunks of `chunk_clients` (sled iteration is synchronous:
/// run it on a blocking thread).
fn read_all(store: &Store, chunk_clients: usize) -> Result<CachedClients, StoreError> {
    // Read before the records: anything newer the records show is replayed after.
    let revision = store.revision();
    let mut chunks = Vec::new();
    super::in_chunks(store.client_wire_states(), chunk_clients, |chunk| {
        chunks.push(chunk);
        true
    })?;
    Ok(CachedClients { revision, chunks })
}

/// How many changes after a cached snapshot are still worth replaying instead of reading
/// the store again: a sixteenth of the clients, at least 1,024.
pub fn max_backlog(cached_clients: u64) -> usize {
    usize::try_from(cached_clients / 16)
        .unwrap_or(usize::MAX)
        .max(1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use crate::store::{Mode, Mutation, StoreOptions};
    use canopy_core::TokenHash;

    async fn store_with(dir: &std::path::Path, n: u8) -> Arc<Store> {
        let store = Arc::new(
            Store::open(StoreOptions::new(dir, Mode::Enterprise))
                .await
                .unwrap(),
        );
        for i in 0..n {
            store
                .apply(Mutation::CreateClient {
                    name: format!("c{i:03}"),
                    description: String::new(),
                    allowed: vec![],
                    token: TokenHash([i; 32]),
                })
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn fills_once_then_serves_memory_plus_the_changes_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 10).await;
        let cache = Arc::new(SnapshotCache::default());
        let (first, backlog) = cache.current(&store, 4, 0).await.unwrap();
        assert_eq!((first.revision, first.total()), (10, 10));
        assert_eq!(
            first.chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert!(backlog.is_empty());

        store
            .apply(Mutation::DeleteClient {
                name: "c001".into(),
            })
            .await
            .unwrap();
        let (again, backlog) = cache.current(&store, 4, 0).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "not read again");
        assert_eq!(backlog.iter().map(|c| c.revision).collect::<Vec<_>>(), [11]);
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 20).await;
        let cache = Arc::new(SnapshotCache::default());
        let askers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, store) = (Arc::clone(&cache), Arc::clone(&store));
                tokio::spawn(async move { cache.current(&store, 8, 0).await.unwrap().0 })
            })
            .collect();
        let mut got = Vec::new();
        for a in askers {
            got.push(a.await.unwrap());
        }
        assert!(
            got.iter().all(|c| Arc::ptr_eq(c, &got[0])),
            "one fill for all"
        );
    }

    /// Three clients, the cache filled at revision 3, then `c000` deleted (revision 4).
    async fn filled_then_changed(
        dir: &std::path::Path,
    ) -> (Arc<Store>, Arc<SnapshotCache>, Arc<CachedClients>) {
        let store = store_with(dir, 3).await;
        let cache = Arc::new(SnapshotCache::default());
        let (first, _) = cache.current(&store, 8, 0).await.unwrap();
        store
            .apply(Mutation::DeleteClient {
                name: "c000".into(),
            })
            .await
            .unwrap();
        (store, cache, first)
    }

    #[tokio::test]
    async fn never_older_than_what_the_data_plane_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache, first) = filled_then_changed(dir.path()).await;
        // A data plane that already got revision 4 live must not get the snapshot at 3.
        let (newer, backlog) = cache.current(&store, 8, 4).await.unwrap();
        assert_eq!((first.revision, newer.revision), (3, 4));
        assert_eq!(newer.total(), 2);
        assert!(backlog.is_empty());
    }

    #[tokio::test]
    async fn refills_when_the_log_no_longer_reaches_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, cache, first) = filled_then_changed(dir.path()).await;
        store.compact(0).unwrap();
        let (second, backlog) = cache.current(&store, 8, 0).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!((second.revision, second.total()), (4, 2));
        assert!(backlog.is_empty());
    }

    #[test]
    fn keeps_the_newest_fill() {
        let c = SnapshotCache::default();
        let at = |revision| CachedClients {
            revision,
            chunks: vec![],
        };
        c.put(at(5));
        c.put(at(3)); // a slower reader that started earlier finishes later
        assert_eq!(c.get().map(|c| c.revision), Some(5));
        c.put(at(9));
        assert_eq!(c.get().map(|c| c.revision), Some(9));
    }

    #[test]
    fn backlog_limit_scales_with_the_clients() {
        assert_eq!(max_backlog(0), 1024);
        assert_eq!(max_backlog(1_000_000), 62_500);
    }
}
