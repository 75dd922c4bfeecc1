//! The shared object every handler and the sync task hold.

use bytes::Bytes;
use canopy_mcp::protocol::{META_SERVER_INFO, SUPPORTED_VERSIONS};
use canopy_mcp::upstream::CallLimits;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Audit;
use crate::identity::Resource;
use crate::metrics::Metrics;
use crate::state::State;
use crate::telemetry::Telemetry;

pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a modern client may cache a list or discover result.
pub const LIST_TTL_MS: u64 = 30_000;

/// What the HTTP surface is configured with.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive once its head is read.
    pub body_read_timeout: Duration,
    /// Exact `Origin` values allowed besides absent and loopback origins.
    pub allowed_origins: Vec<String>,
    /// Past this staleness `/mcp` answers 503 (fail closed); `None` = serve while stale.
    pub max_staleness: Option<Duration>,
    /// This data plane's resource identifiers (its public URL), for OAuth audiences and
    /// the protected-resource metadata.
    pub resource: Resource,
    /// What one forwarded call may receive before its response (`--max-call-bytes`,
    /// `--max-call-notifications`).
    pub call_limits: CallLimits,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            allowed_origins: Vec::new(),
            max_staleness: None,
            resource: Resource::from_listen(std::net::SocketAddr::from(([127, 0, 0, 1], 8080))),
            call_limits: CallLimits::default(),
        }
    }
}

/// Bytes that are the same for every response, computed once.
pub(crate) struct Wire {
    /// `"io.modelcontextprotocol/serverInfo":{"name":"canopy","version":"…"}`
    pub server_info_member: Bytes,
    /// `{"name":"canopy","version":"…"}`
    pub server_info: Bytes,
    /// `,"resultType":"complete","ttlMs":…,"cacheScope":"private","_meta":{…}}`
    pub list_tail_private: Bytes,
    pub list_tail_public: Bytes,
    pub discover: Bytes,
}

const CAPABILITIES: &str = r#"{"tools":{"listChanged":false},"prompts":{"listChanged":false}}"#;

impl Wire {
    fn new() -> Self {
        let server_info = format!(
            r#"{{"name":"canopy","version":"{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let member = format!(r#""{META_SERVER_INFO}":{server_info}"#);
        let tail = |scope: &str| {
            Bytes::from(format!(
                r#","resultType":"complete","ttlMs":{LIST_TTL_MS},"cacheScope":"{scope}","_meta":{{{member}}}}}"#
            ))
        };
        let versions = SUPPORTED_VERSIONS
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let discover = format!(
            r#"{{"supportedVersions":[{versions}],"capabilities":{CAPABILITIES},"resultType":"complete","ttlMs":{LIST_TTL_MS},"cacheScope":"public","_meta":{{{member}}}}}"#
        );
        Wire {
            server_info_member: Bytes::from(member.clone()),
            server_info: Bytes::from(server_info),
            list_tail_private: tail("private"),
            list_tail_public: tail("public"),
            discover: Bytes::from(discover),
        }
    }

    pub fn capabilities(&self) -> &'static str {
        CAPABILITIES
    }
}

pub struct DataPlane {
    pub state: State,
    pub settings: HttpSettings,
    /// The audit trail's queue; `None` when auditing is off.
    pub audit: Option<Arc<Audit>>,
    /// The OTLP tracer; `None` when tracing is off (`--otlp-endpoint` unset).
    pub telemetry: Option<Arc<Telemetry>>,
    pub(crate) wire: Wire,
}

impl DataPlane {
    pub fn new(settings: HttpSettings) -> Arc<Self> {
        Self::with_audit(settings, None)
    }

    /// A data plane that records an audit event per MCP request into `audit`.
    pub fn with_audit(settings: HttpSettings, audit: Option<Arc<Audit>>) -> Arc<Self> {
        Self::with_observability(settings, audit, None)
    }

    /// A data plane with the audit trail and OTLP tracing each on or off.
    pub fn with_observability(
        settings: HttpSettings,
        audit: Option<Arc<Audit>>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        if let Some(a) = &audit {
            a.attach_metrics(metrics.clone());
        }
        Arc::new(Self {
            state: State::new(metrics),
            settings,
            audit,
            telemetry,
            wire: Wire::new(),
        })
    }
}
