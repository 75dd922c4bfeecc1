//! `canopy-bench-revocation`: time from the start of a `DeleteMcpClient` RPC (or, with
//! `--subjects`, a `RevokeSubject` RPC) until every data plane rejects the token.
//!
//! Per trial: create a client with a fresh token (or mint a JWT for a fresh subject of a
//! loopback identity provider registered at start), wait until every data plane accepts it
//! (authenticated `ping` → 200, so a JWT is verified and cached), then start the delete
//! (revoke) RPC and, concurrently, poll the data planes with the token until each answered
//! 401. The trial's figure is the slowest data plane's first 401. Prints one JSON document
//! on stdout.
//!
//! Polling is paced: one round pings every data plane that has not rejected yet, all at
//! once, then pauses `--pause-us`. A 401 counts at the end of its round (never early).
//! Unpaced per-data-plane loops kept 8 data planes' shared core ~90% busy answering pings,
//! so the figure measured the pollers' own queueing more than the revocation.

use canopy_bench::admin::Admin;
use canopy_bench::fixture;
use canopy_bench::idp::LoopbackIdp;
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
    /// Pause between polling rounds (µs); also the figure's resolution.
    #[arg(long, default_value_t = 100)]
    pause_us: u64,
    /// Revoke subjects of a loopback identity provider (JWTs) instead of deleting clients.
    #[arg(long)]
    subjects: bool,
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

/// Polls rounds (see the module doc) until every data plane answered `want`; returns when the
/// last one did (relative to `t0`).
async fn until_all(
    clients: &[reqwest::Client],
    bases: &[String],
    token: &str,
    want: u16,
    t0: Instant,
    timeout: Duration,
    pause: Duration,
) -> Option<Duration> {
    let mut pending: Vec<usize> = (0..bases.len()).collect();
    while t0.elapsed() < timeout {
        let answers =
            futures::future::join_all(pending.iter().map(|&i| ping(&clients[i], &bases[i], token)))
                .await;
        let now = t0.elapsed();
        let mut still = Vec::with_capacity(pending.len());
        for (&i, answer) in pending.iter().zip(answers) {
            if answer != Some(want) {
                still.push(i);
            }
        }
        if still.is_empty() {
            return Some(now);
        }
        pending = still;
        // tokio's timer has 1 ms granularity: spin (on the load generator's core) instead.
        let resume = Instant::now() + pause;
        while Instant::now() < resume {
            tokio::task::yield_now().await;
        }
    }
    None
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
    let pause = Duration::from_micros(a.pause_us);
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
    let idp = if a.subjects {
        let idp = LoopbackIdp::start().await?;
        idp.register(&admin, &format!("revoke-idp-{run}")).await?;
        Some(idp)
    } else {
        None
    };
    let mut samples = Vec::new();
    let mut rpc = Vec::new();
    let mut timeouts = 0;
    for trial in 0..a.trials {
        let name = format!("revoke-{run}-{trial}");
        let token = match &idp {
            Some(idp) => idp.mint(&name, &a.data_planes)?,
            None => {
                let token = format!("canopy_mcp_revoke_{run}_{trial:06}_tok");
                admin
                    .client()
                    .create_mcp_client(admin.req(pb::CreateMcpClientRequest {
                        name: name.clone(),
                        description: String::new(),
                        allowed_servers: vec![fixture::SERVER.into()],
                        access_token: token.clone(),
                        ..Default::default()
                    }))
                    .await?;
                token
            }
        };
        let t = Instant::now();
        for (http, base) in clients.iter().zip(&a.data_planes) {
            if until(http, base, &token, 200, t, timeout).await.is_none() {
                anyhow::bail!("{base} never accepted the new client's token");
            }
        }
        let t0 = Instant::now();
        let mut del = admin.client();
        let wait = || Some(pb::WaitOptions { wait_ms: 5000 });
        let revoke = idp.as_ref().map(|_| {
            admin.req(pb::RevokeSubjectRequest {
                idp: format!("revoke-idp-{run}"),
                subject: name.clone(),
                wait: wait(),
            })
        });
        let delete = admin.req(pb::DeleteMcpClientRequest { name, wait: wait() });
        let rpc_task = tokio::spawn(async move {
            let r = match revoke {
                Some(req) => del.revoke_subject(req).await.map(|_| ()),
                None => del.delete_mcp_client(delete).await.map(|_| ()),
            };
            (t0.elapsed(), r)
        });
        let rejected = until_all(&clients, &a.data_planes, &token, 401, t0, timeout, pause).await;
        let (rpc_time, rpc_result) = rpc_task.await?;
        rpc_result?;
        rpc.push(rpc_time.as_secs_f64() * 1000.0);
        match rejected {
            Some(worst) => samples.push(worst.as_secs_f64() * 1000.0),
            None => timeouts += 1,
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
