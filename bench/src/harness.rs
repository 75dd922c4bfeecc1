//! The orchestrator behind `bench/run.sh`: starts every program on its core, runs every
//! figure of issue 7 in interleaved rounds (A B A B A B, or A B C …), takes medians and
//! writes the markdown table.

pub mod inproc;
pub mod loadgen;
pub mod report;
pub mod stack;

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixture;
use crate::procs::{CpuTimes, Pinning};
use crate::stats::median;
use loadgen::{Generator, Measured, Target};
use report::{fmt_num, pct, Row};
use stack::{headers, post, Env};

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub smoke: bool,
    /// Directory holding every binary (target/release or target/debug).
    pub bins: PathBuf,
    pub out: PathBuf,
    /// Scratch space (data dirs, logs, captured bytes).
    pub work: PathBuf,
    pub rounds: usize,
    pub round_secs: f64,
    pub concurrency: usize,
    pub open_rate: f64,
    /// Clients in the data dir behind the HTTP figures.
    pub main_clients: u64,
    /// Scale sizes: small (the baseline), mid, large (the target size).
    pub sizes: [u64; 3],
    pub revocation_trials: usize,
    /// Distinct JWTs presented for the verified-token cache's memory figure.
    pub distinct_jwts: usize,
    pub dp_counts: Vec<usize>,
    pub write_concurrency: usize,
    pub lookup_samples: usize,
    pub generator: Generator,
    pub wrk: Option<PathBuf>,
    pub criterion_dir: Option<PathBuf>,
    /// Reuse data dirs a previous `--keep-data` run populated in the work dir.
    pub keep_data: bool,
    pub note: Option<String>,
    /// Only the scale figures (cold sync, RSS, auth lookup): no HTTP, revocation or
    /// write figures (`--only scale`).
    pub only_scale: bool,
    /// Only one HTTP figure: `tools-list`, `tools-list-jwt`, `tools-call`, `open-loop` or
    /// `revocation` (client deletes and subject revocations, 1/4/8 data planes) (`--only …`); no
    /// scale, wrk, revocation or write figures.
    pub only_http: Option<String>,
}

impl Config {
    /// Full run (`bench/run.sh`) or smoke run (`--smoke`: seconds, tiny sizes).
    pub fn new(smoke: bool, bins: PathBuf, out: PathBuf, work: PathBuf) -> Self {
        let generator = match crate::procs::which("oha") {
            Some(p) => Generator::Oha(p),
            None => Generator::Builtin(bins.join("canopy-bench-load")),
        };
        Self {
            smoke,
            out,
            work,
            rounds: 3,
            round_secs: if smoke { 1.0 } else { 10.0 },
            concurrency: 16,
            open_rate: if smoke { 200.0 } else { 1000.0 },
            main_clients: if smoke { 100 } else { 1_000 },
            sizes: if smoke {
                [100, 300, 1_000]
            } else {
                [1_000, 100_000, 1_000_000]
            },
            // p99 of 50 trials is in effect their maximum; 200 leave two samples above it.
            revocation_trials: if smoke { 5 } else { 200 },
            distinct_jwts: if smoke { 200 } else { 100_000 },
            dp_counts: vec![1, 4, 8],
            write_concurrency: if smoke { 8 } else { 64 },
            lookup_samples: if smoke { 20_000 } else { 500_000 },
            generator,
            wrk: if smoke {
                None
            } else {
                crate::procs::which("wrk")
            },
            criterion_dir: None,
            keep_data: false,
            note: None,
            only_scale: false,
            only_http: None,
            bins,
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn med(v: &[Measured], f: impl Fn(&Measured) -> f64) -> f64 {
    median(&v.iter().map(f).collect::<Vec<_>>())
}

/// CPU µs of core 0 per successful request.
fn cpu_us_per_req(m: &Measured) -> f64 {
    if m.result.requests == 0 {
        return f64::NAN;
    }
    m.core0 / 100.0 * m.seconds * 1e6 / m.result.requests as f64
}

struct Run {
    cfg: Config,
    env: Env,
    rows: Vec<Row>,
    notes: Vec<String>,
}

/// One side of an interleaved comparison: what to load, and which processes' CPU time to
/// record over each run (see [`Measured::proc_cpu_s`]).
struct Side<'a> {
    label: &'a str,
    target: &'a Target,
    watch: Vec<u32>,
}

/// `x` with its sign (`+1.50`, `-0.250`).
fn signed(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", fmt_num(x))
    } else {
        fmt_num(x)
    }
}

/// CPU µs of the `i`-th watched process per successful request.
fn proc_us_per_req(m: &Measured, i: usize) -> f64 {
    match m.proc_cpu_s.get(i) {
        Some(s) if m.result.requests > 0 => s * 1e6 / m.result.requests as f64,
        _ => f64::NAN,
    }
}

impl Run {
    /// A B A B A B (after one short unmeasured warm-up of each).
    fn interleaved(
        &mut self,
        a: &Target,
        b: &Target,
        rate: Option<f64>,
    ) -> anyhow::Result<(Vec<Measured>, Vec<Measured>)> {
        let side = |label, target| Side {
            label,
            target,
            watch: Vec::new(),
        };
        let [ra, rb] = self.interleaved_n([side("ours", a), side("baseline", b)], rate)?;
        Ok((ra, rb))
    }

    /// A B C … A B C … (`rounds` times, after one short unmeasured warm-up of each side);
    /// one result per side and round.
    fn interleaved_n<const N: usize>(
        &mut self,
        sides: [Side<'_>; N],
        rate: Option<f64>,
    ) -> anyhow::Result<[Vec<Measured>; N]> {
        let g = self.cfg.generator.clone();
        let (c, secs) = (self.cfg.concurrency, self.cfg.round_secs);
        let warm = secs.min(1.0);
        for s in &sides {
            g.run(&self.env.pin, s.target, c, warm, rate, &[])?;
        }
        let mut out: [Vec<Measured>; N] = std::array::from_fn(|_| Vec::new());
        for _ in 0..self.cfg.rounds {
            for (s, v) in sides.iter().zip(out.iter_mut()) {
                v.push(g.run(&self.env.pin, s.target, c, secs, rate, &s.watch)?);
            }
        }
        for (s, v) in sides.iter().zip(&out) {
            let (label, url) = (s.label, &s.target.url);
            let errors: u64 = v.iter().map(|m| m.result.errors).sum();
            let total: u64 = v.iter().map(|m| m.result.requests).sum::<u64>() + errors;
            let sample = v.iter().find_map(|m| m.result.error_sample.clone());
            if errors > 0 {
                self.notes.push(format!(
                    "{url} ({label}): {errors} of {total} requests failed, e.g. {sample:?}"
                ));
            }
            ensure!(
                total > 0 && errors * 100 <= total,
                "{label} at {url}: {errors} of {total} requests failed, e.g. {sample:?}"
            );
        }
        Ok(out)
    }

    /// Median req/s of `a` against `b`; `target` = (text, minimum ratio), `None` for an
    /// informational row.
    fn throughput_row(
        &mut self,
        figure: &str,
        target: Option<(&str, f64)>,
        a: &[Measured],
        b: &[Measured],
    ) {
        let (ours, base) = (med(a, |m| m.result.rps), med(b, |m| m.result.rps));
        let ratio = ours / base;
        self.rows.push(Row {
            figure: figure.into(),
            ours: format!("{} req/s", fmt_num(ours)),
            baseline: format!("{} req/s", fmt_num(base)),
            ratio: format!("{ratio:.3}×"),
            target: target.map_or_else(String::new, |t| t.0.into()),
            pass: target.map(|t| ratio >= t.1),
            core0: format!(
                "{} / {}",
                pct(med(a, |m| m.core0)),
                pct(med(b, |m| m.core0))
            ),
            core1: pct(median(&[med(a, |m| m.core1), med(b, |m| m.core1)])),
            loadgen: self
                .cfg
                .generator
                .settings(self.cfg.concurrency, self.cfg.round_secs, None),
        });
    }
}

/// Runs everything and writes the table to `cfg.out`. Returns the markdown.
pub async fn run(cfg: Config) -> anyhow::Result<String> {
    std::fs::create_dir_all(&cfg.work)?;
    let logs = cfg.work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let env = Env {
        bins: cfg.bins.clone(),
        pin: Pinning::detect(),
        logs,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        dp_token: format!("canopy_dp_bench_{}_token", std::process::id()),
    };
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut run = Run {
        cfg,
        env,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let started = std::time::Instant::now();

    // Data dirs first: population is heavy and must not overlap any measurement.
    let main_dir = run.cfg.work.join("data-main");
    if !run.cfg.only_scale {
        let t = populate_once(&run.cfg, &main_dir, run.cfg.main_clients).await?;
        eprintln!(
            "populated main data dir ({} clients) in {t:?}",
            run.cfg.main_clients
        );
    }
    let mut scale_dirs = Vec::new();
    let sizes = if run.cfg.only_http.is_some() {
        Vec::new()
    } else {
        run.cfg.sizes.to_vec()
    };
    for n in sizes {
        let dir = run.cfg.work.join(format!("data-{n}"));
        let t = populate_once(&run.cfg, &dir, n).await?;
        eprintln!("populated {} clients in {t:?}", thousands(n));
        run.notes.push(format!(
            "pre-population of {} clients through the store library (CreateClient mutations, 2048 in flight, group commit): {:.1} s ({:.0} clients/s)",
            thousands(n),
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64()
        ));
        scale_dirs.push((n, dir));
    }
    if !scale_dirs.is_empty() {
        // The populated data dirs are GBs of dirty pages at 1M clients: write them back now,
        // or the kernel's writeback competes with the first figures measured.
        match std::process::Command::new("sync").status() {
            Ok(s) if s.success() => {}
            other => eprintln!("warning: sync after pre-population failed: {other:?}"),
        }
    }

    if !run.cfg.only_scale {
        http_figures(&mut run, &main_dir).await?;
    }
    if run.cfg.only_http.is_none() {
        scale_figures(&mut run, &scale_dirs).await?;
        lookup_figure(&mut run)?;
    }
    if let Some(dir) = run.cfg.criterion_dir.clone() {
        for (id, ns) in inproc::criterion_estimates(&dir) {
            run.rows.push(Row {
                figure: format!("criterion: {id}"),
                ours: if ns >= 1000.0 {
                    format!("{} µs", fmt_num(ns / 1000.0))
                } else {
                    format!("{} ns", fmt_num(ns))
                },
                loadgen: "criterion (in-process, mean)".into(),
                ..Row::default()
            });
        }
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let mut header = vec![
        format!(
            "mode: {}; binaries: `{}`",
            if run.cfg.smoke { "SMOKE (tiny sizes, short rounds — numbers mean nothing)" } else { "full" },
            run.cfg.bins.display()
        ),
        format!(
            "machine: {} CPUs ({cpu}); {}",
            std::thread::available_parallelism().map_or(1, usize::from),
            run.env.pin.describe()
        ),
        "core 0 runs the server side under test (data plane AND its upstream for proxied figures, the upstream or bare handler alone for baselines; control plane(s) too); core 1 runs the load generator".into(),
        format!(
            "rounds: {} interleaved rounds (A B A B A B; A B C A B C for tools/call: data plane, direct, bare forwarding proxy) of {} s per figure, after a short warm-up; medians reported; HTTP load generator: {}",
            run.cfg.rounds,
            run.cfg.round_secs,
            run.cfg.generator.name()
        ),
        format!("load average at start: {}", load_at_start.trim()),
        format!("total wall time: {:.0} s", started.elapsed().as_secs_f64()),
    ];
    if let Some(n) = &run.cfg.note {
        header.push(format!("conditions: {n}"));
    }
    let md = report::markdown("Canopy benchmark results", &header, &run.rows, &run.notes);
    if let Some(parent) = run.cfg.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&run.cfg.out, &md)
        .with_context(|| format!("writing {}", run.cfg.out.display()))?;
    Ok(md)
}

async fn http_figures(run: &mut Run, main_dir: &std::path::Path) -> anyhow::Result<()> {
    let env = &run.env;
    let (upstream, up_url) = env.upstream().await?;
    let cp = env.control_plane("cp-main", main_dir).await?;
    cp.register_upstream(&up_url).await?;
    let mut dps = vec![env.data_plane("dp-1", &cp).await?];
    let token = fixture::client_token(0);
    let h = headers(&token);

    // Check every request shape once, and capture the bytes the bare baseline returns.
    let list = fixture::request_body("tools/list", None);
    let (st, list_bytes) = post(&env.http, &dps[0].mcp(), &h, &list).await?;
    let res = fixture::result_of(&list_bytes).map_err(anyhow::Error::msg);
    ensure!(
        st == 200,
        "tools/list through the data plane: HTTP {st}: {res:?}"
    );
    let tools: serde_json::Value = serde_json::from_str(&res?)?;
    let n_tools = tools["tools"].as_array().map_or(0, Vec::len);
    ensure!(
        n_tools == fixture::TOOLS,
        "data plane lists {n_tools} tools, expected {}",
        fixture::TOOLS
    );
    let body_file = run.cfg.work.join("tools-list-response.json");
    std::fs::write(&body_file, &list_bytes)?;
    let (_bare, bare_url) = env.bare(&body_file).await?;
    let (_, bare_bytes) = post(&env.http, &bare_url, &h, &list).await?;
    ensure!(
        bare_bytes == list_bytes,
        "bare handler bytes differ from the data plane's"
    );
    let call_dp = fixture::echo_call(&format!("{}__echo", fixture::SERVER));
    let call_up = fixture::echo_call("echo");
    // The floor of one HTTP hop: forwards the direct request's bytes to the upstream.
    let (fwd, fwd_url) = env.forward_proxy(&up_url).await?;
    for (url, body) in [
        (dps[0].mcp(), &call_dp),
        (up_url.clone(), &call_up),
        (fwd_url.clone(), &call_up),
    ] {
        let (st, b) = post(&env.http, &url, &h, body).await?;
        ensure!(st == 200, "tools/call at {url}: HTTP {st}");
        fixture::result_of(&b).map_err(|e| anyhow::anyhow!("tools/call at {url}: {e}"))?;
    }
    run.notes.push(format!(
        "tools/list response: {} bytes (50 tools, handshake-era client, enterprise token of one of {} clients); the bench upstream answers `server/discover`, so the data plane talks 2026-07-28 to it",
        list_bytes.len(),
        thousands(run.cfg.main_clients)
    ));

    let t = |url: &str, body: &str| Target {
        url: url.to_owned(),
        body: body.to_owned(),
        headers: h.clone(),
    };
    let dp_list = t(&dps[0].mcp(), &list);
    let bare_list = t(&bare_url, &list);
    let dp_call = t(&dps[0].mcp(), &call_dp);
    let up_call = t(&up_url, &call_up);
    let fwd_call = t(&fwd_url, &call_up);

    let only = run.cfg.only_http.clone();
    let wanted = |f: &str| only.as_deref().is_none_or(|o| o == f);
    if wanted("tools-list") {
        let (a, b) = run.interleaved(&dp_list, &bare_list, None)?;
        run.throughput_row(
            &format!(
                "tools/list via data plane, c={} (vs bare axum, same bytes)",
                run.cfg.concurrency
            ),
            Some(("≥ 0.8×", 0.8)),
            &a,
            &b,
        );
    }

    if wanted("tools-list-jwt") {
        jwt_figures(run, &dps[0], &cp, &dp_list, &bare_list).await?;
    }

    if wanted("tools-call") {
        let pids = [dps[0].proc.pid(), upstream.pid(), fwd.pid()];
        tools_call_figure(run, &dp_call, &up_call, &fwd_call, pids)?;
        sched_batch_experiment(run, &dp_call, &up_call, &fwd_call, pids)?;
    }
    drop(fwd);

    if wanted("open-loop") {
        let rate = run.cfg.open_rate;
        let (a, b) = run.interleaved(&dp_call, &up_call, Some(rate))?;
        for (label, f, limit) in [
            (
                "p50",
                (|m: &Measured| m.result.p50_ms) as fn(&Measured) -> f64,
                0.1,
            ),
            ("p99", |m: &Measured| m.result.p99_ms, 0.3),
        ] {
            let (oa, ob) = (med(&a, f), med(&b, f));
            run.rows.push(Row {
                figure: format!(
                    "open loop {} req/s tools/call echo: added {label}",
                    thousands(rate as u64)
                ),
                ours: format!("{} ms", fmt_num(oa)),
                baseline: format!("{} ms", fmt_num(ob)),
                ratio: format!("+{} ms", fmt_num(oa - ob)),
                target: format!("added {label} ≤ {limit} ms"),
                pass: Some(oa - ob <= limit),
                core0: format!(
                    "{} / {}",
                    pct(med(&a, |m| m.core0)),
                    pct(med(&b, |m| m.core0))
                ),
                core1: pct(median(&[med(&a, |m| m.core1), med(&b, |m| m.core1)])),
                loadgen: run.cfg.generator.settings(
                    run.cfg.concurrency,
                    run.cfg.round_secs,
                    Some(rate),
                ),
            });
        }
    }
    if only.is_some() && !wanted("revocation") {
        return Ok(());
    }

    if let Some(wrk) = run.cfg.wrk.clone().filter(|_| only.is_none()) {
        let dur = Duration::from_secs_f64(run.cfg.round_secs);
        for (name, a, b) in [
            ("tools/list (vs bare)", &dp_list, &bare_list),
            ("tools/call echo (vs direct)", &dp_call, &up_call),
        ] {
            let c = run.cfg.concurrency;
            let ours = loadgen::wrk(&wrk, &run.env.pin, &run.cfg.work, a, c, dur)?;
            let base = loadgen::wrk(&wrk, &run.env.pin, &run.cfg.work, b, c, dur)?;
            run.rows.push(Row {
                figure: format!("wrk cross-check: {name}, c={c}"),
                ours: format!("{} req/s", fmt_num(ours)),
                baseline: format!("{} req/s", fmt_num(base)),
                ratio: format!("{:.3}×", ours / base),
                loadgen: format!("wrk -t1 -c{c} -d{}s, one round, core 1", dur.as_secs()),
                ..Row::default()
            });
        }
    }

    // Revocation: 1, 4, 8 data planes on the same control plane.
    for &count in &run.cfg.dp_counts.clone() {
        while dps.len() < count {
            let name = format!("dp-{}", dps.len() + 1);
            dps.push(run.env.data_plane(&name, &cp).await?);
        }
        for subjects in [false, true] {
            let mut cmd = run
                .env
                .pin
                .command(1, &run.env.bin("canopy-bench-revocation")?);
            cmd.args(["--control-plane", &cp.url])
                .args(["--trials", &run.cfg.revocation_trials.to_string()]);
            if subjects {
                cmd.arg("--subjects");
            }
            let what = if subjects {
                "revoke subject"
            } else {
                "revocation"
            };
            let rpc = if subjects { "revoke" } else { "delete" };
            for dp in &dps[..count] {
                cmd.args(["--data-plane", &dp.base]);
            }
            let before = CpuTimes::read();
            let out = cmd.output()?;
            let after = CpuTimes::read();
            ensure!(
                out.status.success(),
                "canopy-bench-revocation failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let (p50, p99) = (
                r["p50_ms"].as_f64().unwrap_or(f64::NAN),
                r["p99_ms"].as_f64().unwrap_or(f64::NAN),
            );
            let timeouts = r["timeouts"].as_u64().unwrap_or(0);
            let samples: Vec<f64> = r["samples_ms"]
                .as_array()
                .map(|v| v.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default();
            let p95 = crate::stats::percentile(&samples, 95.0);
            let max = r["max_ms"].as_f64().unwrap_or(f64::NAN);
            run.rows.push(Row {
            figure: format!(
                "{what}, {count} data plane{} ({rpc} RPC start → all reject)",
                if count == 1 { "" } else { "s" }
            ),
            ours: format!(
                "p99 {} ms (p50 {}, p95 {}, max {} ms)",
                fmt_num(p99),
                fmt_num(p50),
                fmt_num(p95),
                fmt_num(max)
            ),
            target: "p99 ≤ 5 ms".into(),
            pass: Some(p99 <= 5.0 && timeouts == 0),
            core0: pct(before.busy_pct(&after, 0)),
            core1: pct(before.busy_pct(&after, 1)),
            loadgen: format!(
                "canopy-bench-revocation, {} trials, paced polling: every data plane pinged at once per round, 100 µs pause between rounds (resolution), core 1",
                run.cfg.revocation_trials
            ),
            ..Row::default()
        });
            run.notes.push(format!(
            "{what} with {count} data plane(s): {rpc} RPC (waits for every ack) p50 {} ms, p99 {} ms; {timeouts} trial(s) timed out",
            fmt_num(r["rpc_p50_ms"].as_f64().unwrap_or(f64::NAN)),
            fmt_num(r["rpc_p99_ms"].as_f64().unwrap_or(f64::NAN)),
        ));
        }
    }
    dps.truncate(1);
    if only.is_some() {
        return Ok(());
    }

    // Durable writes.
    let mut per_sec = Vec::new();
    let mut busy0 = Vec::new();
    let mut p99s = Vec::new();
    for round in 0..run.cfg.rounds {
        let mut cmd = run.env.pin.command(1, &run.env.bin("canopy-bench-writes")?);
        cmd.args(["--control-plane", &cp.url])
            .args(["-c", &run.cfg.write_concurrency.to_string()])
            .args(["-z", &run.cfg.round_secs.to_string()])
            .args(["--prefix", &format!("w{round}")]);
        let before = CpuTimes::read();
        let out = cmd.output()?;
        let after = CpuTimes::read();
        ensure!(
            out.status.success(),
            "canopy-bench-writes failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ensure!(
            r["writes"].as_u64().unwrap_or(0) > 0,
            "no write succeeded: {r}"
        );
        per_sec.push(r["per_sec"].as_f64().unwrap_or(f64::NAN));
        p99s.push(r["p99_ms"].as_f64().unwrap_or(f64::NAN));
        busy0.push(before.busy_pct(&after, 0));
    }
    let w = median(&per_sec);
    run.rows.push(Row {
        figure: format!(
            "control plane durable writes (CreateMcpClient, c={})",
            run.cfg.write_concurrency
        ),
        ours: format!("{} writes/s (p99 {} ms)", fmt_num(w), fmt_num(median(&p99s))),
        target: "≥ 1,000/s".into(),
        pass: Some(w >= 1000.0),
        core0: pct(median(&busy0)),
        loadgen: format!(
            "canopy-bench-writes -c {} -z {}s (gRPC, one HTTP/2 connection), core 1; one data plane connected",
            run.cfg.write_concurrency, run.cfg.round_secs
        ),
        ..Row::default()
    });
    Ok(())
}

/// tools/call echo, c=16, three sides in the same interleaved rounds (A B C A B C …):
/// A = data plane + upstream, B = upstream direct, C = bare forwarding proxy + upstream.
/// `pids` = data plane, upstream, forwarding proxy (their CPU time is split per request).
fn tools_call_figure(
    run: &mut Run,
    dp_call: &Target,
    up_call: &Target,
    fwd_call: &Target,
    pids: [u32; 3],
) -> anyhow::Result<()> {
    let [dp_pid, up_pid, fwd_pid] = pids;
    let [a, b, c] = run.interleaved_n(
        [
            Side {
                label: "ours (data plane)",
                target: dp_call,
                watch: vec![dp_pid, up_pid],
            },
            Side {
                label: "baseline (upstream direct)",
                target: up_call,
                watch: vec![up_pid],
            },
            Side {
                label: "bare forwarding proxy",
                target: fwd_call,
                watch: vec![fwd_pid, up_pid],
            },
        ],
        None,
    )?;
    let conc = run.cfg.concurrency;
    run.throughput_row(
        &format!("tools/call echo via data plane, c={conc} (vs upstream direct)"),
        Some(("≥ 0.3×", 0.3)),
        &a,
        &b,
    );
    let core0 = |x: &[Measured], y: &[Measured]| {
        format!(
            "{} / {}",
            pct(med(x, |m| m.core0)),
            pct(med(y, |m| m.core0))
        )
    };
    let core1 =
        |x: &[Measured], y: &[Measured]| pct(median(&[med(x, |m| m.core1), med(y, |m| m.core1)]));
    let (ca, cb, cc) = (
        med(&a, cpu_us_per_req),
        med(&b, cpu_us_per_req),
        med(&c, cpu_us_per_req),
    );
    run.rows.push(Row {
        figure: "tools/call extra CPU per call (core 0 µs/request, ours − direct)".into(),
        ours: format!("{} µs/req", fmt_num(ca)),
        baseline: format!("{} µs/req", fmt_num(cb)),
        ratio: format!("+{} µs", fmt_num(ca - cb)),
        target: "≤ 35 µs extra".into(),
        pass: Some(ca - cb <= 35.0),
        core0: core0(&a, &b),
        core1: core1(&a, &b),
        loadgen: "same runs as the row above".into(),
    });
    run.throughput_row(
        &format!("tools/call echo via a bare forwarding proxy (floor of one HTTP hop), c={conc}"),
        None,
        &c,
        &b,
    );
    if let Some(r) = run.rows.last_mut() {
        r.loadgen = format!(
            "{}; canopy-bench-bare --forward (hyper-util pooled HTTP/1.1, no parsing, no auth) + upstream on core 0; same rounds as the data plane (A B C interleaved)",
            r.loadgen
        );
    }
    run.rows.push(Row {
        figure: "tools/call extra CPU per call of the bare forwarding proxy (core 0 µs/request, proxy − direct)".into(),
        ours: format!("{} µs/req", fmt_num(cc)),
        baseline: format!("{} µs/req", fmt_num(cb)),
        ratio: format!("{} µs", signed(cc - cb)),
        core0: core0(&c, &b),
        core1: core1(&c, &b),
        loadgen: "same runs as the row above".into(),
        ..Row::default()
    });

    // Per-process split: utime + stime (/proc/<pid>/stat) over each round ÷ its requests.
    let (dp, up_a) = (
        med(&a, |m| proc_us_per_req(m, 0)),
        med(&a, |m| proc_us_per_req(m, 1)),
    );
    let up_b = med(&b, |m| proc_us_per_req(m, 0));
    let (fp, up_c) = (
        med(&c, |m| proc_us_per_req(m, 0)),
        med(&c, |m| proc_us_per_req(m, 1)),
    );
    let us = |x: f64| format!("{} µs/req", fmt_num(x));
    let plus = |x: f64, what: &str| format!("{} µs {what}", signed(x));
    let how = "utime+stime of the process (/proc/<pid>/stat) per successful request, median of the same rounds";
    let split: [(&str, String, String, String, &[Measured]); 5] = [
        (
            "data plane",
            us(dp),
            format!("bare forwarding proxy: {}", us(fp)),
            plus(dp - fp, "over the floor"),
            &a,
        ),
        (
            "upstream when proxied",
            us(up_a),
            format!("direct: {}", us(up_b)),
            plus(up_a - up_b, "vs direct"),
            &a,
        ),
        (
            "upstream when called directly",
            us(up_b),
            String::new(),
            String::new(),
            &b,
        ),
        (
            "bare forwarding proxy",
            us(fp),
            String::new(),
            String::new(),
            &c,
        ),
        (
            "upstream behind the bare forwarding proxy",
            us(up_c),
            format!("direct: {}", us(up_b)),
            plus(up_c - up_b, "vs direct"),
            &c,
        ),
    ];
    for (name, ours, baseline, ratio, side) in split {
        run.rows.push(Row {
            figure: format!("tools/call CPU per request by process: {name}"),
            ours,
            baseline,
            ratio,
            core0: pct(med(side, |m| m.core0)),
            core1: pct(med(side, |m| m.core1)),
            loadgen: how.into(),
            ..Row::default()
        });
    }
    let other = |v: &[Measured]| {
        med(v, |m| {
            let procs: f64 = (0..m.proc_cpu_s.len()).map(|i| proc_us_per_req(m, i)).sum();
            cpu_us_per_req(m) - procs
        })
    };
    run.notes.push(format!(
        "tools/call per-process split: core-0 busy µs/request minus the watched processes' own (work charged to no watched process, e.g. other tasks on core 0; ± the 1/{} s tick resolution of /proc/<pid>/stat): data plane side {}, direct {}, bare forwarding proxy side {}",
        crate::procs::clock_ticks_per_sec(),
        fmt_num(other(&a)),
        fmt_num(other(&b)),
        fmt_num(other(&c)),
    ));
    Ok(())
}

/// The tools/call rounds again with every process on core 0 under `SCHED_BATCH` (set with
/// `chrt -a -b -p 0`, undone afterwards): a woken batch task does not preempt the running
/// one, so this shows how much of the hop's cost is wake-up preemption on the shared core.
/// Evidence for BENCHMARKS.md, not a figure of the contract (no target).
fn sched_batch_experiment(
    run: &mut Run,
    dp_call: &Target,
    up_call: &Target,
    fwd_call: &Target,
    pids: [u32; 3],
) -> anyhow::Result<()> {
    let conc = run.cfg.concurrency;
    let figure = |what: &str| {
        format!(
            "experiment: tools/call echo via {what}, c={conc}, wake-up preemption off (SCHED_BATCH on core 0)"
        )
    };
    // Not every machine allows it (e.g. a restricted container): evidence, not a figure, so
    // the rows stay and say why they are empty.
    let skipped = |run: &mut Run, why: String| {
        for what in ["data plane", "bare forwarding proxy"] {
            run.rows.push(Row {
                figure: figure(what),
                ours: "skipped".into(),
                loadgen: why.clone(),
                ..Row::default()
            });
        }
    };
    let Some(chrt) = crate::procs::which("chrt") else {
        skipped(run, "`chrt` (util-linux) not found".into());
        return Ok(());
    };
    let policy = |flag: &str| -> anyhow::Result<()> {
        for pid in pids {
            let st = std::process::Command::new(&chrt)
                .args(["-a", flag, "-p", "0", &pid.to_string()])
                .status()
                .with_context(|| format!("running {}", chrt.display()))?;
            ensure!(st.success(), "chrt -a {flag} -p 0 {pid} failed: {st}");
        }
        Ok(())
    };
    if let Err(e) = policy("-b") {
        let _ = policy("-o");
        skipped(run, format!("{e:#}"));
        return Ok(());
    }
    let measured = run.interleaved_n(
        [
            Side {
                label: "ours (data plane), SCHED_BATCH",
                target: dp_call,
                watch: vec![pids[0], pids[1]],
            },
            Side {
                label: "baseline (upstream direct), SCHED_BATCH",
                target: up_call,
                watch: vec![pids[1]],
            },
            Side {
                label: "bare forwarding proxy, SCHED_BATCH",
                target: fwd_call,
                watch: vec![pids[2], pids[1]],
            },
        ],
        None,
    );
    let restored = policy("-o");
    let [a, b, c] = measured?;
    restored?;
    for (what, side) in [("data plane", &a), ("bare forwarding proxy", &c)] {
        run.throughput_row(&figure(what), None, side, &b);
        let (x, y) = (med(side, cpu_us_per_req), med(&b, cpu_us_per_req));
        if let Some(r) = run.rows.last_mut() {
            r.loadgen = format!(
                "{}; every process on core 0 under SCHED_BATCH (chrt -a -b -p 0), direct baseline too; extra CPU {} µs/req ({} − {})",
                r.loadgen,
                signed(x - y),
                fmt_num(x),
                fmt_num(y)
            );
        }
    }
    Ok(())
}

/// Populates `dir` with `n` clients, or with `--keep-data` reuses it when a previous run
/// finished populating it (a marker written last records how long that took).
/// `tools/list` with a cached JWT access token of a loopback identity provider, side by side
/// with the static token and the bare floor (A B C rounds), and the data plane's CPU per
/// request of both token kinds.
async fn jwt_figures(
    run: &mut Run,
    dp: &stack::DataPlane,
    cp: &stack::ControlPlane,
    static_list: &Target,
    bare_list: &Target,
) -> anyhow::Result<()> {
    let idp = crate::idp::LoopbackIdp::start().await?;
    idp.register(&cp.admin, "bench-idp").await?;
    let jwt = idp.mint("bench-person", std::slice::from_ref(&dp.base))?;
    let jwt_list = Target {
        headers: headers(&jwt),
        ..static_list.clone()
    };
    // The provider reaches the data plane as a streamed change: wait for it (a deadline only).
    let start = std::time::Instant::now();
    loop {
        let (st, b) = post(
            &run.env.http,
            &jwt_list.url,
            &jwt_list.headers,
            &jwt_list.body,
        )
        .await?;
        if st == 200 && fixture::result_of(&b).is_ok() {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "tools/list with a JWT: HTTP {st} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = dp.proc.pid();
    let side = |label, target| Side {
        label,
        target,
        watch: vec![pid],
    };
    let [j, s, b] = run.interleaved_n(
        [
            side("jwt", &jwt_list),
            side("static", static_list),
            side("baseline", bare_list),
        ],
        None,
    )?;
    let c = run.cfg.concurrency;
    run.throughput_row(
        &format!("tools/list via data plane, cached JWT (ES256), c={c} (vs bare axum, same run)"),
        Some(("≥ 0.8×", 0.8)),
        &j,
        &b,
    );
    run.throughput_row(
        &format!("tools/list via data plane, static token, c={c} (vs bare axum, same run)"),
        None,
        &s,
        &b,
    );
    let (cj, cs) = (
        med(&j, |m| proc_us_per_req(m, 0)),
        med(&s, |m| proc_us_per_req(m, 0)),
    );
    run.rows.push(Row {
        figure: "data plane CPU per tools/list: cached JWT vs static token (same run)".into(),
        ours: format!("{} µs", fmt_num(cj)),
        baseline: format!("{} µs", fmt_num(cs)),
        ratio: format!("{} µs", signed(cj - cs)),
        loadgen: run.cfg.generator.settings(c, run.cfg.round_secs, None),
        ..Row::default()
    });

    // Memory of the verified-token cache: RSS before and after `n` distinct live JWTs.
    let n = run.cfg.distinct_jwts;
    let origins = [dp.base.clone()];
    let tokens = (0..n)
        .map(|i| idp.mint(&format!("person-{i:06}"), &origins))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ping = fixture::request_body("ping", None);
    let before = dp.proc.rss_bytes()?;
    let http = &run.env.http;
    let failed = futures::stream::iter(&tokens)
        .map(|t| {
            let h = headers(t);
            let ping = &ping;
            async move { post(http, &dp.mcp(), &h, ping).await.map(|(st, _)| st) }
        })
        .buffer_unordered(c)
        .filter(|r| futures::future::ready(!matches!(r, Ok(200))))
        .count()
        .await;
    ensure!(failed == 0, "{failed} of {n} distinct JWTs were refused");
    let after = dp.proc.rss_bytes()?;
    let grown = after.saturating_sub(before) as f64 / 1e6;
    run.rows.push(Row {
        figure: format!(
            "data plane RSS growth with {} distinct live JWTs cached",
            thousands(n as u64)
        ),
        ours: format!("+{} MB", fmt_num(grown)),
        baseline: format!(
            "{} MB → {} MB",
            fmt_num(before as f64 / 1e6),
            fmt_num(after as f64 / 1e6)
        ),
        target: "≤ 50 MB more (at 100,000)".into(),
        pass: Some(grown <= 50.0),
        loadgen: format!("one authenticated ping per token, {c} in flight"),
        ..Row::default()
    });
    Ok(())
}

async fn populate_once(cfg: &Config, dir: &Path, n: u64) -> anyhow::Result<Duration> {
    let marker = dir.with_extension("populated");
    if cfg.keep_data {
        if let Some(secs) = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
        {
            eprintln!("reusing {} (--keep-data)", dir.display());
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    let _ = std::fs::remove_file(&marker);
    let t = inproc::populate(dir, n).await?;
    std::fs::write(&marker, t.as_secs_f64().to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(t)
}

async fn scale_figures(run: &mut Run, dirs: &[(u64, PathBuf)]) -> anyhow::Result<()> {
    let mut cps = Vec::new();
    for (n, dir) in dirs {
        cps.push((*n, run.env.control_plane(&format!("cp-{n}"), dir).await?));
    }
    let settle = Duration::from_millis(if run.cfg.smoke { 200 } else { 1000 });
    let mut cold: Vec<Vec<f64>> = vec![Vec::new(); cps.len()];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); cps.len()];
    for round in 0..run.cfg.rounds {
        // Large first, then small, then mid: A B (C) interleaved across rounds.
        for &i in &[2usize, 0, 1] {
            let (n, cp) = &cps[i];
            let dp = run
                .env
                .data_plane(&format!("dp-scale-{n}-{round}"), cp)
                .await?;
            cold[i].push(dp.cold_sync.as_secs_f64());
            if round == 0 {
                // The last client's token must work: the whole snapshot is applied.
                let (st, _) = post(
                    &run.env.http,
                    &dp.mcp(),
                    &headers(&fixture::client_token(n - 1)),
                    &fixture::request_body("ping", None),
                )
                .await?;
                ensure!(
                    st == 200,
                    "data plane with {n} clients rejects the last client's token (HTTP {st})"
                );
            }
            tokio::time::sleep(settle).await;
            rss[i].push(dp.proc.rss_bytes()? as f64);
        }
    }
    // The first data plane after a control-plane start, spawned as soon as the control
    // plane answers: it waits while the control plane reads its store into the snapshot
    // cache (the figures above are served from that cache, as in steady state).
    let first_after_start = {
        let Some((n, cp)) = cps.pop() else {
            bail!("no control plane for the large size");
        };
        drop(cp); // one process per data dir
        let dir = &dirs[cps.len()].1;
        let mut times = Vec::new();
        for round in 0..run.cfg.rounds {
            let cp = run
                .env
                .control_plane(&format!("cp-{n}-restart-{round}"), dir)
                .await?;
            let dp = run
                .env
                .data_plane(&format!("dp-scale-{n}-after-start-{round}"), &cp)
                .await?;
            times.push(dp.cold_sync.as_secs_f64());
        }
        median(&times)
    };
    let mb = |b: f64| b / (1024.0 * 1024.0);
    let [small, mid, large] = run.cfg.sizes;
    let (cs, cl) = (median(&cold[0]), median(&cold[2]));
    let (rs, rm, rl) = (median(&rss[0]), median(&rss[1]), median(&rss[2]));
    let settings = format!(
        "{} rounds; data plane spawned on core 0, polled /readyz every 2 ms; control plane (core 0) already running: snapshot from its cache",
        run.cfg.rounds
    );
    run.rows.push(Row {
        figure: format!(
            "scale: data plane cold sync, {} clients (spawn → /readyz 200)",
            thousands(large)
        ),
        ours: format!("{} s", fmt_num(cl)),
        baseline: format!("{} s ({} clients)", fmt_num(cs), thousands(small)),
        ratio: format!("{:.1}×", cl / cs),
        target: "≤ 2 s".into(),
        pass: Some(cl <= 2.0),
        loadgen: settings.clone(),
        ..Row::default()
    });
    run.rows.push(Row {
        figure: format!(
            "scale: data plane cold sync, {} clients, first data plane after a control-plane start",
            thousands(large)
        ),
        ours: format!("{} s", fmt_num(first_after_start)),
        loadgen: format!(
            "control plane restarted before each of {} samples, data plane spawned as soon as it answers (it waits for the control plane's one read of its store)",
            run.cfg.rounds
        ),
        ..Row::default()
    });
    run.rows.push(Row {
        figure: format!("scale: data plane RSS, {} clients", thousands(large)),
        ours: format!("{} MB", fmt_num(mb(rl))),
        baseline: format!("{} MB ({} clients)", fmt_num(mb(rs)), thousands(small)),
        ratio: format!("{:.1}×", rl / rs),
        target: "≤ 300 MB".into(),
        pass: Some(mb(rl) <= 300.0),
        loadgen: settings.clone(),
        ..Row::default()
    });
    for (n, r) in [(small, rs), (mid, rm), (large, rl)] {
        run.rows.push(Row {
            figure: format!("memory: data plane RSS, {} clients", thousands(n)),
            ours: format!("{} MB", fmt_num(mb(r))),
            loadgen: format!(
                "VmRSS {} s after /readyz 200, median of {} starts",
                settle.as_secs_f64(),
                run.cfg.rounds
            ),
            ..Row::default()
        });
    }
    run.rows.push(Row {
        figure: "memory: bytes per client (RSS slope, small → large)".into(),
        ours: format!("{} B", fmt_num((rl - rs) / (large - small) as f64)),
        ratio: format!(
            "{} → {}: {} B",
            thousands(mid),
            thousands(large),
            fmt_num((rl - rm) / (large - mid) as f64)
        ),
        loadgen: "(RSS(large) − RSS(small)) / (large − small)".into(),
        ..Row::default()
    });
    Ok(())
}

fn lookup_figure(run: &mut Run) -> anyhow::Result<()> {
    let [small, _, large] = run.cfg.sizes;
    let s = inproc::state_with(small)?;
    let l = inproc::state_with(large)?;
    let (ps, pl) = (
        inproc::PlainIndex::with(small),
        inproc::PlainIndex::with(large),
    );
    let samples = run.cfg.lookup_samples;
    inproc::auth_lookup_ns(&s, small, samples / 4)?;
    inproc::auth_lookup_ns(&l, large, samples / 4)?;
    let (mut a, mut b, mut pa, mut pb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..run.cfg.rounds {
        a.push(inproc::auth_lookup_ns(&l, large, samples)?);
        b.push(inproc::auth_lookup_ns(&s, small, samples)?);
        pa.push(inproc::plain_lookup_ns(&pl, large, samples)?);
        pb.push(inproc::plain_lookup_ns(&ps, small, samples)?);
    }
    let (ns_l, ns_s) = (median(&a), median(&b));
    let (pns_l, pns_s) = (median(&pa), median(&pb));
    let ratio = ns_l / ns_s;
    let settings = format!(
        "in-process, {samples} random clients' tokens per round, {} rounds, interleaved (harness process, unpinned)",
        run.cfg.rounds
    );
    run.rows.push(Row {
        figure: format!(
            "scale: auth lookup (keyed hash + token index), {} clients",
            thousands(large)
        ),
        ours: format!("{} ns", fmt_num(ns_l)),
        baseline: format!("{} ns ({} clients)", fmt_num(ns_s), thousands(small)),
        ratio: format!("{ratio:.2}×"),
        target: "flat (≤ 2× the small figure)".into(),
        pass: Some(ratio <= 2.0),
        loadgen: settings.clone(),
        ..Row::default()
    });
    run.rows.push(Row {
        figure: format!(
            "scale: floor of any in-memory index — keyed hash + plain std HashMap<[u8; 32], u32>, {} clients",
            thousands(large)
        ),
        ours: format!("{} ns", fmt_num(pns_l)),
        baseline: format!("{} ns ({} clients)", fmt_num(pns_s), thousands(small)),
        ratio: format!("{:.2}×", pns_l / pns_s),
        loadgen: format!("{settings}; ours at {}: {:+.0} ns over this floor", thousands(large), ns_l - pns_l),
        ..Row::default()
    });
    Ok(())
}
