//! Running the HTTP load generator on core 1: `oha` when installed (or the built-in loop),
//! and `wrk` for the cross-check.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::LoadResult;
use crate::procs::{cpu_seconds, CpuTimes, Pinning};

/// One HTTP request shape.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// Which generator runs.
#[derive(Debug, Clone)]
pub enum Generator {
    Oha(PathBuf),
    Builtin(PathBuf),
}

/// A load result plus the cores' busy % over the run.
#[derive(Debug, Clone)]
pub struct Measured {
    pub result: LoadResult,
    pub core0: f64,
    pub core1: f64,
    pub seconds: f64,
    /// CPU seconds (user + system) each watched process used over the run, in the order of
    /// the `watch` pids given to [`Generator::run`].
    pub proc_cpu_s: Vec<f64>,
}

impl Generator {
    pub fn name(&self) -> &'static str {
        match self {
            Generator::Oha(_) => "oha",
            Generator::Builtin(_) => "canopy-bench-load (built-in, oha missing)",
        }
    }

    pub fn settings(&self, c: usize, secs: f64, rate: Option<f64>) -> String {
        let base = match self {
            Generator::Oha(_) => "oha",
            Generator::Builtin(_) => "canopy-bench-load",
        };
        match rate {
            Some(q) => format!("{base} -c {c} -z {secs}s -q {q} --latency-correction, core 1"),
            None => format!("{base} -c {c} -z {secs}s, HTTP/1.1 keep-alive, core 1"),
        }
    }

    /// One run against `t`; the CPU time of the `watch` processes over it is recorded too.
    pub fn run(
        &self,
        pin: &Pinning,
        t: &Target,
        c: usize,
        secs: f64,
        rate: Option<f64>,
        watch: &[u32],
    ) -> anyhow::Result<Measured> {
        let mut cmd = match self {
            Generator::Oha(p) => {
                let mut cmd = pin.command(1, p);
                cmd.args(["--no-tui", "--output-format", "json", "-m", "POST"])
                    .args(["-c", &c.to_string(), "-z", &format!("{secs}s")]);
                if let Some(q) = rate {
                    cmd.args(["-q", &q.to_string(), "--latency-correction"]);
                }
                cmd
            }
            Generator::Builtin(p) => {
                let mut cmd = pin.command(1, p);
                cmd.args(["-c", &c.to_string(), "-z", &secs.to_string()]);
                if let Some(q) = rate {
                    cmd.args(["-q", &q.to_string()]);
                }
                cmd
            }
        };
        for (k, v) in &t.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg("-d").arg(&t.body).arg(&t.url);
        let proc_cpu = || -> anyhow::Result<Vec<f64>> {
            watch
                .iter()
                .map(|&pid| cpu_seconds(pid).with_context(|| format!("CPU time of pid {pid}")))
                .collect()
        };
        let procs_before = proc_cpu()?;
        let before = CpuTimes::read();
        let start = std::time::Instant::now();
        let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
        let seconds = start.elapsed().as_secs_f64();
        let after = CpuTimes::read();
        let procs_after = proc_cpu()?;
        if !out.status.success() {
            bail!(
                "load generator failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let result = match self {
            Generator::Oha(_) => parse_oha(&out.stdout)?,
            Generator::Builtin(_) => serde_json::from_slice(&out.stdout)
                .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?,
        };
        Ok(Measured {
            result,
            core0: before.busy_pct(&after, 0),
            core1: before.busy_pct(&after, 1),
            seconds: seconds.min(secs.max(0.001)),
            proc_cpu_s: procs_after
                .iter()
                .zip(&procs_before)
                .map(|(a, b)| a - b)
                .collect(),
        })
    }
}

/// oha's JSON summary → [`LoadResult`] (latencies there are in seconds).
fn parse_oha(stdout: &[u8]) -> anyhow::Result<LoadResult> {
    let v: serde_json::Value = serde_json::from_slice(stdout)
        .with_context(|| format!("oha output: {}", String::from_utf8_lossy(stdout)))?;
    let codes = v["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut ok = 0u64;
    let mut bad = 0u64;
    for (code, n) in codes {
        let n = n.as_u64().unwrap_or(0);
        if code.starts_with('2') {
            ok += n;
        } else {
            bad += n;
        }
    }
    // Requests cut off by `-z` at the end are not failures.
    let real = |k: &String| !k.contains("aborted due to deadline");
    let errors: u64 = v["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| real(k))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0);
    let secs = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    Ok(LoadResult {
        requests: ok,
        errors: bad + errors,
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN)
            * if ok + bad > 0 {
                ok as f64 / (ok + bad) as f64
            } else {
                0.0
            },
        p50_ms: secs("p50"),
        p99_ms: secs("p99"),
        error_sample: v["errorDistribution"]
            .as_object()
            .and_then(|m| m.keys().find(|k| real(k)).cloned()),
    })
}

/// `wrk` cross-check: requests per second (one run).
pub fn wrk(
    wrk: &Path,
    pin: &Pinning,
    work: &Path,
    t: &Target,
    c: usize,
    dur: Duration,
) -> anyhow::Result<f64> {
    let script = work.join(format!("wrk-{}.lua", crate::procs::free_port()?));
    let mut lua = String::from("wrk.method = \"POST\"\n");
    lua.push_str(&format!("wrk.body = [==[{}]==]\n", t.body));
    for (k, v) in &t.headers {
        lua.push_str(&format!("wrk.headers[\"{k}\"] = [==[{v}]==]\n"));
    }
    std::fs::write(&script, lua)?;
    let mut cmd = pin.command(1, wrk);
    cmd.args([
        "-t1",
        &format!("-c{c}"),
        &format!("-d{}s", dur.as_secs().max(1)),
    ])
    .arg("-s")
    .arg(&script)
    .arg(&t.url);
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk output: {text}"))?;
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx answers: {text}");
    }
    Ok(rps)
}
