//! Sync health as `/readyz` and `/metrics` report it: applied revision, readiness and
//! staleness (time since the last contact with the control plane).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub struct SyncStatus {
    applied: AtomicU64,
    ready: AtomicBool,
    connected: AtomicBool,
    /// Unix ms of the last message from (or open stream to) the control plane.
    last_contact_ms: AtomicU64,
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self {
            applied: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            last_contact_ms: AtomicU64::new(now_ms()),
        }
    }
}

impl SyncStatus {
    pub fn applied_revision(&self) -> u64 {
        self.applied.load(Relaxed)
    }

    pub(crate) fn set_applied(&self, rev: u64) {
        self.applied.store(rev, Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
        self.touch();
    }

    pub(crate) fn touch(&self) {
        self.last_contact_ms.store(now_ms(), Relaxed);
    }

    /// Sets the last contact to an earlier moment (the time a cache file was written).
    pub(crate) fn set_last_contact(&self, ms: u64) {
        self.last_contact_ms.store(ms, Relaxed);
    }

    /// Zero while the stream is up: an open stream delivers every change as it happens.
    pub fn staleness(&self) -> Duration {
        if self.connected() {
            return Duration::ZERO;
        }
        Duration::from_millis(now_ms().saturating_sub(self.last_contact_ms.load(Relaxed)))
    }
}
