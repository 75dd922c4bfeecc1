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

    /// Opening a stream is contact, and so is the moment an open stream ends. A failed
    /// attempt to reconnect is not: staleness keeps growing while the control plane is
    /// unreachable (else every retry would reset it and `--max-staleness` would flap).
    pub(crate) fn set_connected(&self, up: bool) {
        let was = self.connected.swap(up, Relaxed);
        if up || was {
            self.touch();
        }
    }

    /// Unix ms of the last contact with the control plane (now while connected).
    pub fn last_contact_ms(&self) -> u64 {
        if self.connected() {
            return now_ms();
        }
        self.last_contact_ms.load(Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reconnects_do_not_reset_staleness() {
        let s = SyncStatus::default();
        s.set_connected(true);
        assert_eq!(s.staleness(), Duration::ZERO);
        s.set_connected(false);
        s.set_last_contact(now_ms() - 60_000);
        // Retries that fail report "still disconnected" again: no contact happened.
        s.set_connected(false);
        assert!(s.staleness() >= Duration::from_secs(59));
        assert!(s.last_contact_ms() <= now_ms() - 59_000);
        s.set_connected(true);
        assert_eq!(s.staleness(), Duration::ZERO);
    }
}
