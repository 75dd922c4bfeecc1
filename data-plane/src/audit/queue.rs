//! The handle the request path holds: a bounded queue it never waits on, the counters
//! `/metrics` shows, and the fail-closed switch.

use canopy_proto::v1 as pb;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events held in memory between the request path and the shipper.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
/// Longest argument or result text kept with `AUDIT_PAYLOAD_FULL`.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// At most one "dropping audit events" warning per this interval.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the audit trail of one data plane is configured with.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The node id events carry (`data_plane`).
    pub node_id: String,
    pub queue_capacity: usize,
    /// `--audit-max-payload-bytes`.
    pub max_payload_bytes: usize,
    /// `--audit-required`: answer 503 while events cannot be kept.
    pub required: bool,
}

impl AuditSettings {
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            required: false,
        }
    }
}

/// Shared by every request and the shipper.
pub struct Audit {
    pub(super) settings: AuditSettings,
    tx: mpsc::Sender<pb::AuditEvent>,
    /// Set when an event could not be kept; cleared by the shipper once there is room
    /// again. Read by every request only when `--audit-required` is set.
    blocked: AtomicBool,
    dropped: AtomicU64,
    // The gap not yet reported in the trail: count and time span of dropped events.
    gap_dropped: AtomicU64,
    gap_from: AtomicI64,
    gap_to: AtomicI64,
    last_warn: std::sync::Mutex<Option<Instant>>,
    pub(super) shipped: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) spooled: AtomicU64,
    pub(super) spool_bytes: AtomicU64,
    pub(super) connected: AtomicBool,
    /// Where the per-principal and per-tool series go (the data plane's metrics).
    pub(super) metrics: std::sync::OnceLock<std::sync::Arc<crate::metrics::Metrics>>,
}

/// A dropped-events report taken for a `GapEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gap {
    pub dropped: u64,
    pub from_unix_nanos: i64,
    pub to_unix_nanos: i64,
}

impl Audit {
    /// The handle and the receiving end the shipper drains.
    pub fn new(settings: AuditSettings) -> (std::sync::Arc<Self>, mpsc::Receiver<pb::AuditEvent>) {
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let audit = Self {
            settings,
            tx,
            blocked: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            gap_dropped: AtomicU64::new(0),
            gap_from: AtomicI64::new(i64::MAX),
            gap_to: AtomicI64::new(i64::MIN),
            last_warn: std::sync::Mutex::new(None),
            shipped: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            metrics: std::sync::OnceLock::new(),
        };
        (std::sync::Arc::new(audit), rx)
    }

    /// Records the per-principal and per-tool series into `metrics` (once; later calls
    /// are ignored).
    pub fn attach_metrics(&self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// Hands `event` to the shipper without waiting (and without waking it: it polls the
    /// queue); a full queue drops it (counted).
    pub(crate) fn submit(&self, event: pb::AuditEvent) {
        let time = event.time_unix_nanos;
        if self.tx.try_send(event).is_err() {
            self.dropped_events(1, time, time, "the in-memory audit queue is full");
        }
    }

    /// `--audit-required` and events are being lost: the request must be refused.
    #[inline]
    pub(crate) fn refusing(&self) -> bool {
        self.settings.required && self.blocked.load(Relaxed)
    }

    /// Counts events that could not be kept, for the metric and the next `GapEvent`.
    pub(super) fn dropped_events(&self, n: u64, from: i64, to: i64, why: &str) {
        self.dropped.fetch_add(n, Relaxed);
        self.gap_dropped.fetch_add(n, Relaxed);
        self.gap_from.fetch_min(from, Relaxed);
        self.gap_to.fetch_max(to, Relaxed);
        self.blocked.store(true, Relaxed);
        // Rate-limited: under overload this runs per request.
        let Ok(mut last) = self.last_warn.try_lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= DROP_WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped_total = self.dropped.load(Relaxed),
                reason = why,
                required = self.settings.required,
                "dropping audit events"
            );
        }
    }

    /// Events can be kept again (the shipper found room).
    pub(super) fn unblock(&self) {
        if self.blocked.swap(false, Relaxed) {
            tracing::info!("audit events are kept again");
        }
    }

    pub(super) fn is_blocked(&self) -> bool {
        self.blocked.load(Relaxed)
    }

    /// Takes the dropped events not yet reported (`None` when there are none).
    pub(super) fn take_gap(&self) -> Option<Gap> {
        let dropped = self.gap_dropped.swap(0, Relaxed);
        if dropped == 0 {
            return None;
        }
        // A drop racing with this swap lands in the next gap; its span may widen this one.
        Some(Gap {
            dropped,
            from_unix_nanos: self.gap_from.swap(i64::MAX, Relaxed),
            to_unix_nanos: self.gap_to.swap(i64::MIN, Relaxed),
        })
    }

    /// Puts back a gap that could not be delivered, for the next gap event.
    pub(super) fn restore_gap(&self, gap: Gap) {
        self.gap_dropped.fetch_add(gap.dropped, Relaxed);
        self.gap_from.fetch_min(gap.from_unix_nanos, Relaxed);
        self.gap_to.fetch_max(gap.to_unix_nanos, Relaxed);
    }

    /// Events waiting in the in-memory queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    pub fn shipped_total(&self) -> u64 {
        self.shipped.load(Relaxed)
    }

    /// Appends the audit metrics to a Prometheus text page.
    pub fn render_metrics(&self, o: &mut String) {
        use crate::metrics::{counter, gauge};
        gauge(
            o,
            "canopy_audit_queue_depth",
            "Audit events waiting in the in-memory queue.",
            self.queue_depth() as f64,
        );
        gauge(
            o,
            "canopy_audit_spool_bytes",
            "Bytes of audit events in the spool file, waiting for the control plane.",
            self.spool_bytes.load(Relaxed) as f64,
        );
        counter(
            o,
            "canopy_audit_events_shipped_total",
            "Audit events the control plane acknowledged (stored or already stored).",
            &self.shipped,
        );
        counter(
            o,
            "canopy_audit_events_duplicate_total",
            "Acknowledged audit events the control plane already had (re-sent after a reconnect).",
            &self.duplicates,
        );
        counter(
            o,
            "canopy_audit_events_spooled_total",
            "Audit events written to the spool file.",
            &self.spooled,
        );
        counter(
            o,
            "canopy_audit_events_dropped_total",
            "Audit events lost because the queue or the spool was full (reported as gap events).",
            &self.dropped,
        );
        gauge(
            o,
            "canopy_audit_connected",
            "1 while the audit stream to the control plane is up.",
            if self.connected.load(Relaxed) {
                1.0
            } else {
                0.0
            },
        );
        gauge(
            o,
            "canopy_audit_refusing",
            "1 while --audit-required refuses requests because events cannot be kept.",
            if self.refusing() { 1.0 } else { 0.0 },
        );
    }
}
