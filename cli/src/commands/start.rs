//! `canopy start`: a control plane and one data plane in one process, for a quick start.
//!
//! The data plane still syncs from the control plane over gRPC on the loopback listener —
//! the same code path a remote data plane uses — so what works here works in a fleet.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::CliError;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  canopy start\n  canopy start --enterprise --data-dir /var/lib/canopy\n\n\
In enterprise mode, run `canopy init-server` next to create the first admin.")]
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
}

fn read_secret_file(path: &PathBuf, what: &str) -> Result<String, CliError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| CliError::Other(format!("cannot read {what} file {}: {e}", path.display())))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(CliError::Other(format!("{what} file {} is empty", path.display())));
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

    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        CliError::Other(format!("cannot create data dir {}: {e}", args.data_dir.display()))
    })?;
    let init_token = match (&args.init_token_file, std::env::var("CANOPY_INIT_TOKEN")) {
        (Some(path), _) => Some(read_secret_file(path, "init token")?),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        _ => None,
    };
    let data_plane_token = std::env::var("CANOPY_DATA_PLANE_TOKEN").ok().filter(|t| !t.trim().is_empty());
    let data_plane_token =
        canopy_control_plane::data_plane_token::resolve(&args.data_dir, data_plane_token.as_deref())
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

    let mut cp_config = canopy_control_plane::ControlPlaneConfig::new(&args.data_dir);
    cp_config.listen = grpc_addr;
    cp_config.enterprise = args.enterprise;
    cp_config.init_token = init_token;
    cp_config.data_plane_token = Some(data_plane_token.clone());
    let control_plane = tokio::spawn(canopy_control_plane::serve(cp_config, grpc, stopped(stop_rx.clone())));

    let mut dp_config =
        canopy_data_plane::DataPlaneConfig::new(format!("http://{grpc_addr}"), "local", data_plane_token);
    dp_config.cache_file = args.cache_file;
    let data_plane = tokio::spawn(canopy_data_plane::serve(dp_config, http, stopped(stop_rx)));

    eprintln!(
        "canopy started in {} mode: MCP endpoint http://{}/mcp, registry http://{grpc_addr}",
        if args.enterprise { "enterprise" } else { "development" },
        args.http_listen,
    );
    if args.enterprise {
        eprintln!("next: canopy --registry http://{grpc_addr} init-server");
    }

    // Whichever ends first (a signal, or a component failing) stops the other.
    let mut control_plane = control_plane;
    let mut data_plane = data_plane;
    let (first, other_is_cp) = tokio::select! {
        _ = shutdown_signal() => (None, None),
        r = &mut control_plane => (Some(join_result(r, "control plane")), Some(false)),
        r = &mut data_plane => (Some(join_result(r, "data plane")), Some(true)),
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
