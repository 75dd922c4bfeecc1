//! The data planes this control plane knows, and waiting for them to apply a revision.
//!
//! The sync service records every hello and ack here; revoking commands wait here until
//! every *connected* data plane has acknowledged their revision, or a deadline passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// What `list data-planes` shows about one data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneStatus {
    pub node_id: String,
    pub address: String,
    pub applied_revision: u64,
    /// Unix milliseconds of the last message from it.
    pub last_seen_ms: u64,
    pub connected: bool,
}

/// The outcome of waiting for a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitReport {
    pub revision: u64,
    pub confirmed: u32,
    pub expected: u32,
    /// Connected data planes that had not applied the revision when the wait ended.
    pub pending: Vec<String>,
    pub elapsed: Duration,
}

#[derive(Debug)]
struct Entry {
    status: DataPlaneStatus,
    /// Distinguishes a reconnected data plane's stream from its previous one.
    connection: u64,
}

/// Shared registry of data planes. Cheap to clone via `Arc`.
#[derive(Debug)]
pub struct Fleet {
    entries: Mutex<HashMap<String, Entry>>,
    next_connection: std::sync::atomic::AtomicU64,
    // Bumped on every ack/connect/disconnect so waiters re-check without polling.
    changed: watch::Sender<u64>,
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            next_connection: std::sync::atomic::AtomicU64::new(1),
            changed: watch::channel(0).0,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Returned by [`Fleet::connect`]; marks the data plane disconnected when dropped.
#[derive(Debug)]
pub struct Connection {
    fleet: Arc<Fleet>,
    node_id: String,
    connection: u64,
}

impl Connection {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The data plane applied `revision`.
    pub fn ack(&self, revision: u64) {
        self.fleet.update(&self.node_id, self.connection, |s| {
            s.applied_revision = s.applied_revision.max(revision);
        });
    }

    /// Any message from the data plane (keeps `last_seen` fresh).
    pub fn touch(&self) {
        self.fleet.update(&self.node_id, self.connection, |_| {});
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.fleet
            .update(&self.node_id, self.connection, |s| s.connected = false);
    }
}

impl Fleet {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn update(&self, node_id: &str, connection: u64, f: impl FnOnce(&mut DataPlaneStatus)) {
        {
            let mut map = self.lock();
            match map.get_mut(node_id) {
                // A stale stream of a reconnected data plane must not overwrite the new one.
                Some(e) if e.connection == connection => {
                    f(&mut e.status);
                    e.status.last_seen_ms = now_ms();
                }
                _ => return,
            }
        }
        self.notify();
    }

    /// Registers a data plane that said hello holding `revision`.
    pub fn connect(self: &Arc<Self>, node_id: &str, address: &str, revision: u64) -> Connection {
        let connection = self
            .next_connection
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(
            node_id.to_owned(),
            Entry {
                status: DataPlaneStatus {
                    node_id: node_id.to_owned(),
                    address: address.to_owned(),
                    applied_revision: revision,
                    last_seen_ms: now_ms(),
                    connected: true,
                },
                connection,
            },
        );
        self.notify();
        Connection {
            fleet: Arc::clone(self),
            node_id: node_id.to_owned(),
            connection,
        }
    }

    /// Every data plane seen since this control plane started, sorted by id.
    pub fn list(&self) -> Vec<DataPlaneStatus> {
        let mut v: Vec<_> = self.lock().values().map(|e| e.status.clone()).collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    fn tally(&self, revision: u64) -> (u32, u32, Vec<String>) {
        let map = self.lock();
        let mut confirmed = 0;
        let mut expected = 0;
        let mut pending = Vec::new();
        for e in map.values().filter(|e| e.status.connected) {
            expected += 1;
            if e.status.applied_revision >= revision {
                confirmed += 1;
            } else {
                pending.push(e.status.node_id.clone());
            }
        }
        pending.sort();
        (confirmed, expected, pending)
    }

    /// Waits until every connected data plane applied `revision`, or `timeout` passes.
    /// A data plane that disconnects while we wait stops being expected (it will resync
    /// from its revision when it comes back, and cannot serve the old state meanwhile
    /// without the control plane seeing it as behind).
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> WaitReport {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let (confirmed, expected, pending) = self.tally(revision);
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                return WaitReport {
                    revision,
                    confirmed,
                    expected,
                    pending,
                    elapsed: start.elapsed(),
                };
            }
            // Woken by an ack/connect/disconnect or by the deadline; both re-check above.
            // (`changed` cannot fail: the sender lives as long as `self`.)
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_data_planes_confirms_immediately() {
        let fleet = Fleet::new();
        let r = fleet.wait_for(5, Duration::from_secs(5)).await;
        assert_eq!((r.confirmed, r.expected), (0, 0));
        assert!(r.pending.is_empty());
    }

    #[tokio::test]
    async fn waits_for_every_connected_data_plane() {
        let fleet = Fleet::new();
        let a = fleet.connect("a", "127.0.0.1:1", 3);
        let b = fleet.connect("b", "127.0.0.1:2", 3);
        let waiter = {
            let fleet = Arc::clone(&fleet);
            tokio::spawn(async move { fleet.wait_for(4, Duration::from_secs(30)).await })
        };
        a.ack(4);
        b.ack(4);
        let r = waiter.await.expect("waiter task");
        assert_eq!((r.confirmed, r.expected), (2, 2));
    }

    #[tokio::test]
    async fn reports_pending_on_deadline() {
        let fleet = Fleet::new();
        let a = fleet.connect("a", "x", 1);
        let _b = fleet.connect("b", "y", 1);
        a.ack(2);
        let r = fleet.wait_for(2, Duration::from_millis(1)).await;
        assert_eq!((r.confirmed, r.expected), (1, 2));
        assert_eq!(r.pending, vec!["b".to_string()]);
    }

    #[tokio::test]
    async fn disconnect_and_stale_connection() {
        let fleet = Fleet::new();
        let old = fleet.connect("a", "x", 1);
        let new = fleet.connect("a", "x", 1);
        drop(old); // the stale stream ending must not mark the new one disconnected
        assert!(fleet.list()[0].connected);
        new.ack(7);
        assert_eq!(fleet.list()[0].applied_revision, 7);
        drop(new);
        assert!(!fleet.list()[0].connected);
        let r = fleet.wait_for(9, Duration::from_secs(5)).await;
        assert_eq!(r.expected, 0);
    }
}
