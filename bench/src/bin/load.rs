//! `canopy-bench-load`: the built-in load loop (see `canopy_bench::load`); prints one JSON
//! `LoadResult` on stdout. Used when `oha` is not installed.

use canopy_bench::load::{self, LoadSpec};
use clap::Parser;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-load",
    about = "Tiny HTTP POST load loop (oha stand-in)"
)]
struct Args {
    url: String,
    /// Request body.
    #[arg(short = 'd', long)]
    body: String,
    /// `Name: value` header (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds to run (bounded: at most 600).
    #[arg(short = 'z', long, default_value_t = 1.0)]
    seconds: f64,
    /// Open loop at this many requests per second.
    #[arg(short = 'q', long)]
    rate: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let headers = a
        .headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let r = load::run(LoadSpec {
        url: a.url,
        body: a.body,
        headers,
        concurrency: a.concurrency,
        duration: Duration::from_secs_f64(a.seconds.clamp(0.05, 600.0)),
        rate: a.rate,
    })
    .await?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
