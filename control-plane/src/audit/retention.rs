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

/// Parses `--audit-max-bytes`: a number of bytes with an optional unit (`500MB`, `1GiB`,
/// `2g`; K/M/G/T are powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 500MB, 1GiB, 1073741824)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("'{s}' is out of range (more than 0, less than 16 EiB)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5PB").is_err());
    }
}
