//! `canopy-bench-audit`: the control plane's audit trail.
//!
//! 1. Ingest: a control plane (in this process, on 127.0.0.1) and `--streams` concurrent
//!    `Audit.Ship` streams, each sending batches of `--batch` events and keeping
//!    `--in-flight` batches unacknowledged; events/s counts acknowledged (durable) events.
//! 2. Query: `--events` events written straight through the store API into a fresh data dir
//!    (or the one `--keep` left), spread evenly over `--spread`; then a control plane on that
//!    dir (timed until it serves) answers `ListAuditEvents` for one-hour and one-day windows
//!    (newest page, filters matching 1 in 1,000, 1 in 97, 1 in 20, and nothing). Each query
//!    runs `--repeat` times; the first run (the very first is the first query after the
//!    start), the median and the maximum are printed.
//!
//! Example (release build):
//!   cargo build --release -p canopy-bench --bin canopy-bench-audit
//!   taskset -c 0,1 target/release/canopy-bench-audit --events 10000000

use anyhow::Context;
use canopy_control_plane::audit::AuditStore;
use canopy_proto::v1 as pb;
use clap::Parser;
use pb::audit_client::AuditClient;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Work directory (emptied first, removed at the end).
    #[arg(long, default_value = "/tmp/canopy-bench-audit")]
    work: PathBuf,
    /// Concurrent Ship streams.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batches each stream sends.
    #[arg(long, default_value_t = 100)]
    batches: usize,
    /// Batches a stream sends ahead of its acks.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Events stored for the query figures (0 = skip them).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// The span of time those events cover, ending now.
    #[arg(long, default_value = "24h", value_parser = humantime_duration)]
    spread: Duration,
    /// Runs of each query.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Keep the populated query data dir at the end, and reuse one kept by an earlier run
    /// (same --events and --spread) instead of populating again.
    #[arg(long)]
    keep: bool,
    /// Skip the ingest figures.
    #[arg(long)]
    no_ingest: bool,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s}"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit in {s} (s, m, h, d)")),
    };
    Ok(Duration::from_secs(n * secs))
}

const DP_TOKEN: &str = "bench-data-plane-token-0123456789abcdef";

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A realistic request event: a tools/call by one of 1,000 clients on one of 20 servers.
fn event(n: u64, time: i64) -> pb::AuditEvent {
    let client = n % 1000;
    pb::AuditEvent {
        id: rand::random::<[u8; 16]>().to_vec(),
        time_unix_nanos: time,
        kind: Some(pb::audit_event::Kind::Request(pb::McpRequestEvent {
            data_plane: format!("dp-{}", n % 4),
            principal: Some(pb::AuditPrincipal {
                kind: Some(pb::audit_principal::Kind::McpClient(format!(
                    "client-{client:04}"
                ))),
            }),
            client_address: format!("10.0.{}.{}:{}", n % 200, n % 250, 40_000 + n % 20_000),
            endpoint: "/mcp".into(),
            protocol_version: "2025-06-18".into(),
            method: "tools/call".into(),
            server: format!("server-{:02}", n % 20),
            tool: format!("tool_{}", n % 50),
            outcome: if n.is_multiple_of(97) {
                pb::AuditOutcome::Denied
            } else {
                pb::AuditOutcome::Ok
            } as i32,
            http_status: 200,
            duration_ms: (n % 300) as f64 / 10.0,
            bytes_in: 180,
            bytes_out: 900,
            request_id: (n % 100).to_string(),
            trace_id: format!("{:032x}", u128::from(n) * 7919),
            span_id: format!("{:016x}", n * 31),
            ..Default::default()
        })),
    }
}

struct Cp {
    channel: Channel,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), canopy_control_plane::ControlPlaneError>>,
}

async fn start_cp(dir: &Path) -> anyhow::Result<Cp> {
    let mut config = canopy_control_plane::ControlPlaneConfig::new(dir);
    config.data_plane_token = Some(DP_TOKEN.into());
    config.refresh_interval = None;
    config.idp_refresh_interval = None;
    config.audit_retention.max_age = None;
    config.audit_retention.max_bytes = u64::MAX;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(canopy_control_plane::serve(config, listener, async move {
        let _ = stopped.await;
    }));
    let channel = loop {
        match Channel::from_shared(url.clone())?.connect().await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    // The socket accepts before the control plane has opened its data dir: wait until it
    // answers, so a query's time is the query's.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await?;
    Ok(Cp {
        channel,
        stop,
        task,
    })
}

impl Cp {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

fn authed<T>(msg: T) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {DP_TOKEN}").parse()?);
    Ok(r)
}

/// One Ship stream: `batches` batches of `size`, `in_flight` ahead of the acks.
/// The batches of one stream, built before the clock starts (the generator's CPU is not
/// the control plane's).
fn prepare(stream: usize, batches: usize, size: usize) -> Vec<pb::AuditBatch> {
    let now = now_nanos();
    (0..batches)
        .map(|b| {
            let base = (stream * batches + b) as u64 * size as u64;
            pb::AuditBatch {
                seq: b as u64,
                events: (0..size as u64).map(|i| event(base + i, now)).collect(),
                node_id: format!("bench-{stream}"),
            }
        })
        .collect()
}

async fn ship(
    channel: Channel,
    prepared: Vec<pb::AuditBatch>,
    in_flight: usize,
) -> anyhow::Result<u64> {
    let batches = prepared.len();
    let mut client = AuditClient::new(channel).max_encoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(in_flight.max(1));
    let mut acks = client
        .ship(authed(tokio_stream::wrappers::ReceiverStream::new(rx))?)
        .await?
        .into_inner();
    let sender = tokio::spawn(async move {
        for batch in prepared {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    let mut stored = 0u64;
    for _ in 0..batches {
        let ack = acks.message().await?.context("stream ended early")?;
        stored += u64::from(ack.stored);
    }
    sender.await?;
    Ok(stored)
}

async fn ingest(args: &Args, dir: &Path, streams: usize) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let cp = start_cp(dir).await?;
    let prepared: Vec<_> = (0..streams)
        .map(|s| prepare(s, args.batches, args.batch))
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|p| tokio::spawn(ship(cp.channel.clone(), p, args.in_flight)))
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest: {streams} stream(s) x {} batches x {} events: {total} events durable in {secs:.2} s = {:.0} events/s",
        args.batches,
        args.batch,
        total as f64 / secs
    );
    cp.stop().await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

async fn populate(args: &Args, dir: &Path) -> anyhow::Result<i64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let db = sled::Config::new().path(dir.join("db")).open()?;
    let store = AuditStore::open(&db)?;
    let end = now_nanos();
    let spread = i64::try_from(args.spread.as_nanos())?;
    let step = spread / i64::try_from(args.events.max(1))?;
    let started = Instant::now();
    // Chunks of 50,000, four at a time: the store writes one while it flushes another.
    const CHUNK: u64 = 50_000;
    const AHEAD: usize = 4;
    let mut pending = std::collections::VecDeque::new();
    let mut n = 0u64;
    while n < args.events {
        let count = CHUNK.min(args.events - n);
        let events = (n..n + count)
            .map(|i| event(i, end - spread + i as i64 * step))
            .collect();
        let store = store.clone();
        pending.push_back(tokio::spawn(async move { store.append(events).await }));
        if pending.len() >= AHEAD {
            if let Some(t) = pending.pop_front() {
                t.await??;
            }
        }
        n += count;
    }
    for t in pending {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "populate: {} events over {:?} through the store API in {secs:.1} s ({:.0} events/s); {:.2} GiB counted",
        args.events,
        args.spread,
        args.events as f64 / secs,
        store.stored_bytes() as f64 / (1u64 << 30) as f64
    );
    store.close().await;
    db.flush_async().await?;
    drop(db);
    Ok(end)
}

async fn query(
    client: &mut AuditClient<Channel>,
    name: &str,
    req: pb::ListAuditEventsRequest,
    repeat: usize,
) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(repeat);
    let mut got = 0;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let page = client.list_audit_events(req.clone()).await?.into_inner();
        times.push(started.elapsed());
        got = page.events.len();
    }
    let first = times[0];
    times.sort();
    println!(
        "query {name}: {got} events, first {:.1} ms, median {:.1} ms, max {:.1} ms ({} runs)",
        first.as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
    Ok(())
}

async fn queries(args: &Args, dir: &Path, end: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let cp = start_cp(dir).await?;
    println!(
        "control plane on the populated dir answering after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut client = AuditClient::new(cp.channel.clone()).max_decoding_message_size(64 << 20);
    let hour = 3_600_000_000_000i64;
    // The hour (day) before the newest event, and one in the middle of the spread.
    let spread = i64::try_from(args.spread.as_nanos())?;
    for (label, until, span) in [
        ("last hour", end + 1, hour),
        ("middle hour", end - spread / 2, hour),
        ("last day", end + 1, 24 * hour),
        ("middle day", end - spread / 2, 24 * hour),
    ] {
        let window = |filter: pb::AuditFilter, limit: u32| pb::ListAuditEventsRequest {
            filter: Some(filter),
            since_unix_nanos: until - span,
            until_unix_nanos: until,
            limit,
            cursor: String::new(),
        };
        query(
            &mut client,
            &format!("{label}, newest 100"),
            window(pb::AuditFilter::default(), 100),
            args.repeat,
        )
        .await?;
        query(
            &mut client,
            &format!("{label}, --client client-0042 (1 in 1000), limit 100"),
            window(
                pb::AuditFilter {
                    client: "client-0042".into(),
                    ..Default::default()
                },
                100,
            ),
            args.repeat,
        )
        .await?;
        query(
            &mut client,
            &format!("{label}, --outcome denied (1 in 97), limit 10000"),
            window(
                pb::AuditFilter {
                    outcome: "denied".into(),
                    ..Default::default()
                },
                10_000,
            ),
            args.repeat,
        )
        .await?;
        query(
            &mut client,
            &format!("{label}, --server server-03 --tool tool_13 (1 in 100), limit 1000"),
            window(
                pb::AuditFilter {
                    server: "server-03".into(),
                    tool: "tool_13".into(),
                    ..Default::default()
                },
                1000,
            ),
            args.repeat,
        )
        .await?;
        query(
            &mut client,
            &format!("{label}, --client nobody (matches nothing)"),
            window(
                pb::AuditFilter {
                    client: "nobody".into(),
                    ..Default::default()
                },
                100,
            ),
            args.repeat,
        )
        .await?;
    }
    cp.stop().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work)?;
    let ingest_dir = args.work.join("ingest");
    if !args.no_ingest {
        ingest(&args, &ingest_dir, 1).await?;
        ingest(&args, &ingest_dir, args.streams).await?;
    }
    if args.events > 0 {
        let dir = args.work.join("query");
        // A kept dir records its own end time (the populate's "now").
        let end_file = args.work.join(format!(
            "query-end-{}-{}",
            args.events,
            args.spread.as_secs()
        ));
        let kept = match std::fs::read_to_string(&end_file) {
            Ok(s) if args.keep => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let end = match kept {
            Some(end) => {
                println!("populate: reusing the kept data dir {}", dir.display());
                end
            }
            None => {
                let _ = std::fs::remove_file(&end_file);
                let end = populate(&args, &dir).await?;
                if args.keep {
                    std::fs::write(&end_file, end.to_string())?;
                }
                end
            }
        };
        queries(&args, &dir, end).await?;
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.work);
    }
    Ok(())
}
