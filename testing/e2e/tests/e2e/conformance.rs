//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `scripts/setup-node-tools.sh`) against a development-mode data plane, for both protocol eras:
//!
//! - the rmcp conformance fixture (`testing/conformance-server`) directly: the parity baseline;
//! - `/servers/cf/mcp` with that fixture upstream: the content scenarios (tools, prompts,
//!   resources, completion) plus everything the gateway answers itself;
//! - `/mcp` (aggregate, prefixed names): the gateway's own scenarios, one by one.
//!
//! Each run uses the suite's own `--expected-failures` check (unexpected failures and stale
//! entries both fail it) with a baseline from `testing/conformance/`. This module also enforces
//! the baseline policy: a Canopy entry is either `upstream:` — and then the fixture fails the same
//! check directly — or `stateless:` with the spec clause that rules it out for a stateless proxy.
//!
//! Plus the interop tests of issue 5: the TypeScript SDK client (`testing/node/client.mjs`) in
//! enterprise mode, and `@modelcontextprotocol/server-everything` over stdio, streamable HTTP and
//! SSE (submodule `interop`).

pub(crate) mod interop;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use canopy_e2e::{bin_path, workspace_root, ChildProcess, Cli, ControlPlane, DataPlane};

/// Failure deadline of one suite invocation (the suite has its own 30 s per-scenario timeout).
const SUITE_DEADLINE: Duration = Duration::from_secs(300);

const ERAS: [&str; 2] = ["2025-11-25", "2026-07-28"];

/// The gateway's own scenarios, run against the aggregate `/mcp` at each era's wire. Content
/// scenarios call unprefixed fixture names, so they run on `/servers/<name>/mcp` instead; so does
/// `caching`, whose resource checks need one server's endpoint (the aggregate serves no resources).
fn aggregate_scenarios(era: &str) -> &'static [&'static str] {
    match era {
        "2025-11-25" => &[
            "server-initialize",
            "ping",
            "tools-list",
            "prompts-list",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
            "server-session-lifecycle",
        ],
        _ => &[
            "server-stateless",
            "tools-list",
            "prompts-list",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
            "http-header-validation",
        ],
    }
}

pub(crate) use canopy_e2e::{node, node_tools};

/// A spawned program's `listening on <addr>` line (the fixtures' readiness signal).
pub(crate) fn read_listening_line(process: &mut ChildProcess) -> SocketAddr {
    let stdout = process
        .child_mut()
        .stdout
        .take()
        .expect("child stdout must be piped");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("cannot read child stdout");
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            let addr = addr.trim().parse().expect("bad listening address");
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return addr;
        }
    }
    panic!("{} exited before printing `listening on`", process.name());
}

/// The conformance fixture over streamable HTTP (stateful, as the reference server is), its
/// stderr going to `stderr`.
pub(crate) fn start_fixture(stderr: impl Into<Stdio>) -> (ChildProcess, SocketAddr) {
    let mut cmd = Command::new(bin_path("canopy-conformance-server"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut process = ChildProcess::spawn("canopy-conformance-server", cmd);
    let addr = read_listening_line(&mut process);
    (process, addr)
}

struct SuiteRun {
    label: String,
    ok: bool,
    summary: String,
    output: String,
}

/// One suite invocation with a baseline; `ok` is the suite's exit status (0 = only expected
/// failures and no stale entries).
fn run_suite(label: &str, url: &str, selection: &[&str], baseline: &Path, out: &Path) -> SuiteRun {
    std::fs::create_dir_all(out).expect("suite output dir");
    let log = out.join(format!("{}.log", label.replace(['/', ' '], "_")));
    let file = std::fs::File::create(&log).expect("suite log");
    let mut cmd = Command::new(node());
    cmd.arg(node_tools().join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", url])
        .args(selection)
        .arg("--expected-failures")
        .arg(baseline)
        .arg("-o")
        .arg(out.join("results"))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file);
    let mut process = ChildProcess::spawn(&format!("conformance {label}"), cmd);
    let status = process
        .wait_timeout(SUITE_DEADLINE)
        .unwrap_or_else(|| panic!("conformance suite ({label}) did not finish"));
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = count_checks(&out.join("results"));
    SuiteRun {
        label: label.to_owned(),
        ok: status.success(),
        summary,
        output,
    }
}

/// Baseline entries → their reason comment.
fn baseline(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .map(|l| {
            let (entry, reason) = l.split_once('#').unwrap_or((l, ""));
            (entry.trim().to_owned(), reason.trim().to_owned())
        })
        .collect()
}

fn baseline_path(kind: &str, era: &str) -> PathBuf {
    workspace_root()
        .join("testing/conformance")
        .join(format!("{kind}-{era}.yml"))
}

/// The policy of issue 5: a Canopy baseline entry is allowed only where the upstream itself fails
/// (the same entry is in the fixture's baseline) or the spec makes it impossible for a stateless
/// proxy (the reason names the clause).
#[test]
fn conformance_baselines_follow_the_policy() {
    for era in ERAS {
        let fixture = baseline(&baseline_path("fixture", era));
        assert!(
            fixture.values().all(|r| r.starts_with("upstream:")),
            "fixture-{era}.yml: every entry is an upstream failure with a reason"
        );
        for kind in ["servers", "aggregate"] {
            for (entry, reason) in baseline(&baseline_path(kind, era)) {
                if reason.starts_with("upstream:") {
                    let scenario = entry.split(':').next().unwrap_or_default();
                    assert!(
                        fixture.contains_key(&entry) || fixture.contains_key(scenario),
                        "{kind}-{era}.yml: `{entry}` claims the upstream fails it, but the fixture \
                         baseline has no such entry"
                    );
                } else {
                    assert!(
                        reason.starts_with("stateless:") && reason.contains("SPEC §3"),
                        "{kind}-{era}.yml: `{entry}` needs `# upstream: …` or `# stateless: …` \
                         naming the clause, got {reason:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn conformance_suite_both_eras() {
    let work = tempfile::Builder::new()
        .prefix("canopy-conformance-")
        .tempdir()
        .expect("temp dir");
    let (_fixture, fixture_addr) =
        start_fixture(std::fs::File::create(work.path().join("fixture.stderr")).expect("log file"));
    let fixture_url = format!("http://{fixture_addr}/mcp");

    let cp = ControlPlane::start_development();
    let dp = DataPlane::start(&cp);
    let cli = Cli::new(&cp);
    cli.ok(&["register", "--name", "cf", "--url", &fixture_url]);
    assert!(
        dp.wait_ready(Duration::from_secs(30)),
        "data plane not ready:\n{}",
        dp.logs()
    );
    let servers_url = format!("{}/servers/cf/mcp", dp.url());
    let aggregate_url = dp.mcp_url();

    let mut runs = Vec::new();
    for era in ERAS {
        let requirements = ["--requirements", era];
        let dir = work.path().join(era);
        std::fs::create_dir_all(&dir).expect("run dir");
        runs.push(run_suite(
            &format!("fixture {era}"),
            &fixture_url,
            &requirements,
            &baseline_path("fixture", era),
            &dir.join("fixture"),
        ));
        runs.push(run_suite(
            &format!("servers/cf {era}"),
            &servers_url,
            &requirements,
            &baseline_path("servers", era),
            &dir.join("servers"),
        ));
        for scenario in aggregate_scenarios(era) {
            runs.push(run_suite(
                &format!("aggregate {era} {scenario}"),
                &aggregate_url,
                &["--scenario", scenario, "--spec-version", era],
                &baseline_path("aggregate", era),
                &dir.join("aggregate").join(scenario),
            ));
        }
    }

    for run in &runs {
        eprintln!(
            "conformance {}: {}",
            run.label,
            if run.ok { "ok" } else { "UNEXPECTED" }
        );
        if !run.summary.is_empty() {
            eprintln!("    {}", run.summary);
        }
    }
    let failed: Vec<&SuiteRun> = runs.iter().filter(|r| !r.ok).collect();
    assert!(
        failed.is_empty(),
        "conformance runs with unexpected failures or stale baseline entries:\n{}\n\
         data plane logs:\n{}",
        failed
            .iter()
            .map(|r| format!("=== {}\n{}", r.label, tail(&r.output, 80)))
            .collect::<Vec<_>>()
            .join("\n"),
        dp.logs()
    );
}

/// "N passed, M failed" over every `checks.json` the suite wrote (FAILURE and WARNING fail, as
/// the suite's own baseline check counts them).
fn count_checks(results: &Path) -> String {
    let (mut passed, mut failed) = (0, 0);
    for dir in std::fs::read_dir(results).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(dir.path().join("checks.json")) else {
            continue;
        };
        let checks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        for c in checks {
            match c["status"].as_str() {
                Some("SUCCESS") => passed += 1,
                Some("FAILURE" | "WARNING") => failed += 1,
                _ => {}
            }
        }
    }
    format!("{passed} passed, {failed} failed")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
