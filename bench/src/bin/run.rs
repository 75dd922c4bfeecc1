//! `canopy-bench-run`: the orchestrator `bench/run.sh` calls after building.

use canopy_bench::harness::{self, Config};
use canopy_bench::loadgen_override;
use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-run",
    about = "Runs every Canopy benchmark figure and writes the table"
)]
struct Args {
    /// Seconds and tiny sizes: checks the harness, not the code.
    #[arg(long)]
    smoke: bool,
    /// Directory with every binary (target/release, or target/debug for --smoke).
    #[arg(long)]
    bins: PathBuf,
    /// Markdown output.
    #[arg(long)]
    out: PathBuf,
    /// Scratch directory (data dirs, logs). Default: a fresh temp dir.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Keep the work dir afterwards and reuse data dirs a previous run populated there
    /// (needs --work). For A/B runs of the scale figures: populating 1M clients takes minutes.
    /// A reused data dir is opened by the binaries under test, so a format change migrates it.
    #[arg(long, requires = "work")]
    keep_data: bool,
    /// Read criterion estimates from here (target/criterion) into the table.
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// Use the built-in load loop even when oha is installed.
    #[arg(long)]
    builtin_load: bool,
    /// Override the round length (seconds).
    #[arg(long)]
    round_secs: Option<f64>,
    /// Override the large scale size (default 1,000,000; smoke 1,000).
    #[arg(long)]
    large: Option<u64>,
    /// Run only one group of figures; `scale` = cold sync, RSS and auth lookup;
    /// `tools-list`, `tools-list-jwt` (cached JWT vs static token vs bare, and CPU per
    /// request), `tools-call` (throughput + extra CPU), `open-loop` = that HTTP figure;
    /// `revocation` = `delete mcp-client` and `revoke subject` with 1, 4 and 8 data planes.
    #[arg(long, value_parser = ["scale", "tools-list", "tools-list-jwt", "tools-call", "open-loop", "revocation"])]
    only: Option<String>,
    /// Free text recorded as the run's conditions.
    #[arg(long)]
    note: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let tmp;
    let work = match a.work {
        Some(w) => w,
        None => {
            tmp = std::env::temp_dir().join(format!("canopy-bench-{}", std::process::id()));
            tmp
        }
    };
    let mut cfg = Config::new(a.smoke, a.bins.clone(), a.out, work.clone());
    if a.builtin_load {
        cfg.generator = loadgen_override(&a.bins);
    }
    if let Some(s) = a.round_secs {
        cfg.round_secs = s;
    }
    if let Some(l) = a.large {
        cfg.sizes[2] = l;
    }
    cfg.criterion_dir = a.criterion_dir;
    cfg.keep_data = a.keep_data;
    cfg.note = a.note;
    cfg.only_scale = a.only.as_deref() == Some("scale");
    cfg.only_http = a.only.filter(|o| o != "scale");
    let result = harness::run(cfg).await;
    match &result {
        Ok(md) => {
            println!("{md}");
            if !a.keep_data {
                let _ = std::fs::remove_dir_all(&work);
            }
        }
        Err(e) => eprintln!(
            "benchmark failed: {e:#}\n(logs kept in {})",
            work.join("logs").display()
        ),
    }
    result.map(|_| ())
}
