//! `canopy-fixture-server`: an upstream MCP server for Canopy's tests, built on the official Rust SDK
//! (rmcp), over stdio or streamable HTTP.
//!
//! Not a product: it exists so tests exercise the gateway against a real, independent MCP
//! implementation. Tools: `echo`, `add`, `slow`, `fail`, `progress`, `auth_header`, `tool_<i>`;
//! prompt: `greeting`. Logs go to stderr only (stdout is the protocol channel over stdio, and
//! carries exactly one `listening on <addr>` line over HTTP).

mod handler;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use canopy_fixture_server::serve::{self, ServeArgs, Transport};
use handler::Fixture;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-fixture-server",
    about = "Test upstream MCP server (rmcp)"
)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// Server name announced in serverInfo.
    #[arg(long, default_value = "canopy-fixture")]
    name: String,
    /// HTTP only: answer 401 unless the request has `Authorization: Bearer <TOKEN>`.
    #[arg(long, value_name = "TOKEN")]
    require_bearer: Option<String>,
    /// Add tools `tool_0` .. `tool_<N-1>` (for pagination and large-catalogue tests).
    #[arg(long, default_value_t = 0)]
    extra_tools: usize,
    /// Adds the `trace_context` tool (the traceparent header and `_meta.traceparent` a call
    /// arrived with), for the tracing tests.
    #[arg(long)]
    trace_tool: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    serve::init_tracing("info");

    let fixture =
        Fixture::new(args.name.clone(), args.extra_tools).with_trace_tool(args.trace_tool);
    match args.serve.transport {
        Transport::Stdio => serve::serve_stdio(fixture).await,
        Transport::Http => serve_http(fixture, &args).await,
    }
}

async fn serve_http(fixture: Fixture, args: &Args) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut router = serve::mcp_router(fixture, &args.serve, &shutdown);
    if let Some(token) = &args.require_bearer {
        // Outermost layer: an unauthorized request never reaches the MCP service.
        let expected: Arc<str> = format!("Bearer {token}").into();
        router = router.layer(middleware::from_fn_with_state(expected, require_bearer));
    }

    let (listener, addr) = serve::bind_and_announce(args.serve.listen).await?;
    tracing::info!(%addr, stateless = args.serve.stateless, "fixture server listening");
    serve::serve_until_signal(listener, router, shutdown).await
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
