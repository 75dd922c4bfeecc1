//! Prometheus metrics: atomics on the hot path, text formatted only at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::status::SyncStatus;

mod family;
pub use family::{Family, DEFAULT_CAP, OTHER};

/// The `outcome` label of the per-principal and per-tool families, in the order of
/// `AuditOutcome` (1..=5).
pub const OUTCOMES: [&str; 5] = ["ok", "tool_error", "error", "denied", "limited"];

/// The `method` label: a closed set, so the counters are a fixed array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLabel {
    Initialize,
    Ping,
    Discover,
    ToolsList,
    ToolsCall,
    PromptsList,
    PromptsGet,
    Notification,
    Other,
}

impl MethodLabel {
    const ALL: [MethodLabel; 9] = [
        MethodLabel::Initialize,
        MethodLabel::Ping,
        MethodLabel::Discover,
        MethodLabel::ToolsList,
        MethodLabel::ToolsCall,
        MethodLabel::PromptsList,
        MethodLabel::PromptsGet,
        MethodLabel::Notification,
        MethodLabel::Other,
    ];

    pub fn of(method: &str) -> Self {
        match method {
            "initialize" => Self::Initialize,
            "ping" => Self::Ping,
            "server/discover" => Self::Discover,
            "tools/list" => Self::ToolsList,
            "tools/call" => Self::ToolsCall,
            "prompts/list" => Self::PromptsList,
            "prompts/get" => Self::PromptsGet,
            m if m.starts_with("notifications/") => Self::Notification,
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Ping => "ping",
            Self::Discover => "server/discover",
            Self::ToolsList => "tools/list",
            Self::ToolsCall => "tools/call",
            Self::PromptsList => "prompts/list",
            Self::PromptsGet => "prompts/get",
            Self::Notification => "notification",
            Self::Other => "other",
        }
    }
}

const STATUSES: [u16; 13] = [
    200, 202, 400, 401, 403, 404, 405, 406, 413, 415, 500, 503, 0,
];
const N_METHODS: usize = MethodLabel::ALL.len();
const N_STATUSES: usize = STATUSES.len();

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(N_STATUSES - 1)
}

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000, 30_000_000,
];

#[derive(Default)]
pub struct UpstreamMetrics {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    errors: AtomicU64,
}

impl UpstreamMetrics {
    pub fn observe(&self, elapsed: Duration, failed: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        if failed {
            self.errors.fetch_add(1, Relaxed);
        }
    }
}

pub struct Metrics {
    requests: [[AtomicU64; N_STATUSES]; N_METHODS],
    /// Per MCP client (or `idp:subject`, or `anonymous`); recorded with the audit trail on.
    pub principals: Family,
    /// Per tool called (server, name the client used); recorded with the audit trail on.
    pub tools: Family,
    pub auth_failures: AtomicU64,
    pub snapshots: AtomicU64,
    pub resumes: AtomicU64,
    /// Touched when servers change and at scrape time only; the request path holds
    /// the server's `Arc<UpstreamMetrics>` from the catalogue.
    upstreams: Mutex<BTreeMap<Arc<str>, Arc<UpstreamMetrics>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            principals: Family::new(
                "canopy_principal_requests",
                "MCP requests by principal (MCP client, identity-provider:subject, or anonymous) and outcome; past 1000 principals the rest count as \"other\".",
                &["principal"],
                DEFAULT_CAP,
            ),
            tools: Family::new(
                "canopy_tool_calls",
                "tools/call requests by server, tool (the name the client used) and outcome; past 1000 tools the rest count as \"other\".",
                &["server", "tool"],
                DEFAULT_CAP,
            ),
            auth_failures: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            upstreams: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, method: MethodLabel, status: u16) {
        self.requests[method as usize][status_index(status)].fetch_add(1, Relaxed);
    }

    pub fn request_count(&self, method: MethodLabel, status: u16) -> u64 {
        self.requests[method as usize][status_index(status)].load(Relaxed)
    }

    /// The histogram of `server`, kept across re-registrations of the same name.
    pub fn upstream(&self, server: &str) -> Arc<UpstreamMetrics> {
        let mut map = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = map.get(server) {
            return m.clone();
        }
        let m = Arc::new(UpstreamMetrics::default());
        map.insert(Arc::from(server), m.clone());
        m
    }

    pub fn forget_upstream(&self, server: &str) {
        self.upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(server);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, sync: &SyncStatus) -> String {
        let mut o = String::with_capacity(4096);
        o.push_str(
            "# HELP canopy_requests_total MCP requests by JSON-RPC method and HTTP status.\n",
        );
        o.push_str("# TYPE canopy_requests_total counter\n");
        for m in MethodLabel::ALL {
            for (si, status) in STATUSES.iter().enumerate() {
                let n = self.requests[m as usize][si].load(Relaxed);
                if n > 0 {
                    let status = if *status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        o,
                        "canopy_requests_total{{method=\"{}\",status=\"{status}\"}} {n}",
                        m.as_str()
                    );
                }
            }
        }
        counter(
            &mut o,
            "canopy_auth_failures_total",
            "Rejected bearer tokens (missing, unknown or expired).",
            &self.auth_failures,
        );
        counter(
            &mut o,
            "canopy_sync_snapshots_total",
            "Full snapshots applied.",
            &self.snapshots,
        );
        counter(
            &mut o,
            "canopy_sync_resumes_total",
            "Sync sessions resumed from the held revision.",
            &self.resumes,
        );
        gauge(
            &mut o,
            "canopy_sync_applied_revision",
            "Revision of the applied state.",
            sync.applied_revision() as f64,
        );
        gauge(
            &mut o,
            "canopy_sync_staleness_seconds",
            "Seconds since the last contact with the control plane (0 while connected).",
            sync.staleness().as_secs_f64(),
        );
        gauge(
            &mut o,
            "canopy_sync_connected",
            "1 while the sync stream is up.",
            if sync.connected() { 1.0 } else { 0.0 },
        );
        gauge(
            &mut o,
            "canopy_ready",
            "1 once a full state is applied.",
            if sync.ready() { 1.0 } else { 0.0 },
        );

        o.push_str("# HELP canopy_upstream_request_duration_seconds Latency of calls to upstream servers.\n");
        o.push_str("# TYPE canopy_upstream_request_duration_seconds histogram\n");
        let ups = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        for (name, m) in ups.iter() {
            let mut cum = 0;
            for (i, b) in BUCKETS_US.iter().enumerate() {
                cum += m.buckets[i].load(Relaxed);
                let _ = writeln!(
                    o,
                    "canopy_upstream_request_duration_seconds_bucket{{server=\"{name}\",le=\"{}\"}} {cum}",
                    *b as f64 / 1e6
                );
            }
            let count = m.count.load(Relaxed);
            let _ = writeln!(o, "canopy_upstream_request_duration_seconds_bucket{{server=\"{name}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(
                o,
                "canopy_upstream_request_duration_seconds_sum{{server=\"{name}\"}} {}",
                m.sum_us.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "canopy_upstream_request_duration_seconds_count{{server=\"{name}\"}} {count}"
            );
        }
        o.push_str("# HELP canopy_upstream_errors_total Upstream calls that failed (unreachable, timeout, protocol).\n");
        o.push_str("# TYPE canopy_upstream_errors_total counter\n");
        for (name, m) in ups.iter() {
            let _ = writeln!(
                o,
                "canopy_upstream_errors_total{{server=\"{name}\"}} {}",
                m.errors.load(Relaxed)
            );
        }
        drop(ups);
        self.principals.render(&mut o);
        self.tools.render(&mut o);
        o
    }
}

pub(crate) fn counter(o: &mut String, name: &str, help: &str, v: &AtomicU64) {
    let _ = write!(
        o,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
        v.load(Relaxed)
    );
}

pub(crate) fn gauge(o: &mut String, name: &str, help: &str, v: f64) {
    let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record_request(MethodLabel::ToolsList, 200);
        m.record_request(MethodLabel::ToolsList, 200);
        m.record_request(MethodLabel::of("bogus"), 418);
        m.upstream("gh").observe(Duration::from_millis(3), false);
        let text = m.render(&SyncStatus::default());
        assert!(text.contains("canopy_requests_total{method=\"tools/list\",status=\"200\"} 2"));
        assert!(text.contains("canopy_requests_total{method=\"other\",status=\"other\"} 1"));
        assert!(text.contains(
            "canopy_upstream_request_duration_seconds_bucket{server=\"gh\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("canopy_sync_snapshots_total 0"));
        assert!(text.contains("canopy_sync_resumes_total 0"));
    }
}
