//! `canopy-data-plane`: flags and environment → [`canopy_data_plane::serve`].

use anyhow::{bail, Context};
use canopy_data_plane::{serve, DataPlaneConfig};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Canopy data plane: serves MCP at /mcp, authorizes from memory, syncs from the control plane.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
Examples:
  CANOPY_DATA_PLANE_TOKEN=\"$(cat data-plane.token)\" canopy-data-plane \\
      --control-plane http://cp.internal:9090 --listen 0.0.0.0:8080
  canopy-data-plane --control-plane https://cp.internal:9090 --control-plane-ca-file ca.pem \\
      --data-plane-token-file /run/secrets/data-plane.token --listen 10.0.1.5:8080 \\
      --cache-file /var/lib/canopy-data-plane/state.cache --node-id dp-eu-1

The data-plane token is the one in the control plane's <data-dir>/data-plane.token.
Behind a load balancer, listen on the interface it reaches (e.g. --listen 10.0.1.5:8080, or
0.0.0.0:8080 for every interface); AI clients then use http://<balancer>/mcp."
)]
struct Args {
    /// gRPC URL of the control plane (https:// when it serves TLS).
    #[arg(
        long,
        env = "CANOPY_CONTROL_PLANE",
        default_value = "http://127.0.0.1:9090"
    )]
    control_plane: String,
    /// PEM file of the CA certificate(s) to trust for an https:// control plane (e.g. its
    /// CA, or its self-signed certificate). Default: the system's trust store and the
    /// webpki roots.
    #[arg(long, env = "CANOPY_CONTROL_PLANE_CA_FILE", value_name = "FILE")]
    control_plane_ca_file: Option<PathBuf>,
    /// Address to serve HTTP on.
    #[arg(long, env = "CANOPY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Identifier reported to the control plane (default: hostname-pid).
    #[arg(long, env = "CANOPY_NODE_ID")]
    node_id: Option<String>,
    /// Keep the applied state here (mode 0600, sealed with the key file `<FILE>.key` beside it)
    /// and serve from it when the control plane is down at start.
    #[arg(long, env = "CANOPY_CACHE_FILE")]
    cache_file: Option<PathBuf>,
    /// Refuse /mcp with 503 when the state is older than this (e.g. 5m). Default: serve while stale.
    #[arg(long, env = "CANOPY_MAX_STALENESS", value_parser = humantime::parse_duration)]
    max_staleness: Option<std::time::Duration>,
    /// File holding the data-plane token (else CANOPY_DATA_PLANE_TOKEN).
    #[arg(long, env = "CANOPY_DATA_PLANE_TOKEN_FILE")]
    data_plane_token_file: Option<PathBuf>,
    /// Largest accepted request body.
    #[arg(long, env = "CANOPY_MAX_BODY_BYTES", default_value_t = canopy_data_plane::app::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Most open client connections. Past it a new connection is still accepted, answered
    /// 503 at once and closed, before any request is read. Keep it well below the process's
    /// file-descriptor limit (`ulimit -n`), which upstream connections share.
    /// Example: --max-connections 2000 (with `ulimit -n 8192`)
    #[arg(long, env = "CANOPY_MAX_CONNECTIONS", default_value_t = canopy_data_plane::listen::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// How long a connection may take to send a complete request head, counted from when the
    /// data plane starts waiting for one: on a new connection, and for the next request on a
    /// kept-alive one (so it is also the idle keep-alive timeout; set it above a load
    /// balancer's idle timeout). Example: --header-read-timeout 75s
    #[arg(long, env = "CANOPY_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    header_read_timeout: std::time::Duration,
    /// How long a request body may take to arrive after its head (408 and the connection
    /// closed past it). Example: --body-read-timeout 10s
    #[arg(long, env = "CANOPY_BODY_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    body_read_timeout: std::time::Duration,
    /// Most bytes an upstream may send before the response to one forwarded call
    /// (notifications and other messages; each single message is bounded separately). Past
    /// it the call ends with a JSON-RPC error naming the server. SSE clients get the
    /// notifications as they arrive, JSON-only clients never (they are dropped), so this
    /// bounds the work per call, not a buffer. Example: --max-call-bytes 4194304
    #[arg(long, env = "CANOPY_MAX_CALL_BYTES", default_value_t = canopy_mcp::upstream::DEFAULT_MAX_CALL_BYTES)]
    max_call_bytes: usize,
    /// Most notifications an upstream may send before the response to one forwarded call
    /// (see --max-call-bytes).
    #[arg(long, env = "CANOPY_MAX_CALL_NOTIFICATIONS", default_value_t = canopy_mcp::upstream::DEFAULT_MAX_CALL_NOTIFICATIONS)]
    max_call_notifications: usize,
    /// Comma-separated Origin values allowed besides loopback origins.
    #[arg(long, env = "CANOPY_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// The origin AI clients reach this data plane at, e.g. https://mcp.example.com when it
    /// runs behind a load balancer (every data plane of a fleet gets the same one). OAuth
    /// resource identifiers and the protected-resource metadata are built from it, never
    /// from the Host header. Default: http://<listen address>, for development.
    #[arg(long, env = "CANOPY_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Record an audit event for every MCP request and ship it to the control plane
    /// (`canopy audit list`). Example: --audit false
    #[arg(long, env = "CANOPY_AUDIT", default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    audit: bool,
    /// Refuse MCP requests (503, JSON-RPC error) while audit events cannot be kept — the
    /// control plane is unreachable and the spool is full — instead of serving and counting
    /// the dropped events (fail closed). Serves again as soon as there is room.
    #[arg(long, env = "CANOPY_AUDIT_REQUIRED")]
    audit_required: bool,
    /// Where audit events wait while the control plane is unreachable (mode 0600; sent and
    /// removed once it acknowledges them, kept across restarts). Default: `<cache-file>.audit-spool`
    /// with --cache-file, else no spool (events wait in memory only).
    /// Example: --audit-spool-file /var/lib/canopy-data-plane/audit.spool
    #[arg(long, env = "CANOPY_AUDIT_SPOOL_FILE", value_name = "FILE")]
    audit_spool_file: Option<PathBuf>,
    /// Largest size of the audit spool file, in bytes; past it events are dropped (counted,
    /// and reported as a gap event) or, with --audit-required, requests are refused.
    #[arg(long, env = "CANOPY_AUDIT_SPOOL_MAX_BYTES", default_value_t = canopy_data_plane::audit::DEFAULT_SPOOL_MAX_BYTES)]
    audit_spool_max_bytes: u64,
    /// Longest arguments or result text an audit event keeps for servers whose audit payload
    /// setting is `full` (longer is cut and marked `…[cut]`).
    #[arg(long, env = "CANOPY_AUDIT_MAX_PAYLOAD_BYTES", default_value_t = canopy_data_plane::audit::DEFAULT_MAX_PAYLOAD_BYTES)]
    audit_max_payload_bytes: usize,
    /// Export OpenTelemetry traces over OTLP/gRPC to this collector: a SERVER span per MCP
    /// request (child of the caller's `traceparent` header or `params._meta.traceparent`)
    /// and a CLIENT span per upstream call, whose context the upstream receives in both
    /// places. Off when unset. Example: --otlp-endpoint http://127.0.0.1:4317
    #[arg(long, env = "CANOPY_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Share (0 to 1) of the traces this data plane starts that are exported; a caller's
    /// sampled traceparent is always followed (parent-based). A trace started here and not
    /// sampled is not passed to upstreams (a caller's unsampled one is, flag 00).
    /// Example: --otlp-sampling 0.01
    #[arg(long, env = "CANOPY_OTLP_SAMPLING", default_value_t = 1.0)]
    otlp_sampling: f64,
}

fn token(args: &Args) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("CANOPY_DATA_PLANE_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_owned());
        }
    }
    if let Some(f) = &args.data_plane_token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read data-plane token file {}", f.display()))?;
        if t.trim().is_empty() {
            bail!("data-plane token file {} is empty", f.display());
        }
        return Ok(t.trim().to_owned());
    }
    bail!("no data-plane token: set CANOPY_DATA_PLANE_TOKEN or pass --data-plane-token-file (the control plane writes one to <data-dir>/data-plane.token)")
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "data-plane".to_owned());
    format!("{host}-{}", std::process::id())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Errors print as one line on stderr (no backtrace) with a non-zero exit.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("canopy-data-plane: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canopy-data-plane: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in log files they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let token = token(&args)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut config = DataPlaneConfig::new(
        args.control_plane.clone(),
        args.node_id.clone().unwrap_or_else(default_node_id),
        token,
    );
    if let Some(ca) = &args.control_plane_ca_file {
        if !canopy_data_plane::tls::is_https(&args.control_plane) {
            bail!(
                "--control-plane-ca-file is set but --control-plane {} is not https://; use https://",
                args.control_plane
            );
        }
        config.control_plane_tls = Some(canopy_data_plane::tls::client_config(Some(ca), None)?);
    }
    let addr = listener.local_addr().context("listener address")?;
    // One plain line on stdout for scripts and test harnesses (logs go to stderr).
    println!("listening on {addr}");
    config.listen = Some(addr);
    config.cache_file = args.cache_file.clone();
    config.max_staleness = args.max_staleness;
    config.max_body_bytes = args.max_body_bytes;
    config.body_read_timeout = args.body_read_timeout;
    config.connections = canopy_data_plane::listen::ListenSettings {
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout,
    };
    config.call_limits = canopy_mcp::upstream::CallLimits {
        max_bytes: args.max_call_bytes,
        max_notifications: args.max_call_notifications,
        ..Default::default()
    };
    config.allowed_origins = args
        .allowed_origins
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    config.public_url = args.public_url.clone();
    config.audit = args.audit.then(|| canopy_data_plane::AuditOptions {
        required: args.audit_required,
        spool_file: args.audit_spool_file.clone(),
        spool_max_bytes: args.audit_spool_max_bytes,
        max_payload_bytes: args.audit_max_payload_bytes,
        ..Default::default()
    });
    config.otlp = args
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|endpoint| canopy_data_plane::OtlpOptions {
            endpoint: endpoint.to_owned(),
            sampling: args.otlp_sampling,
        });
    if args.audit_required && !args.audit {
        bail!("--audit-required needs the audit trail on (drop --audit false)");
    }
    serve(config, listener, shutdown_signal()).await?;
    Ok(())
}
