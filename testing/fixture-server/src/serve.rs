//! Common flags, logging and the stdio / streamable HTTP serving loop of the rmcp test upstreams.
//! Logs go to stderr only: stdout is the protocol channel over stdio, and carries exactly one
//! `listening on <addr>` line over HTTP.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Stdio,
    Http,
}

/// The flags every test upstream takes (flattened into each binary's own `Args`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Transport to serve.
    #[arg(long, value_enum, default_value = "http")]
    pub transport: Transport,
    /// HTTP listen address; port 0 picks a free one (printed as `listening on <addr>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Stateless streamable HTTP with JSON responses (no sessions).
    #[arg(long)]
    pub stateless: bool,
}

/// Logs to stderr only (over stdio, anything else on stdout would corrupt the protocol stream),
/// filtered by `RUST_LOG` or else `default_filter`.
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
}

/// Serves `server` over stdin/stdout; returns when the client closes stdin.
pub async fn serve_stdio<S>(server: S) -> anyhow::Result<()>
where
    S: ServerHandler,
{
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .context("stdio handshake failed")?;
    service.waiting().await.context("stdio service failed")?;
    Ok(())
}

/// An axum router with `server` at `/mcp` (streamable HTTP, stateless per `args`), whose sessions
/// end when `shutdown` is cancelled.
pub fn mcp_router<S>(server: S, args: &ServeArgs, shutdown: &CancellationToken) -> axum::Router
where
    S: ServerHandler + Clone + Sync,
{
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        // Tests always connect over loopback by IP; rmcp's default already allows it, but the
        // listen address may be any loopback IP (127.0.0.2, ...), so allow that one explicitly.
        .with_allowed_hosts([
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            args.listen.ip().to_string(),
        ]);
    if args.stateless {
        config = config
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None);
    }
    let service: StreamableHttpService<S, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
    axum::Router::new().nest_service("/mcp", service)
}

/// Binds `listen` and prints the one `listening on <addr>` line tests read to learn the port
/// (flushed, because stdout is a pipe there).
pub async fn bind_and_announce(listen: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind {listen}"))?;
    let addr = listener.local_addr().context("no local address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);
    Ok((listener, addr))
}

/// Serves `router` until SIGINT or SIGTERM, then cancels `shutdown` (ending the MCP sessions).
pub async fn serve_until_signal(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutdown.cancel();
        })
        .await
        .context("HTTP server failed")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
