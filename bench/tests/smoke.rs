//! The benchmark harness's smoke mode (`bash bench/run.sh --smoke`): seconds, tiny sizes,
//! debug binaries. It checks the harness still runs end to end and writes a table with a
//! row for every figure — not the figures themselves.
//!
//! Like the end-to-end tests it spawns the workspace's real binaries from the debug target
//! dir and never builds them (run `cargo build --workspace --bins` first; scripts/test.sh does).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Row prefixes the table must hold (one per figure of the performance contract).
const ROWS: &[&str] = &[
    "tools/list via data plane",
    "tools/list via data plane, cached JWT (ES256)",
    "tools/list via data plane, static token",
    "data plane CPU per tools/list: cached JWT vs static token",
    "data plane RSS growth with 200 distinct live JWTs cached",
    "tools/call echo via data plane",
    "tools/call extra CPU per call",
    "tools/call echo via a bare forwarding proxy (floor of one HTTP hop)",
    "tools/call extra CPU per call of the bare forwarding proxy",
    "tools/call CPU per request by process: data plane",
    "tools/call CPU per request by process: upstream when proxied",
    "tools/call CPU per request by process: upstream when called directly",
    "tools/call CPU per request by process: bare forwarding proxy",
    "tools/call CPU per request by process: upstream behind the bare forwarding proxy",
    "experiment: tools/call echo via data plane, c=16, wake-up preemption off",
    "experiment: tools/call echo via bare forwarding proxy, c=16, wake-up preemption off",
    "open loop 200 req/s tools/call echo: added p50",
    "open loop 200 req/s tools/call echo: added p99",
    "revocation, 1 data plane ",
    "revocation, 4 data planes",
    "revocation, 8 data planes",
    "revoke subject, 1 data plane ",
    "revoke subject, 4 data planes",
    "revoke subject, 8 data planes",
    "scale: data plane cold sync",
    "scale: data plane RSS",
    "scale: data plane cold sync, 1,000 clients, first data plane after a control-plane start",
    "scale: auth lookup",
    "scale: floor of any in-memory index",
    "memory: data plane RSS, 100 clients",
    "memory: data plane RSS, 300 clients",
    "memory: data plane RSS, 1,000 clients",
    "memory: bytes per client",
    "control plane durable writes",
];

#[test]
fn smoke_run_writes_every_figure() {
    let debug = target_dir().join("debug");
    for bin in ["canopy-control-plane", "canopy-data-plane"] {
        assert!(
            debug.join(bin).is_file(),
            "binary `{bin}` not found in {}: run `cargo build --workspace --bins` first \
             (scripts/test.sh does it for you)",
            debug.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke.md");
    let status = Command::new("bash")
        .arg(workspace_root().join("bench/run.sh"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .arg("--work")
        .arg(dir.path().join("work"))
        .env("CANOPY_BENCH_NO_BUILD", "1")
        // The table goes to `out`; the echo on stdout would only clutter the test log.
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bench/run.sh --smoke failed: {status}");
    let table = std::fs::read_to_string(&out).unwrap();
    for row in ROWS {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("| {row}"))),
            "no row `{row}` in the smoke table:\n{table}"
        );
    }
    // Every row with a target has a verdict, and no cell is empty.
    for l in table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure"))
    {
        assert_eq!(l.matches(" | ").count(), 8, "malformed row: {l}");
    }
}
