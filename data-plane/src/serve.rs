//! Running a data plane: cache load, sync task, cache writer, HTTP server, drain.

use canopy_mcp::upstream::CallLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Notify;

use crate::app::{DataPlane, HttpSettings, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES};
use crate::audit::{Audit, AuditSettings, ShipperConfig};
use crate::cache;
use crate::identity::Resource;
use crate::listen::ListenSettings;
use crate::sync::{self, SyncConfig};
use crate::telemetry::Telemetry;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `on_ready` checks readiness while starting.
const READY_POLL: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct DataPlaneConfig {
    /// `http://host:port` or `https://host:port` of the control plane's gRPC listener.
    pub control_plane: String,
    /// TLS settings for an `https://` control plane (see [`crate::tls::client_config`]);
    /// `None` with `https://` = the system's and the webpki roots.
    pub control_plane_tls: Option<tonic::transport::ClientTlsConfig>,
    /// The address reported to the control plane (the listener's address when unset).
    pub listen: Option<SocketAddr>,
    pub node_id: String,
    pub data_plane_token: String,
    pub cache_file: Option<PathBuf>,
    pub max_staleness: Option<Duration>,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (`--body-read-timeout`).
    pub body_read_timeout: Duration,
    /// Connection cap and header read timeout of the listener.
    pub connections: ListenSettings,
    /// What one forwarded call may receive before its response.
    pub call_limits: CallLimits,
    /// Exact Origin values allowed in addition to absent and loopback origins.
    pub allowed_origins: Vec<String>,
    /// The origin clients reach this data plane at (`https://mcp.example.com`), behind a
    /// load balancer; `None` = `http://` + the listen address (development).
    pub public_url: Option<String>,
    /// Notified once, when the first full state is applied (what `/readyz` reports):
    /// `canopy start` says "started" only then.
    pub on_ready: Option<Arc<Notify>>,
    /// The audit trail (`None` = off): an event per MCP request, shipped to the control plane.
    pub audit: Option<AuditOptions>,
    /// OpenTelemetry traces over OTLP/gRPC (`None` = off): a SERVER span per MCP request,
    /// a CLIENT span per upstream call.
    pub otlp: Option<OtlpOptions>,
}

/// Where and how much to trace (`--otlp-*` flags).
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Share of the traces this data plane starts that are kept (0..=1); a caller's
    /// sampled flag is followed.
    pub sampling: f64,
}

/// How the audit trail runs (`--audit-*` flags).
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Answer 503 while events cannot be kept (`--audit-required`).
    pub required: bool,
    /// The spool file; `None` = `<cache-file>.audit-spool` when there is a cache file, else
    /// no spool.
    pub spool_file: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub max_payload_bytes: usize,
    pub queue_capacity: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            required: false,
            spool_file: None,
            spool_max_bytes: crate::audit::DEFAULT_SPOOL_MAX_BYTES,
            max_payload_bytes: crate::audit::DEFAULT_MAX_PAYLOAD_BYTES,
            queue_capacity: crate::audit::DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// How long stopping waits for the audit shipper to put what it holds into the spool.
const AUDIT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl DataPlaneConfig {
    pub fn new(
        control_plane: impl Into<String>,
        node_id: impl Into<String>,
        data_plane_token: impl Into<String>,
    ) -> Self {
        Self {
            control_plane: control_plane.into(),
            control_plane_tls: None,
            listen: None,
            node_id: node_id.into(),
            data_plane_token: data_plane_token.into(),
            cache_file: None,
            max_staleness: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            connections: ListenSettings::default(),
            call_limits: CallLimits::default(),
            allowed_origins: Vec::new(),
            public_url: None,
            on_ready: None,
            audit: Some(AuditOptions::default()),
            otlp: None,
        }
    }
}

impl std::fmt::Debug for DataPlaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlaneConfig")
            .field("control_plane", &self.control_plane)
            .field("control_plane_tls", &self.control_plane_tls.is_some())
            .field("listen", &self.listen)
            .field("node_id", &self.node_id)
            .field("data_plane_token", &"<redacted>")
            .field("cache_file", &self.cache_file)
            .field("max_staleness", &self.max_staleness)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("connections", &self.connections)
            .field("call_limits", &self.call_limits)
            .field("allowed_origins", &self.allowed_origins)
            .field("public_url", &self.public_url)
            .field("on_ready", &self.on_ready.is_some())
            .field("audit", &self.audit)
            .field("otlp", &self.otlp)
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum DataPlaneError {
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("the data-plane token is empty")]
    EmptyToken,
    #[error(
        "a CA file for the control plane is set but the control-plane URL {0} is not https://; \
         use https:// (or drop the CA file)"
    )]
    TlsWithoutHttps(String),
    #[error(transparent)]
    CaFile(#[from] crate::tls::CaFileError),
    #[error("--public-url: {0}")]
    PublicUrl(#[from] crate::identity::ResourceError),
    #[error("cannot read the listener address: {0}")]
    Listener(std::io::Error),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves until `shutdown` resolves, then drains in-flight requests (bounded by
/// [`DRAIN_TIMEOUT`]) and writes the cache file one last time.
pub async fn serve(
    config: DataPlaneConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DataPlaneError> {
    if config.data_plane_token.is_empty() {
        return Err(DataPlaneError::EmptyToken);
    }
    let https = crate::tls::is_https(&config.control_plane);
    let tls = match (https, config.control_plane_tls.clone()) {
        (true, Some(tls)) => Some(tls),
        (true, None) => Some(crate::tls::client_config(None, None)?),
        (false, None) => None,
        // Someone meant TLS; silently syncing in plaintext would hide that.
        (false, Some(_)) => {
            return Err(DataPlaneError::TlsWithoutHttps(
                config.control_plane.clone(),
            ))
        }
    };
    let local = listener.local_addr().map_err(DataPlaneError::Listener)?;
    let resource = match &config.public_url {
        Some(url) => Resource::new(url)?,
        None => Resource::from_listen(config.listen.unwrap_or(local)),
    };
    let mut audit_task = None;
    let audit = config.audit.as_ref().map(|o| {
        let mut settings = AuditSettings::new(config.node_id.clone());
        settings.required = o.required;
        settings.max_payload_bytes = o.max_payload_bytes;
        settings.queue_capacity = o.queue_capacity;
        let (audit, rx) = Audit::new(settings);
        let mut ship = ShipperConfig::new(
            config.control_plane.clone(),
            config.data_plane_token.clone(),
        );
        ship.tls = tls.clone();
        ship.spool_max_bytes = o.spool_max_bytes;
        ship.spool = o.spool_file.clone().or_else(|| {
            config.cache_file.as_ref().map(|c| {
                let mut name = c.as_os_str().to_owned();
                name.push(".audit-spool");
                PathBuf::from(name)
            })
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(crate::audit::run_shipper(audit.clone(), rx, ship, stop_rx));
        audit_task = Some((task, stop_tx));
        audit
    });
    let telemetry = match &config.otlp {
        Some(o) => Some(Telemetry::new(
            &o.endpoint,
            o.sampling,
            "canopy-data-plane",
        )?),
        None => None,
    };
    let dp = DataPlane::with_observability(
        HttpSettings {
            max_body_bytes: config.max_body_bytes,
            allowed_origins: config.allowed_origins.clone(),
            max_staleness: config.max_staleness,
            resource,
            body_read_timeout: config.body_read_timeout,
            call_limits: config.call_limits,
        },
        audit,
        telemetry.clone(),
    );

    if let Some(path) = &config.cache_file {
        match cache::load(&dp.state, path) {
            Ok(Some(rev)) => {
                tracing::info!(revision = rev, path = %path.display(), "serving from the cache file until the control plane answers")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "ignoring the cache file"),
        }
    }

    let sync_cfg = SyncConfig {
        control_plane: config.control_plane.clone(),
        tls,
        token: config.data_plane_token.clone(),
        node_id: config.node_id.clone(),
        address: config.listen.unwrap_or(local).to_string(),
    };
    let sync_task = tokio::spawn(sync::run(dp.clone(), sync_cfg));
    let ready_task = config.on_ready.clone().map(|notify| {
        let dp = dp.clone();
        tokio::spawn(async move {
            // Only while starting up, so a short poll costs nothing worth a hook in the
            // state's apply path.
            while !dp.state.status.ready() {
                tokio::time::sleep(READY_POLL).await;
            }
            notify.notify_one();
        })
    });
    let cache_task = config
        .cache_file
        .clone()
        .map(|p| tokio::spawn(cache::run_writer(dp.clone(), p)));

    tracing::info!("listening on {local}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = crate::http::router(dp.clone());
    let server = crate::listen::serve(listener, app, config.connections, async move {
        let _ = stop_rx.await;
    });
    let mut server = tokio::spawn(server);

    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stop_tx.send(());
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; closing remaining connections");
                    server.abort();
                    Ok(())
                }
            }
        }
    };
    sync_task.abort();
    if let Some(t) = ready_task {
        t.abort();
    }
    if let Some(t) = cache_task {
        t.abort();
    }
    if let Some(path) = &config.cache_file {
        cache::flush(&dp, path).await;
    }
    if let Some((task, stop)) = audit_task {
        // Requests are drained: what the shipper still holds goes to the spool.
        let _ = stop.send(());
        if tokio::time::timeout(AUDIT_STOP_TIMEOUT, task)
            .await
            .is_err()
        {
            tracing::warn!("the audit shipper did not stop in time; events it held may be lost");
        }
    }
    if let Some(t) = telemetry {
        // Exports what is queued; the SDK's shutdown blocks.
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(DataPlaneError::Serve(std::io::Error::other(e))),
    }
}
