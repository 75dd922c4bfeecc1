//! `canopy-bench-bare`: the `tools/list` baseline — a bare axum handler that reads the
//! request body and answers fixed bytes (captured once from the data plane at bench start).

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-bare",
    about = "Bare axum handler returning fixed bytes"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7802")]
    listen: SocketAddr,
    /// The response body to return for every POST.
    #[arg(long)]
    body_file: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = Bytes::from(std::fs::read(&args.body_file)?);
    let app = Router::new().fallback(post(move |_req: Bytes| {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    }));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("canopy-bench-bare listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(canopy_bench::procs::terminated())
        .await?;
    Ok(())
}
