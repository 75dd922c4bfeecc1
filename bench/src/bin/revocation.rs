//! `canopy-bench-revocation`: time from the start of a `DeleteMcpClient` RPC until every
//! data plane rejects the deleted client's token.
//!
//! Per trial: create a client with a fresh token, wait until every data plane accepts it
//! (authenticated `ping` → 200), then start the delete RPC and, concurrently, poll every
//! data plane with the token until it answers 401. The trial's figure is the slowest data
//! plane's first 401. Prints one JSON document on stdout.

use canopy_bench::admin::Admin;
use canopy_bench::fixture;
use canopy_bench::stats::percentile;
use canopy_proto::v1 as pb;
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-revocation",
    about = "Revocation latency across data planes"
)]
struct Args {
    /// gRPC URL of the control plane.
    #[arg(long)]
    control_plane: String,
    #[arg(long, default_value = fixture::ADMIN_TOKEN)]
    admin_token: String,
    /// Base URL of a data plane (repeatable), e.g. http://127.0.0.1:8080.
    #[arg(long = "data-plane", required = true)]
    data_planes: Vec<String>,
    #[arg(long, default_value_t = 50)]
    trials: usize,
    /// Give up on one trial after this long.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

#[derive(serde::Serialize)]
struct Report {
    data_planes: usize,
    trials: usize,
    /// Delete RPC start → every data plane answers 401 (ms).
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Delete RPC round trip (it returns once every data plane acknowledged).
    rpc_p50_ms: f64,
    rpc_p99_ms: f64,
    timeouts: usize,
    samples_ms: Vec<f64>,
}

async fn ping(http: &reqwest::Client, base: &str, token: &str) -> Option<u16> {
    http.post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .bearer_auth(token)
        .body(fixture::request_body("ping", None))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Polls until `base` answers `want`; returns when (relative to `t0`).
async fn until(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    want: u16,
    t0: Instant,
    timeout: Duration,
) -> Option<Duration> {
    while t0.elapsed() < timeout {
        if ping(http, base, token).await == Some(want) {
            return Some(t0.elapsed());
        }
    }
    None
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let timeout = Duration::from_millis(a.timeout_ms);
    let admin = Admin::connect(&a.control_plane, &a.admin_token).await?;
    // One keep-alive connection per data plane, warmed by the "accepted" polls.
    let clients: Vec<reqwest::Client> = a
        .data_planes
        .iter()
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .http1_only()
                .build()
        })
        .collect::<Result<_, _>>()?;
    let run = std::process::id();
    let mut samples = Vec::new();
    let mut rpc = Vec::new();
    let mut timeouts = 0;
    for trial in 0..a.trials {
        let name = format!("revoke-{run}-{trial}");
        let token = format!("canopy_mcp_revoke_{run}_{trial:06}_tok");
        admin
            .client()
            .create_mcp_client(admin.req(pb::CreateMcpClientRequest {
                name: name.clone(),
                description: String::new(),
                allowed_servers: vec![fixture::SERVER.into()],
                access_token: token.clone(),
            }))
            .await?;
        let t = Instant::now();
        for (http, base) in clients.iter().zip(&a.data_planes) {
            if until(http, base, &token, 200, t, timeout).await.is_none() {
                anyhow::bail!("{base} never accepted the new client's token");
            }
        }
        let t0 = Instant::now();
        let mut del = admin.client();
        let req = admin.req(pb::DeleteMcpClientRequest {
            name,
            wait: Some(pb::WaitOptions { wait_ms: 5000 }),
        });
        let rpc_task = tokio::spawn(async move {
            let r = del.delete_mcp_client(req).await;
            (t0.elapsed(), r.map(|_| ()))
        });
        let pollers: Vec<_> = clients
            .iter()
            .zip(&a.data_planes)
            .map(|(http, base)| {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                tokio::spawn(async move { until(&http, &base, &token, 401, t0, timeout).await })
            })
            .collect();
        let mut worst = Duration::ZERO;
        let mut lost = false;
        for p in pollers {
            match p.await? {
                Some(d) => worst = worst.max(d),
                None => lost = true,
            }
        }
        let (rpc_time, rpc_result) = rpc_task.await?;
        rpc_result?;
        rpc.push(rpc_time.as_secs_f64() * 1000.0);
        if lost {
            timeouts += 1;
        } else {
            samples.push(worst.as_secs_f64() * 1000.0);
        }
    }
    let report = Report {
        data_planes: a.data_planes.len(),
        trials: a.trials,
        p50_ms: percentile(&samples, 50.0),
        p99_ms: percentile(&samples, 99.0),
        max_ms: percentile(&samples, 100.0),
        rpc_p50_ms: percentile(&rpc, 50.0),
        rpc_p99_ms: percentile(&rpc, 99.0),
        timeouts,
        samples_ms: samples,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
