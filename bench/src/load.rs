//! A small built-in HTTP load loop (closed loop, or open loop at a fixed rate with
//! latency measured from each request's scheduled start, like `oha --latency-correction`).
//!
//! Used by `canopy-bench-load` when `oha` is not installed (the smoke mode in CI). It is
//! far heavier per request than `oha`, so its throughput figures are lower bounds only.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub url: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub concurrency: usize,
    pub duration: Duration,
    /// Requests per second for an open loop; `None` = closed loop.
    pub rate: Option<f64>,
}

/// What came back (the same shape whichever generator ran).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    pub requests: u64,
    /// Non-2xx answers and transport errors.
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// One failure, for the report.
    #[serde(default)]
    pub error_sample: Option<String>,
}

pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let sample: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .http1_only()
            .build()?;
        let spec = spec.clone();
        let next = next.clone();
        let errors = errors.clone();
        let sample = sample.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut headers = reqwest::header::HeaderMap::new();
            for (k, v) in &spec.headers {
                if let (Ok(k), Ok(v)) = (
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                    reqwest::header::HeaderValue::from_str(v),
                ) {
                    headers.insert(k, v);
                }
            }
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let scheduled = match spec.rate {
                    Some(r) => start + Duration::from_secs_f64(i as f64 / r),
                    None => Instant::now(),
                };
                if scheduled.duration_since(start) >= spec.duration
                    || start.elapsed() >= spec.duration
                {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let outcome = match client
                    .post(&spec.url)
                    .headers(headers.clone())
                    .body(spec.body.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r
                        .bytes()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("body: {e:?}")),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(format!("{e:?}")),
                };
                if let Err(e) = &outcome {
                    let mut s = sample.lock().unwrap_or_else(|p| p.into_inner());
                    if s.is_none() {
                        *s = Some(e.clone());
                    }
                }
                if outcome.is_ok() {
                    lat.push(scheduled.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let error_sample = sample.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(LoadResult {
        requests: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        rps: all.len() as f64 / elapsed,
        p50_ms: crate::stats::percentile(&all, 50.0),
        p99_ms: crate::stats::percentile(&all, 99.0),
        error_sample,
    })
}
