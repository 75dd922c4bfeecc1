//! `canopy start`: a control plane and one data plane in one process, for a quick start.
//!
//! The data plane still syncs from the control plane over gRPC on the loopback listener —
//! the same code path a remote data plane uses — so what works here works in a fleet.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::error::CliError;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  canopy start\n  canopy start --enterprise --data-dir /var/lib/canopy\n  \
canopy start --enterprise --tls-cert cert.pem --tls-key key.pem\n\n\
In enterprise mode, run `canopy init-server` next to create the first admin.\n\
With --tls-cert the registry is https://; the CLI then needs --ca-file (the CA that signed\n\
the certificate, or the certificate itself when it is self-signed)."
)]
pub struct StartArgs {
    /// Require tokens: users for the CLI, MCP-client bearer tokens for /mcp.
    #[arg(long, env = "CANOPY_ENTERPRISE")]
    pub enterprise: bool,
    /// Where the control plane keeps its sled store, token-hash key and data-plane token.
    #[arg(long, env = "CANOPY_DATA_DIR", default_value = "./canopy-data")]
    pub data_dir: PathBuf,
    /// Address of the gRPC API (the CLI's --registry).
    #[arg(long, env = "CANOPY_GRPC_LISTEN", default_value = "127.0.0.1:9090")]
    pub grpc_listen: SocketAddr,
    /// Address of the MCP endpoint (/mcp) AI clients connect to.
    #[arg(long, env = "CANOPY_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// File holding the token `init-server --init-token` must present (optional guard).
    #[arg(long, env = "CANOPY_INIT_TOKEN_FILE")]
    pub init_token_file: Option<PathBuf>,
    /// Where the data plane keeps a copy of its applied state, to serve across restarts
    /// while the control plane is unreachable.
    #[arg(long, env = "CANOPY_CACHE_FILE")]
    pub cache_file: Option<PathBuf>,
    /// Serve the gRPC API over TLS with this PEM certificate chain. Needs --tls-key. The
    /// in-process data plane trusts the certificates in this file: use one valid for
    /// 127.0.0.1 or localhost that is self-signed or followed by its CA's certificate.
    #[arg(
        long,
        env = "CANOPY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert. Needs --tls-cert.
    #[arg(
        long,
        env = "CANOPY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// How often every registered server's tools and prompts are re-discovered
    /// (e.g. 10m, 30s; 0 = off).
    #[arg(long, env = "CANOPY_REFRESH_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub refresh_interval: Duration,
    /// Change records older than this are compacted away (e.g. 7d, 12h; 0 = keep by count only).
    #[arg(long, env = "CANOPY_CHANGELOG_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub changelog_max_age: Duration,
    /// Serve the control plane's Prometheus metrics on this address (`GET /metrics`,
    /// `GET /healthz`; off by default). The data plane's are at /metrics on --http-listen.
    /// Example: --metrics-listen 127.0.0.1:9091
    #[arg(long, env = "CANOPY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Audit events older than this are removed (e.g. 30d, 90d, 12h; 0 = keep by size only).
    #[arg(long, env = "CANOPY_AUDIT_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,
    /// The oldest audit events are removed while more than this is stored (e.g. 1GiB,
    /// 500MB; counted as keys plus encoded events, sled's files take more).
    #[arg(long, env = "CANOPY_AUDIT_MAX_BYTES", default_value = "1GiB", value_parser = canopy_control_plane::audit::parse_bytes)]
    pub audit_max_bytes: u64,
}

/// Zero means "off".
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The address the in-process data plane dials: the listener's, or loopback when it
/// listens on every interface.
fn dial_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// TLS of the in-process control plane, and how its data plane (and the CLI) trust it.
struct LocalTls {
    files: canopy_control_plane::tls::TlsFiles,
    /// What the in-process data plane connects with: the certificate file as its CA.
    client: tonic::transport::ClientTlsConfig,
    /// The host name the certificate was verified for (`127.0.0.1` or `localhost`).
    name: String,
}

/// Checks `--tls-cert`/`--tls-key` before anything binds, and that a client trusting the
/// certificate file can verify it when dialing `dial`.
fn tls_setup(args: &StartArgs, dial: SocketAddr) -> Result<Option<LocalTls>, CliError> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => return Ok(None),
        _ => {
            return Err(CliError::usage(
                "--tls-cert and --tls-key go together: pass both or neither",
            ))
        }
    };
    let files = canopy_control_plane::tls::TlsFiles { cert, key };
    canopy_control_plane::tls::load(&files).map_err(|e| CliError::Other(e.to_string()))?;
    let name = canopy_control_plane::tls::local_trust_name(&files.cert, dial.ip())
        .map_err(CliError::Other)?;
    let client = canopy_data_plane::tls::client_config(Some(&files.cert), Some(&name))
        .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(Some(LocalTls {
        files,
        client,
        name,
    }))
}

fn read_secret_file(path: &PathBuf, what: &str) -> Result<String, CliError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| CliError::Other(format!("cannot read {what} file {}: {e}", path.display())))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(CliError::Other(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {addr} for {what}: {e}")))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(args: StartArgs) -> Result<(), CliError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    // TLS files first: a wrong one must not leave a half-created data dir behind.
    let tls = tls_setup(&args, dial_addr(args.grpc_listen))?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        CliError::Other(format!(
            "cannot create data dir {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let init_token = match (&args.init_token_file, std::env::var("CANOPY_INIT_TOKEN")) {
        (Some(path), _) => Some(read_secret_file(path, "init token")?),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        _ => None,
    };
    let env_token = std::env::var("CANOPY_DATA_PLANE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());

    let mut cp_config = canopy_control_plane::ControlPlaneConfig::new(&args.data_dir);
    cp_config.listen = args.grpc_listen;
    cp_config.enterprise = args.enterprise;
    cp_config.init_token = init_token;
    cp_config.data_plane_token = env_token.clone();
    cp_config.refresh_interval = nonzero(args.refresh_interval);
    cp_config.changelog_max_age = nonzero(args.changelog_max_age);
    cp_config.audit_retention.max_age = nonzero(args.audit_retention);
    cp_config.audit_retention.max_bytes = args.audit_max_bytes;
    cp_config.tls = tls.as_ref().map(|t| t.files.clone());
    cp_config.metrics_listen = args.metrics_listen;
    // The store opens first: a data dir of the other mode fails here, before anything
    // binds, writes the data-plane token or claims to have started.
    let opened = canopy_control_plane::open(cp_config)
        .await
        .map_err(|e| CliError::Other(format!("control plane: {e}")))?;
    // The same token the control plane resolves when it starts serving (the env's, else
    // the data dir's file).
    let data_plane_token =
        canopy_control_plane::data_plane_token::resolve(&args.data_dir, env_token.as_deref())
            .map_err(|e| CliError::Other(e.to_string()))?;

    let grpc = bind(args.grpc_listen, "the control plane").await?;
    let http = bind(args.http_listen, "the data plane").await?;
    let grpc_addr = grpc
        .local_addr()
        .map_err(|e| CliError::Other(format!("control plane listener: {e}")))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let dial = dial_addr(grpc_addr);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // What to tell the CLI: a host the certificate is valid for, and the file to trust.
    let (registry_hint, ca_hint) = match &tls {
        Some(t) if t.name == "localhost" => (
            format!("https://localhost:{}", dial.port()),
            format!(" --ca-file {}", t.files.cert.display()),
        ),
        Some(t) => (
            format!("https://{dial}"),
            format!(" --ca-file {}", t.files.cert.display()),
        ),
        None => (format!("http://{dial}"), String::new()),
    };
    let control_plane = tokio::spawn(opened.serve(grpc, stopped(stop_rx.clone())));

    let mut dp_config = canopy_data_plane::DataPlaneConfig::new(
        format!("{scheme}://{dial}"),
        "local",
        data_plane_token,
    );
    dp_config.control_plane_tls = tls.map(|t| t.client);
    dp_config.cache_file = args.cache_file;
    let ready = Arc::new(Notify::new());
    dp_config.on_ready = Some(ready.clone());
    let data_plane = tokio::spawn(canopy_data_plane::serve(dp_config, http, stopped(stop_rx)));

    // Whichever ends first (a signal, or a component failing) stops the other; "started"
    // is said only once the data plane holds the control plane's state, i.e. both serve.
    let mut control_plane = control_plane;
    let mut data_plane = data_plane;
    let mut signal = std::pin::pin!(shutdown_signal());
    let early = tokio::select! {
        () = ready.notified() => None,
        () = &mut signal => Some((None, None)),
        r = &mut control_plane => Some((Some(join_result(r, "control plane")), Some(false))),
        r = &mut data_plane => Some((Some(join_result(r, "data plane")), Some(true))),
    };
    let (first, other_is_cp) = match early {
        Some(ended) => ended,
        None => {
            let registry_flag =
                if registry_hint == crate::args::DEFAULT_REGISTRY && ca_hint.is_empty() {
                    String::new()
                } else {
                    format!("--registry {registry_hint}{ca_hint} ")
                };
            eprintln!(
                "canopy started in {} mode: MCP endpoint http://{}/mcp, registry {scheme}://{grpc_addr}",
                if args.enterprise {
                    "enterprise"
                } else {
                    "development"
                },
                args.http_listen,
            );
            if args.enterprise {
                eprintln!("next: canopy {registry_flag}init-server");
            } else {
                eprintln!(
                    "next: canopy {registry_flag}register --name NAME --url http://HOST:PORT/mcp \
                     (an upstream MCP server), then point an MCP client at http://{}/mcp",
                    args.http_listen
                );
            }
            tokio::select! {
                () = &mut signal => (None, None),
                r = &mut control_plane => (Some(join_result(r, "control plane")), Some(false)),
                r = &mut data_plane => (Some(join_result(r, "data plane")), Some(true)),
            }
        }
    };
    let _ = stop_tx.send(true);
    let rest = match other_is_cp {
        None => {
            // Data plane first so its in-flight calls drain while the control plane is up.
            let dp = join_result(data_plane.await, "data plane");
            let cp = join_result(control_plane.await, "control plane");
            dp.and(cp)
        }
        Some(true) => join_result(control_plane.await, "control plane"),
        Some(false) => join_result(data_plane.await, "data plane"),
    };
    first.unwrap_or(Ok(())).and(rest)
}

fn join_result<E: std::fmt::Display>(
    r: Result<Result<(), E>, tokio::task::JoinError>,
    what: &str,
) -> Result<(), CliError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::Other(format!("{what}: {e}"))),
        Err(e) => Err(CliError::Other(format!("{what} stopped unexpectedly: {e}"))),
    }
}
