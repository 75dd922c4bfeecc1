//! `canopy-bench-upstream`: the bench upstream MCP server (see `canopy_bench::upstream`).

use clap::Parser;
use std::net::SocketAddr;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-upstream",
    about = "Minimal stateless MCP server for benchmarks"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7801")]
    listen: SocketAddr,
    /// Answer `server/discover` with -32601, so clients use the `initialize` handshake.
    #[arg(long)]
    handshake_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "canopy-bench-upstream listening on {}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        canopy_bench::upstream::router(args.handshake_only),
    )
    .with_graceful_shutdown(canopy_bench::procs::terminated())
    .await?;
    Ok(())
}
