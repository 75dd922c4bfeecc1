//! How a control plane is configured (the binary fills it from flags and env; `canopy
//! start` fills it in-process).

use crate::listener::ListenerLimits;
use crate::store::DEFAULT_CHANGELOG_RETAIN;
use crate::tls::TlsFiles;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default of `--refresh-interval`: how often every server's catalogue is re-discovered.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Default of `--changelog-max-age`: change records older than this are compacted away
/// (a data plane away for longer gets a snapshot).
pub const DEFAULT_CHANGELOG_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Configuration of one control plane. Build it with [`ControlPlaneConfig::new`] and set
/// fields; it is `non_exhaustive` so new settings (TLS, refresh) do not break callers.
#[derive(Clone)]
#[non_exhaustive]
pub struct ControlPlaneConfig {
    pub data_dir: PathBuf,
    /// The address the caller bound; used in logs only (`serve` takes the listener).
    pub listen: SocketAddr,
    pub enterprise: bool,
    /// When set, `init-server` must present this token.
    pub init_token: Option<String>,
    /// The token data planes authenticate with; `None` = read or create
    /// `<data-dir>/data-plane.token`.
    pub data_plane_token: Option<String>,
    /// Change records kept for resuming data planes.
    pub changelog_retain: u64,
    /// Change records older than this are compacted away too (`None` = by count only).
    pub changelog_max_age: Option<Duration>,
    /// Periodic re-discovery of every server's tools and prompts (`None` = off).
    pub refresh_interval: Option<Duration>,
    /// Periodic fetch of every identity provider's discovery and keys (`None` = off).
    pub idp_refresh_interval: Option<Duration>,
    /// Minimum time between key fetches of one provider prompted by unknown-`kid` reports.
    pub idp_refetch_cooldown: Duration,
    /// The URL the control plane is reached at: the Admin API's audience for identity
    /// providers' tokens (`None` = only providers with their own admin audience).
    pub public_url: Option<String>,
    /// How long in-flight requests and streams may run after shutdown starts.
    pub shutdown_grace: Duration,
    /// Serve gRPC over TLS with this certificate and key (`None` = plaintext).
    pub tls: Option<TlsFiles>,
    /// Connection cap and first-byte timeout of the gRPC listener.
    pub listener: ListenerLimits,
    /// Serve Prometheus metrics (`GET /metrics`, `GET /healthz`) over HTTP here (`None` = off).
    pub metrics_listen: Option<SocketAddr>,
    /// How long and how much of the audit trail is kept (`--audit-retention`,
    /// `--audit-max-bytes`).
    pub audit_retention: crate::audit::Retention,
}

impl ControlPlaneConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            enterprise: false,
            init_token: None,
            data_plane_token: None,
            changelog_retain: DEFAULT_CHANGELOG_RETAIN,
            changelog_max_age: Some(DEFAULT_CHANGELOG_MAX_AGE),
            refresh_interval: Some(DEFAULT_REFRESH_INTERVAL),
            idp_refresh_interval: Some(DEFAULT_REFRESH_INTERVAL),
            idp_refetch_cooldown: crate::identity::DEFAULT_REFETCH_COOLDOWN,
            shutdown_grace: Duration::from_secs(10),
            tls: None,
            public_url: None,
            listener: ListenerLimits::default(),
            metrics_listen: None,
            audit_retention: crate::audit::Retention::default(),
        }
    }
}

impl std::fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("ControlPlaneConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("enterprise", &self.enterprise)
            .field("init_token", &redact(&self.init_token))
            .field("data_plane_token", &redact(&self.data_plane_token))
            .field("changelog_retain", &self.changelog_retain)
            .field("changelog_max_age", &self.changelog_max_age)
            .field("refresh_interval", &self.refresh_interval)
            .field("idp_refresh_interval", &self.idp_refresh_interval)
            .field("idp_refetch_cooldown", &self.idp_refetch_cooldown)
            .field("public_url", &self.public_url)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("tls", &self.tls)
            .field("listener", &self.listener)
            .field("metrics_listen", &self.metrics_listen)
            .field("audit_retention", &self.audit_retention)
            .finish()
    }
}
