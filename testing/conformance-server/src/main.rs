//! `canopy-conformance-server`: an upstream MCP server, built on the official Rust SDK (rmcp),
//! that implements the fixture tools, prompts and resources of the official MCP conformance
//! suite (`@modelcontextprotocol/conformance`), so the suite's content scenarios can run against
//! it directly (the parity baseline) and through Canopy's `/servers/<name>/mcp`.
//!
//! Not a product. Logs go to stderr only; over HTTP stdout carries exactly one
//! `listening on <addr>` line.

mod handler;

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use handler::Conformance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Stdio,
    Http,
}

#[derive(Debug, Parser)]
#[command(
    name = "canopy-conformance-server",
    about = "MCP conformance-suite fixture server (rmcp)"
)]
struct Args {
    /// Transport to serve.
    #[arg(long, value_enum, default_value = "http")]
    transport: Transport,
    /// HTTP listen address; port 0 picks a free one (printed as `listening on <addr>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Stateless streamable HTTP with JSON responses (no sessions).
    #[arg(long)]
    stateless: bool,
    /// Server name announced in serverInfo.
    #[arg(long, default_value = "mcp-conformance-test-server")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let server = Conformance::new(args.name.clone());
    match args.transport {
        Transport::Stdio => {
            let service = server
                .serve(rmcp::transport::stdio())
                .await
                .context("stdio handshake failed")?;
            service.waiting().await.context("stdio service failed")?;
            Ok(())
        }
        Transport::Http => serve_http(server, &args).await,
    }
}

async fn serve_http(server: Conformance, args: &Args) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
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
    let service: StreamableHttpService<Conformance, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
    let router = axum::Router::new().nest_service("/mcp", service);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot bind {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);

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
