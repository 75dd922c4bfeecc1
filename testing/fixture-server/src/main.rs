//! `canopy-fixture-server`: an upstream MCP server for Canopy's tests, built on the official Rust SDK
//! (rmcp), over stdio or streamable HTTP.
//!
//! Not a product: it exists so tests exercise the gateway against a real, independent MCP
//! implementation. Tools: `echo`, `add`, `slow`, `fail`, `progress`, `auth_header`, `tool_<i>`;
//! prompt: `greeting`. Logs go to stderr only (stdout is the protocol channel over stdio, and
//! carries exactly one `listening on <addr>` line over HTTP).

mod handler;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use clap::{Parser, ValueEnum};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use handler::Fixture;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Stdio,
    Http,
}

#[derive(Debug, Parser)]
#[command(
    name = "canopy-fixture-server",
    about = "Test upstream MCP server (rmcp)"
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
    #[arg(long, default_value = "canopy-fixture")]
    name: String,
    /// HTTP only: answer 401 unless the request has `Authorization: Bearer <TOKEN>`.
    #[arg(long, value_name = "TOKEN")]
    require_bearer: Option<String>,
    /// Add tools `tool_0` .. `tool_<N-1>` (for pagination and large-catalogue tests).
    #[arg(long, default_value_t = 0)]
    extra_tools: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // stderr only: over stdio, anything else on stdout would corrupt the protocol stream.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let fixture = Fixture::new(args.name.clone(), args.extra_tools);
    match args.transport {
        Transport::Stdio => serve_stdio(fixture).await,
        Transport::Http => serve_http(fixture, &args).await,
    }
}

async fn serve_stdio(fixture: Fixture) -> anyhow::Result<()> {
    let service = fixture
        .serve(rmcp::transport::stdio())
        .await
        .context("stdio handshake failed")?;
    // Returns when the client closes stdin.
    service.waiting().await.context("stdio service failed")?;
    Ok(())
}

async fn serve_http(fixture: Fixture, args: &Args) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
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
    let service: StreamableHttpService<Fixture, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(fixture.clone()), Default::default(), config);

    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(token) = &args.require_bearer {
        // Outermost layer: an unauthorized request never reaches the MCP service.
        let expected: Arc<str> = format!("Bearer {token}").into();
        router = router.layer(middleware::from_fn_with_state(expected, require_bearer));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot bind {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    // Tests read this exact line to learn the port; flush because stdout is a pipe there.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);
    tracing::info!(%addr, stateless = args.stateless, "fixture server listening");

    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutdown.cancel();
        })
        .await
        .context("HTTP server failed")?;
    Ok(())
}

async fn require_bearer(
    State(expected): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let ok = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if ok {
        next.run(request).await
    } else {
        (
            http::StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token",
        )
            .into_response()
    }
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
