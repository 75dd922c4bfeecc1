//! `canopy-control-plane`: flags and env → [`ControlPlaneConfig`], logging, signals,
//! then [`canopy_control_plane::serve`].

use anyhow::Context;
use canopy_control_plane::ControlPlaneConfig;
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Canopy control plane: users, MCP clients, tokens and upstream servers, served over gRPC.
#[derive(Debug, Parser)]
#[command(
    name = "canopy-control-plane",
    version,
    about,
    after_help = "\
Examples:
  canopy-control-plane --enterprise --data-dir /var/lib/canopy
  canopy-control-plane --enterprise --data-dir /var/lib/canopy --listen 0.0.0.0:9090 \\
      --tls-cert /etc/canopy/cp.pem --tls-key /etc/canopy/cp.key
  CANOPY_INIT_TOKEN_FILE=/run/secrets/init canopy-control-plane --enterprise

Then, from an admin's machine: `canopy --registry http://HOST:9090 init-server`.
Data planes authenticate with the token in <data-dir>/data-plane.token (generated at first
start unless --data-plane-token-file or CANOPY_DATA_PLANE_TOKEN gives one); give them
that token and this address (canopy-data-plane --control-plane)."
)]
struct Args {
    /// Where the store, the token-hash key and the data-plane token live.
    #[arg(long, env = "CANOPY_DATA_DIR", default_value = "./canopy-data")]
    data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "CANOPY_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Enterprise mode: every call needs a user token; MCP clients need tokens.
    #[arg(long, env = "CANOPY_ENTERPRISE")]
    enterprise: bool,
    /// File holding the token `canopy init-server --init-token` must present
    /// (or set CANOPY_INIT_TOKEN).
    #[arg(long, env = "CANOPY_INIT_TOKEN_FILE")]
    init_token_file: Option<PathBuf>,
    /// File holding the token data planes authenticate with (or set
    /// CANOPY_DATA_PLANE_TOKEN; default: generated into <data-dir>/data-plane.token).
    #[arg(long, env = "CANOPY_DATA_PLANE_TOKEN_FILE")]
    data_plane_token_file: Option<PathBuf>,
    /// Change records kept so reconnecting data planes can resume without a snapshot.
    #[arg(long, env = "CANOPY_CHANGELOG_RETAIN", default_value_t = 100_000)]
    changelog_retain: u64,
    /// Change records older than this are compacted away too; a data plane away for
    /// longer gets a full snapshot (e.g. 7d, 12h; 0 = keep by count only).
    #[arg(long, env = "CANOPY_CHANGELOG_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    changelog_max_age: Duration,
    /// Audit events older than this are removed (e.g. 30d, 90d, 12h; 0 = keep by size only).
    #[arg(long, env = "CANOPY_AUDIT_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    audit_retention: Duration,
    /// The oldest audit events are removed while more than this is stored (e.g. 1GiB,
    /// 500MB; counted as keys plus encoded events, sled's files take more).
    #[arg(long, env = "CANOPY_AUDIT_MAX_BYTES", default_value = "1GiB", value_parser = canopy_control_plane::audit::parse_bytes)]
    audit_max_bytes: u64,
    /// How often every registered server's tools and prompts are re-discovered
    /// (e.g. 10m, 30s; 0 = off). Failures are logged; the server stays registered.
    #[arg(long, env = "CANOPY_REFRESH_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    refresh_interval: Duration,
    /// How often every identity provider's discovery document and keys are fetched again
    /// (e.g. 10m; 0 = off). A failure keeps the last good keys and shows in
    /// `canopy list identity-providers`.
    #[arg(long, env = "CANOPY_IDP_REFRESH_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    idp_refresh_interval: Duration,
    /// After a data plane reports a token key id it does not know, the provider's keys are
    /// fetched at once, then not again for this long on such reports (e.g. 30s).
    #[arg(long, env = "CANOPY_IDP_REFETCH_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration)]
    idp_refetch_cooldown: Duration,
    /// The URL people and the CLI reach this control plane at (e.g.
    /// https://canopy-cp.corp.example). It is the audience the Admin API accepts in identity
    /// providers' access tokens (`canopy login --sso`), unless a provider sets
    /// --admin-audience.
    #[arg(long, env = "CANOPY_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Serve gRPC over TLS with this PEM certificate chain (server certificate first).
    /// Needs --tls-key. Clients then use https:// URLs.
    #[arg(
        long,
        env = "CANOPY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(
        long,
        env = "CANOPY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Most open gRPC connections (CLI sessions and data planes). Past it a new connection
    /// is accepted and closed at once; clients retry with backoff. Keep it below the
    /// file-descriptor limit (`ulimit -n`). Example: --max-connections 1000
    #[arg(long, env = "CANOPY_MAX_CONNECTIONS", default_value_t = canopy_control_plane::listener::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// A new connection that sends nothing (no TLS hello, no HTTP/2 preface) within this
    /// is closed. Example: --handshake-timeout 5s
    #[arg(long, env = "CANOPY_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Serve Prometheus metrics over plain HTTP on this address: `GET /metrics` (identity
    /// provider refreshes, connected data planes, revision, Admin calls, Sync streams) and
    /// `GET /healthz`. Off by default; no authentication, so bind it to a private
    /// interface. Example: --metrics-listen 127.0.0.1:9091
    #[arg(long, env = "CANOPY_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

/// Zero means "off".
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// A secret from `file` (trimmed) or else from env var `var`; empty is an error.
fn secret(file: Option<&Path>, var: &str) -> anyhow::Result<Option<String>> {
    let (value, source) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var(var) {
            Ok(v) => (v, var.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    let value = value.trim();
    anyhow::ensure!(!value.is_empty(), "{source} is empty");
    Ok(Some(value.to_owned()))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler we still stop on Ctrl-C.
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ControlPlaneConfig::new(&args.data_dir);
    config.listen = args.listen;
    config.enterprise = args.enterprise;
    config.changelog_retain = args.changelog_retain;
    config.changelog_max_age = nonzero(args.changelog_max_age);
    config.audit_retention.max_age = nonzero(args.audit_retention);
    config.audit_retention.max_bytes = args.audit_max_bytes;
    config.refresh_interval = nonzero(args.refresh_interval);
    config.idp_refresh_interval = nonzero(args.idp_refresh_interval);
    config.idp_refetch_cooldown = args.idp_refetch_cooldown;
    config.public_url = args
        .public_url
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty());
    config.listener = canopy_control_plane::listener::ListenerLimits {
        max_connections: args.max_connections,
        handshake_timeout: args.handshake_timeout,
    };
    config.metrics_listen = args.metrics_listen;
    config.init_token = secret(args.init_token_file.as_deref(), "CANOPY_INIT_TOKEN")?;
    config.data_plane_token = secret(
        args.data_plane_token_file.as_deref(),
        "CANOPY_DATA_PLANE_TOKEN",
    )?;
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(canopy_control_plane::tls::TlsFiles { cert, key }),
        (None, None) => None,
        // clap's `requires` rejects these; kept so the rule holds without it.
        _ => anyhow::bail!("--tls-cert and --tls-key go together: pass both or neither"),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    canopy_control_plane::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in log files they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, no backtrace: this is what an operator reads.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
