//! `canopy-conformance-server`: an upstream MCP server, built on the official Rust SDK (rmcp),
//! that implements the fixture tools, prompts and resources of the official MCP conformance
//! suite (`@modelcontextprotocol/conformance`), so the suite's content scenarios can run against
//! it directly (the parity baseline) and through Canopy's `/servers/<name>/mcp`.
//!
//! Not a product. Logs go to stderr only; over HTTP stdout carries exactly one
//! `listening on <addr>` line.

mod handler;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use canopy_fixture_server::serve::{self, ServeArgs, Transport};
use handler::Conformance;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-conformance-server",
    about = "MCP conformance-suite fixture server (rmcp)"
)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// Server name announced in serverInfo.
    #[arg(long, default_value = "mcp-conformance-test-server")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    serve::init_tracing("warn");

    let server = Conformance::new(args.name.clone());
    match args.serve.transport {
        Transport::Stdio => serve::serve_stdio(server).await,
        Transport::Http => {
            let shutdown = CancellationToken::new();
            let router = serve::mcp_router(server, &args.serve, &shutdown);
            let (listener, _addr) = serve::bind_and_announce(args.serve.listen).await?;
            serve::serve_until_signal(listener, router, shutdown).await
        }
    }
}
