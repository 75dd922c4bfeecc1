//! In-process work: pre-populating data dirs through the control plane's store library,
//! the auth-lookup figure (token → client through the data plane's state), and reading
//! criterion's estimates.

use anyhow::Context;
use canopy_control_plane::store::{Mode, Mutation, Store, StoreOptions};
use canopy_core::TokenHasher;
use canopy_data_plane::state::{PrehashedHasher, SnapshotBuilder, State};
use canopy_proto::v1 as pb;
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixture;

/// Creates an enterprise data dir with the bench admin and `n` MCP clients
/// (`bench-00000000` …, token [`fixture::client_token`], allowed `bench`), through the
/// store's public API (one durable mutation each, group-committed).
pub async fn populate(dir: &Path, n: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let store = Store::open(StoreOptions::new(dir, Mode::Enterprise))
        .await
        .with_context(|| format!("opening {}", dir.display()))?;
    let hasher = store.hasher().clone();
    store
        .apply(Mutation::InitAdmin {
            name: fixture::ADMIN.into(),
            token: hasher.hash(fixture::ADMIN_TOKEN),
        })
        .await?;
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            let token = hasher.hash(&fixture::client_token(i));
            async move {
                store
                    .apply(Mutation::CreateClient {
                        name: fixture::client_name(i),
                        description: String::new(),
                        allowed: vec![fixture::SERVER.into()],
                        token,
                    })
                    .await
            }
        })
        .buffer_unordered(2048)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await?;
    store.flush().await?;
    store.close().await;
    Ok(start.elapsed())
}

const KEY: [u8; 32] = [42; 32];

/// Client counts of the criterion benches: 1k and 1M, or 1k and `CANOPY_BENCH_LARGE`.
pub fn bench_sizes() -> anyhow::Result<Vec<u64>> {
    Ok(match std::env::var("CANOPY_BENCH_LARGE") {
        Ok(v) => vec![
            1_000,
            v.parse().context("CANOPY_BENCH_LARGE is not a number")?,
        ],
        Err(_) => vec![1_000, 1_000_000],
    })
}

/// A data plane state holding `n` clients (built the way a snapshot is applied).
pub fn state_with(n: u64) -> anyhow::Result<State> {
    let state = State::new(Arc::new(canopy_data_plane::metrics::Metrics::default()));
    install(&state, n, Vec::new())?;
    Ok(state)
}

/// Applies a snapshot of `n` bench clients and `servers` to `state`, in chunks.
pub fn install(state: &State, n: u64, servers: Vec<pb::UpstreamState>) -> anyhow::Result<()> {
    let hasher = TokenHasher::new(KEY);
    let mut servers = Some(servers);
    let mut chunk = |first: bool, last: bool, range: std::ops::Range<u64>| pb::SnapshotChunk {
        revision: 1,
        first,
        last,
        mode: pb::Mode::Enterprise as i32,
        token_hash_key: if first { KEY.to_vec() } else { Vec::new() },
        clients: range
            .map(|i| pb::ClientState {
                name: fixture::client_name(i),
                tokens: vec![pb::TokenHash {
                    hash: hasher.hash(&fixture::client_token(i)).0.to_vec(),
                    expires_at_ms: 0,
                }],
                allowed: vec![fixture::SERVER.into()],
            })
            .collect(),
        servers: if last {
            servers.take().unwrap_or_default()
        } else {
            Vec::new()
        },
        total_clients: if first { n } else { 0 },
        encoded_clients: Vec::new(),
        ..Default::default()
    };
    const STEP: u64 = 50_000;
    let first = chunk(true, n <= STEP, 0..n.min(STEP));
    let mut b = SnapshotBuilder::new(&first)?;
    b.add(first)?;
    let mut at = STEP;
    while at < n {
        let end = (at + STEP).min(n);
        b.add(chunk(false, end == n, at..end))?;
        at = end;
    }
    state.finish_snapshot(b)?;
    Ok(())
}

/// The bench upstream as the control plane would stream it, at `url`.
pub fn bench_server(url: &str) -> anyhow::Result<pb::UpstreamState> {
    let tools: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_str(&fixture::tools_array())?;
    Ok(pb::UpstreamState {
        spec: Some(pb::ServerSpec {
            name: fixture::SERVER.into(),
            transport: pb::Transport::StreamableHttp as i32,
            url: url.into(),
            ..Default::default()
        }),
        tools_json: tools.iter().map(|t| t.get().to_owned()).collect(),
        prompts_json: Vec::new(),
        protocol_version: fixture::MODERN.into(),
    })
}

/// Mean ns per auth decision (keyed hash of the bearer token + index lookup), over
/// `samples` tokens of clients picked at random among `n`.
pub fn auth_lookup_ns(state: &State, n: u64, samples: usize) -> anyhow::Result<f64> {
    let view = state.load_view().context("no view")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    timed_lookups(n, samples, |t| {
        view.tokens.lookup(&view.hasher.hash(t), now).is_some()
    })
}

/// The floor of any in-memory token index: the cheapest map from a token hash to a client
/// number — a std `HashMap` with no shards, locks, reference counts or expiry, hashed by
/// taking 8 of the key's bytes, as the real index does — holding the token hashes of `n`
/// bench clients.
pub struct PlainIndex {
    hasher: TokenHasher,
    map: HashMap<[u8; 32], u32, BuildHasherDefault<PrehashedHasher>>,
}

impl PlainIndex {
    pub fn with(n: u64) -> Self {
        let hasher = TokenHasher::new(KEY);
        let mut map = HashMap::with_capacity_and_hasher(n as usize, BuildHasherDefault::default());
        for i in 0..n {
            map.insert(hasher.hash(&fixture::client_token(i)).0, i as u32);
        }
        Self { hasher, map }
    }

    pub fn lookup_prehashed(&self, hash: &canopy_core::TokenHash) -> Option<u32> {
        self.map.get(&hash.0).copied()
    }

    pub fn hasher(&self) -> &TokenHasher {
        &self.hasher
    }
}

/// As [`auth_lookup_ns`], against a [`PlainIndex`].
pub fn plain_lookup_ns(index: &PlainIndex, n: u64, samples: usize) -> anyhow::Result<f64> {
    timed_lookups(n, samples, |t| {
        index.lookup_prehashed(&index.hasher.hash(t)).is_some()
    })
}

/// Mean ns of `found(token)` over `samples` tokens of random clients among `n`; every one
/// must be found.
fn timed_lookups(n: u64, samples: usize, found: impl Fn(&str) -> bool) -> anyhow::Result<f64> {
    let mut rng = rand::rng();
    let tokens: Vec<String> = (0..samples)
        .map(|_| fixture::client_token(rng.random_range(0..n)))
        .collect();
    let start = Instant::now();
    let hits = tokens.iter().filter(|t| found(t)).count();
    let ns = start.elapsed().as_nanos() as f64 / samples as f64;
    anyhow::ensure!(hits == samples, "only {hits}/{samples} tokens found");
    Ok(ns)
}

/// `(id, mean ns)` of every criterion benchmark under `dir` (`target/criterion`).
pub fn criterion_estimates(dir: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let bench = std::fs::read_to_string(p.join("benchmark.json")).ok();
                let est = std::fs::read_to_string(p.join("estimates.json")).ok();
                if let (Some(b), Some(e)) = (bench, est) {
                    let b: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                    let e: serde_json::Value = serde_json::from_str(&e).unwrap_or_default();
                    if let (Some(id), Some(ns)) =
                        (b["full_id"].as_str(), e["mean"]["point_estimate"].as_f64())
                    {
                        out.push((id.to_owned(), ns));
                    }
                }
            } else if p.file_name().is_none_or(|n| n != "report") {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
