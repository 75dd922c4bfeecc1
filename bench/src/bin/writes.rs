//! `canopy-bench-writes`: durable control-plane writes per second — `CreateMcpClient`
//! from many concurrent callers for a fixed time. Prints one JSON document on stdout.

use canopy_bench::admin::Admin;
use canopy_bench::fixture;
use canopy_bench::stats::percentile;
use canopy_proto::v1 as pb;
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-writes",
    about = "Concurrent CreateMcpClient throughput"
)]
struct Args {
    #[arg(long)]
    control_plane: String,
    #[arg(long, default_value = fixture::ADMIN_TOKEN)]
    admin_token: String,
    #[arg(short = 'c', long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run (at most 600).
    #[arg(short = 'z', long, default_value_t = 10.0)]
    seconds: f64,
    /// Client name prefix (must be unique per run).
    #[arg(long, default_value = "w")]
    prefix: String,
}

#[derive(serde::Serialize)]
struct Report {
    concurrency: usize,
    writes: u64,
    errors: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let admin = Admin::connect(&a.control_plane, &a.admin_token).await?;
    let duration = Duration::from_secs_f64(a.seconds.clamp(0.05, 600.0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.concurrency.max(1) {
        let admin = admin.clone();
        let prefix = a.prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut client = admin.client();
            let mut i = 0u64;
            while start.elapsed() < duration {
                let t = Instant::now();
                let r = client
                    .create_mcp_client(admin.req(pb::CreateMcpClientRequest {
                        name: format!("{prefix}-{w}-{i}"),
                        description: String::new(),
                        allowed_servers: vec![fixture::SERVER.into()],
                        access_token: String::new(),
                        ..Default::default()
                    }))
                    .await;
                i += 1;
                match r {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let report = Report {
        concurrency: a.concurrency,
        writes: lat.len() as u64,
        errors,
        per_sec: lat.len() as f64 / elapsed,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
