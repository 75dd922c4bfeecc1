//! Retention in the background: `--audit-retention` (age) and `--audit-max-bytes` (size).

use super::AuditStore;
use std::time::Duration;

/// Default of `--audit-retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default of `--audit-max-bytes` (1 GiB of stored events).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// How long and how much the trail keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this go (`None` = kept by size only).
    pub max_age: Option<Duration>,
    /// The oldest events go while more than this many bytes are stored.
    pub max_bytes: u64,
    /// How often both are applied.
    pub period: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(DEFAULT_RETENTION),
            max_bytes: DEFAULT_MAX_BYTES,
            period: Duration::from_secs(60),
        }
    }
}

/// Now, in Unix nanoseconds.
pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Retention {
    /// The oldest time kept at `now` (Unix ns).
    pub fn cutoff(&self, now: i64) -> i64 {
        self.max_age.map_or(i64::MIN, |age| {
            now.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX))
        })
    }

    /// Applies retention once now (blocking work on the blocking pool).
    pub async fn apply(&self, store: &AuditStore) {
        let store = store.clone();
        let cutoff = self.cutoff(now());
        let max_bytes = self.max_bytes;
        match tokio::task::spawn_blocking(move || store.expire(cutoff, max_bytes)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                removed = n,
                "removed audit events past --audit-retention / --audit-max-bytes"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "applying audit retention failed"),
            Err(e) => tracing::warn!(error = %e, "the audit retention task failed"),
        }
    }

    /// Applies retention every `period`, forever (abort the task to stop it).
    pub async fn run(self, store: AuditStore) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.apply(&store).await;
        }
    }
}
