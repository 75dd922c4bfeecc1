//! `serve`: opens the store and runs the gRPC services on a bound listener until
//! `shutdown` resolves, then drains (bounded) and flushes.

use crate::admin::AdminService;
use crate::config::ControlPlaneConfig;
use crate::fleet::Fleet;
use crate::identity::Keys;
use crate::store::{Mode, Store, StoreError, StoreOptions};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tonic::transport::Server;

const HTTP2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

#[derive(Debug, Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("data-plane token file {path}: {source}")]
    DataPlaneToken {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// Runs a control plane on `listener` until `shutdown` resolves.
///
/// Serves `canopy.v1.Admin`, `canopy.v1.Sync`, `canopy.v1.Audit`, gRPC health and reflection (v1 and
/// v1alpha). On shutdown it stops accepting and closes every Sync stream (data planes
/// reconnect later or elsewhere), lets in-flight unary calls finish for at most
/// `config.shutdown_grace`, then flushes the store.
pub async fn serve(
    config: ControlPlaneConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlPlaneError> {
    open(config).await?.serve(listener, shutdown).await
}

/// A control plane with its configuration checked and its store open (so the data dir's
/// mode is known to match), not serving yet: a caller can report a wrong data dir before
/// it binds or prints anything.
pub struct Opened {
    config: ControlPlaneConfig,
    tls: Option<crate::tls::LoadedTls>,
    /// Bound `--metrics-listen`, when set.
    metrics: Option<TcpListener>,
    store: Store,
    mode: Mode,
}

/// Checks the configuration and opens the store; see [`Opened::serve`].
pub async fn open(config: ControlPlaneConfig) -> Result<Opened, ControlPlaneError> {
    if config
        .init_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(ControlPlaneError::Config("the init token is empty".into()));
    }
    // Before the store opens: a wrong certificate file must not cost a store open/close.
    let tls = config.tls.as_ref().map(crate::tls::load).transpose()?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    let mode = if config.enterprise {
        Mode::Enterprise
    } else {
        Mode::Development
    };
    let mut options = StoreOptions::new(&config.data_dir, mode);
    options.changelog_retain = config.changelog_retain;
    options.changelog_max_age = config.changelog_max_age;
    let store = Store::open(options).await?;
    Ok(Opened {
        config,
        tls,
        metrics,
        store,
        mode,
    })
}

impl Opened {
    /// Where `/metrics` is served (`None` without `metrics_listen`).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs the control plane on `listener` until `shutdown` resolves (see [`serve`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ControlPlaneError> {
        let Opened {
            config,
            tls,
            metrics,
            store,
            mode,
        } = self;
        serve_opened(config, tls, metrics, store, mode, listener, shutdown).await
    }
}

async fn serve_opened(
    config: ControlPlaneConfig,
    tls: Option<crate::tls::LoadedTls>,
    metrics_listener: Option<TcpListener>,
    store: Store,
    mode: Mode,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlPlaneError> {
    let data_plane_token =
        crate::data_plane_token::resolve(&config.data_dir, config.data_plane_token.as_deref())?;
    let data_plane_token_hash = store.hasher().hash(&data_plane_token);
    drop(data_plane_token);
    let fleet = Fleet::new();

    let audit_store = crate::audit::AuditStore::open(store.database())?;
    let (recorder, recorder_task) = crate::audit::Recorder::start(audit_store.clone());
    let retention = config.audit_retention;
    let retention_task = tokio::spawn(retention.run(audit_store.clone()));

    let keys = Arc::new(Keys::new(store.clone(), config.idp_refetch_cooldown));
    let admin = AdminService::new(store.clone(), fleet.clone(), config.init_token.as_deref())
        .with_keys(Arc::clone(&keys))
        .with_public_url(config.public_url.clone())
        .with_audit(recorder.clone());
    let idp_refresh_task = config.idp_refresh_interval.map(|interval| {
        tracing::info!(
            ?interval,
            "fetching every identity provider's keys periodically"
        );
        tokio::spawn(Arc::clone(&keys).run(interval))
    });
    let refresh_task = config.refresh_interval.map(|interval| {
        tracing::info!(
            ?interval,
            "re-discovering every server's tools and prompts periodically"
        );
        tokio::spawn(crate::refresh::run(admin.refresher(), interval))
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<canopy_proto::v1::admin_server::AdminServer<AdminService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(canopy_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(canopy_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let addr = listener
        .local_addr()
        .map_err(|e| ControlPlaneError::Config(format!("listener: {e}")))?;
    tracing::info!(
        mode = mode.as_str(),
        data_dir = %config.data_dir.display(),
        revision = store.revision(),
        tls = tls.is_some(),
        "control plane listening on {addr} ({})",
        if tls.is_some() { "gRPC over TLS" } else { "plaintext gRPC" }
    );

    let sync = crate::sync::SyncService::new(
        std::sync::Arc::new(store.clone()),
        fleet.clone(),
        data_plane_token_hash,
    )
    .with_keys(Arc::clone(&keys))
    .with_recorder(recorder.clone());
    let streams = sync.closer();
    // Audit ingest streams are counted apart from Sync sessions (an operator reading
    // `canopy_cp_sync_streams` counts data planes), and closed with them at shutdown.
    let audit_streams = crate::sync::StreamCloser::default();
    let admin_calls = Arc::new(crate::metrics::AdminCalls::default());
    let metrics_task = metrics_listener.map(|listener| {
        let mut registry = crate::metrics::Registry::default();
        registry.register(Arc::new(crate::metrics::ProcessCollector {
            fleet: Arc::clone(&fleet),
            store: store.clone(),
            streams: streams.clone(),
            audit_streams: audit_streams.clone(),
        }));
        registry.register(Arc::new(crate::metrics::AuditCollector {
            store: audit_store.clone(),
        }));
        registry.register(Arc::clone(&admin_calls) as Arc<dyn crate::metrics::Collect>);
        registry.register(Arc::new(crate::metrics::IdentityCollector {
            keys: Arc::clone(&keys),
            store: store.clone(),
        }));
        match listener.local_addr() {
            Ok(addr) => tracing::info!("metrics on http://{addr}/metrics"),
            Err(e) => tracing::warn!(error = %e, "metrics listener has no address"),
        }
        tokio::spawn(async move {
            // Aborted with the other background tasks when the control plane stops.
            if let Err(e) = crate::metrics::serve(listener, registry, std::future::pending()).await
            {
                tracing::error!(error = %e, "metrics server stopped");
            }
        })
    });
    let admin = Arc::new(admin);
    let audit = crate::audit::AuditService::new(
        audit_store.clone(),
        Arc::clone(&admin),
        store.hasher().clone(),
        data_plane_token_hash,
        audit_streams.clone(),
    )
    .with_recorder(recorder);
    let closing = streams.clone();
    let closing_audit = audit_streams.clone();
    // Shutdown: the caller's future stops accepting and closes the Sync streams (they never
    // end by themselves); `stopping` starts the grace timer for what is left in flight.
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let open = closing.close();
        let audit_open = closing_audit.close();
        tracing::info!(
            sync_streams = open,
            audit_streams = audit_open,
            "shutting down: no new connections, closing sync streams, draining in-flight calls"
        );
        let _ = stopping_tx.send(true);
    };
    // HTTP/2 keep-alive pings close peers that stop answering (a data plane whose host
    // vanished, a client that went silent after the handshake); the stream cap bounds what
    // one connection can ask for at once. Connection cap and first-byte timeout: listener.rs.
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(crate::metrics::AdminCallsLayer(admin_calls));
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(admin.shared_server())
        .add_service(canopy_proto::v1::sync_server::SyncServer::new(sync))
        .add_service(audit.into_server());
    drop(admin);
    let incoming = crate::listener::incoming(listener, config.listener);
    let server = router.serve_with_incoming_shutdown(incoming, signal);
    let grace = config.shutdown_grace;
    let drained = tokio::select! {
        result = server => result.map(|()| true),
        () = async move {
            // A call that does not finish (or a data plane that stops reading its closed
            // stream) must not hold the shutdown: bound the drain.
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => Ok(false),
    };
    for task in [refresh_task, idp_refresh_task, metrics_task]
        .into_iter()
        .flatten()
    {
        task.abort();
    }
    retention_task.abort();
    // The services (and their recorders) are gone with the server: the recorder writes
    // what is queued and ends.
    if tokio::time::timeout(grace, recorder_task).await.is_err() {
        tracing::warn!("control-plane audit events still queued at shutdown were not written");
    }
    let drained = match drained {
        // Every connection is gone; wait for the last session task to have ended.
        Ok(true) => Ok(tokio::time::timeout(grace, async {
            streams.closed().await;
            audit_streams.closed().await;
        })
        .await
        .is_ok()),
        other => other,
    };
    match drained {
        Ok(true) => tracing::info!(
            sync_streams = streams.closed_at_shutdown(),
            audit_streams = audit_streams.closed_at_shutdown(),
            "drained: sync streams closed, nothing left in flight"
        ),
        Ok(false) => tracing::warn!(
            ?grace,
            "in-flight calls did not finish within the grace period; closing them"
        ),
        Err(_) => {}
    }
    store.close().await;
    tracing::info!(
        revision = store.revision(),
        "control plane stopped; store flushed"
    );
    drained.map(|_| ()).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use canopy_proto::v1 as pb;
    use pb::admin_client::AdminClient;

    /// The whole wiring over a real socket: Admin, health, then a clean shutdown.
    #[tokio::test]
    async fn serves_admin_and_health_then_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ControlPlaneConfig::new(dir.path());
        config.enterprise = true;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(config, listener, async move {
            let _ = stopped.await;
        }));

        let url = format!("http://{addr}");
        let mut admin = loop {
            match AdminClient::connect(url.clone()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        let token = admin
            .init_server(pb::InitServerRequest::default())
            .await
            .unwrap()
            .into_inner()
            .access_token;
        let mut who = tonic::Request::new(pb::WhoAmIRequest {});
        who.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert_eq!(
            admin.who_am_i(who).await.unwrap().into_inner().name,
            "admin"
        );

        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "canopy.v1.Admin".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        drop(admin);
        drop(health);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(dir.path().join(crate::data_plane_token::FILE_NAME).exists());
    }

    /// `metrics_listen`: Prometheus text at `/metrics` with every family of the control
    /// plane, Admin calls counted by result, and `/healthz`.
    #[tokio::test]
    async fn serves_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ControlPlaneConfig::new(dir.path());
        config.enterprise = true;
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        let opened = open(config).await.unwrap();
        let metrics = format!("http://{}", opened.metrics_addr().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(opened.serve(listener, async move {
            let _ = stopped.await;
        }));
        let mut admin = loop {
            match AdminClient::connect(format!("http://{addr}")).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        admin
            .get_server_info(pb::GetServerInfoRequest {})
            .await
            .unwrap();
        // No token in enterprise mode: refused.
        assert!(admin.who_am_i(pb::WhoAmIRequest {}).await.is_err());
        assert!(admin.who_am_i(pb::WhoAmIRequest {}).await.is_err());

        let http = reqwest::Client::new();
        let page = http.get(format!("{metrics}/metrics")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = page.text().await.unwrap();
        assert!(
            text.contains("canopy_cp_admin_rpcs_total{result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("canopy_cp_admin_rpcs_total{result=\"error\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("canopy_cp_data_planes_connected 0\n"),
            "{text}"
        );
        assert!(text.contains("canopy_cp_sync_streams 0\n"), "{text}");
        for family in crate::metrics::families_for_tests() {
            let help = format!("# HELP {} ", family.name);
            assert_eq!(text.matches(&help).count(), 1, "{help} in {text}");
        }
        let health = http.get(format!("{metrics}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);

        drop(admin);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// With `config.tls` the same services answer over TLS, verified against the
    /// certificate; a plaintext client gets no answer.
    #[tokio::test]
    async fn serves_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let mut config = ControlPlaneConfig::new(dir.path().join("data"));
        config.tls = Some(crate::tls::TlsFiles { cert, key });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(config, listener, async move {
            let _ = stopped.await;
        }));

        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(generated.cert.pem()),
        );
        let endpoint = tonic::transport::Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let channel = loop {
            match endpoint.connect().await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        let info = AdminClient::new(channel)
            .get_server_info(pb::GetServerInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!info.version.is_empty());

        let mut plain = AdminClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        assert!(plain
            .get_server_info(pb::GetServerInfoRequest {})
            .await
            .is_err());

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
