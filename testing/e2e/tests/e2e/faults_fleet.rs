//! Fleet guarantees under faults (issue 4): acknowledged revocation with a stopped data plane,
//! token rotation with grace, change-log compaction (by count and by age) falling back to a
//! snapshot, `list data-planes` kept fresh by heartbeats, and tool-catalogue refresh (manual
//! and periodic).

use canopy_e2e::{free_port, Cli, ControlPlane, ControlPlaneOptions, DataPlane};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::common::{access_token, find, revision};
use crate::faults::{
    auth_status, data_plane_pid, metric, poll, signal, tool_names, PortFixture, CONVERGE,
};

fn enterprise_with(extra: &[&str]) -> (ControlPlane, Cli) {
    let cp = ControlPlane::start(ControlPlaneOptions {
        enterprise: true,
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    admin.json(&["init-server"]);
    (cp, admin)
}

fn ready(dp: &DataPlane) {
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
}

/// Polls until `token` gets `status` on `dp`.
fn wait_status(dp: &DataPlane, token: &str, status: u16, what: &str) {
    poll(
        CONVERGE,
        what,
        || dp.logs(),
        || (auth_status(dp, token) == status).then_some(()),
    );
}

#[test]
fn faults_wait_names_a_stopped_data_plane_and_exits_non_zero() {
    let (_cp, admin) = enterprise_with(&[]);
    let a = DataPlane::start_with(&_cp, &["--node-id", "wait-a"]);
    let b = DataPlane::start_with(&_cp, &["--node-id", "wait-b"]);
    ready(&a);
    ready(&b);
    let t1 = access_token(&admin.json(&["create", "mcp-client", "one"]));
    let t2 = access_token(&admin.json(&["create", "mcp-client", "two"]));
    for dp in [&a, &b] {
        wait_status(dp, &t1, 200, "client one synced");
        wait_status(dp, &t2, 200, "client two synced");
    }

    admin.json(&["create", "mcp-client", "scoped"]);
    admin.json(&["create", "user", "bob"]);
    // rmcp is registered just below: stored ahead of it on purpose.
    let viewer = access_token(&admin.json(&[
        "create",
        "mcp-client",
        "viewer",
        "--allow",
        "rmcp",
        "--force",
    ]));
    let upstream = canopy_e2e::FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let sees_tools = |dp: &DataPlane| !tool_names(dp, Some(&viewer)).1.is_empty();
    for dp in [&a, &b] {
        poll(
            CONVERGE,
            "rmcp's tools synced",
            || dp.logs(),
            || sees_tools(dp).then_some(()),
        );
    }
    let b_pid = data_plane_pid(&b);
    signal(b_pid, Signal::SIGSTOP);
    // Text output: non-zero (3), names the pending data plane.
    let out = admin.run(&["delete", "mcp-client", "one", "--wait", "1s"]);
    let resume_b = || signal(b_pid, Signal::SIGCONT);
    if out.code != Some(3) {
        resume_b();
        panic!("expected exit code 3, got {out:?}");
    }
    assert!(
        out.stderr.contains("wait-b"),
        "stderr must name wait-b: {out:?}"
    );
    assert!(!out.stderr.contains("wait-a"), "wait-a confirmed: {out:?}");
    assert!(
        out.stdout.contains("1/2"),
        "text must say how many confirmed: {out:?}"
    );
    // Every revoking / re-scoping command behaves the same.
    for args in [
        &[
            "update",
            "mcp-client",
            "scoped",
            "--allow",
            "rmcp",
            "--wait",
            "1s",
        ][..],
        &["delete", "user", "bob", "--wait", "1s"][..],
        // Deregistering takes the server's tools away from every client: acknowledged too.
        &["deregister", "rmcp", "--wait", "1s"][..],
    ] {
        let out = admin.run(args);
        if out.code != Some(3) || !out.stderr.contains("wait-b") {
            resume_b();
            panic!("{args:?}: expected exit 3 naming wait-b, got {out:?}");
        }
        // stdout must not claim success: the change is saved, wait-b has not applied it.
        let honest = out.stdout.contains("is saved (revision")
            && out
                .stdout
                .contains("not applied yet by data plane(s): wait-b")
            && !out.stdout.contains("no longer works")
            && !out.stdout.contains("updated (");
        if !honest {
            resume_b();
            panic!("{args:?}: stdout claims more than was confirmed: {out:?}");
        }
    }
    // JSON output: the counts and the pending data plane, still exit 3.
    let out = admin.run_json(&["delete", "mcp-client", "two", "--wait", "1s"]);
    resume_b();
    assert_eq!(out.code, Some(3), "{out:?}");
    let json: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("stdout is not JSON: {out:?}"));
    assert_eq!(json["confirmed"], 1, "{json}");
    assert_eq!(json["expected"], 2, "{json}");
    assert_eq!(json["pending"], serde_json::json!(["wait-b"]), "{json}");
    assert!(json["elapsed_ms"].is_f64(), "{json}");
    assert!(out.stderr.contains("wait-b"), "{out:?}");

    // wait-a applied both revocations at once; wait-b catches up once it runs again.
    assert_eq!(auth_status(&a, &t1), 401);
    assert_eq!(auth_status(&a, &t2), 401);
    wait_status(&b, &t1, 401, "wait-b applies the revocation after SIGCONT");
    wait_status(&b, &t2, 401, "wait-b applies the second revocation");
    // wait-a dropped the deregistered server at once; wait-b once it runs again.
    assert!(!sees_tools(&a), "wait-a still lists rmcp's tools");
    poll(
        CONVERGE,
        "wait-b drops the deregistered server",
        || b.logs(),
        || (!sees_tools(&b)).then_some(()),
    );
    // With everyone running, the same kind of command confirms on 2/2 and exits 0.
    admin.json(&["create", "mcp-client", "three"]);
    let del = admin.json(&["delete", "mcp-client", "three", "--wait", "10s"]);
    assert_eq!(
        (del["confirmed"].as_u64(), del["expected"].as_u64()),
        (Some(2), Some(2)),
        "{del}"
    );
}

#[test]
fn faults_rotation_with_grace_expires_the_old_token_everywhere() {
    let (cp, admin) = enterprise_with(&[]);
    let dps = [
        DataPlane::start_with(&cp, &["--node-id", "grace-a"]),
        DataPlane::start_with(&cp, &["--node-id", "grace-b"]),
    ];
    for dp in &dps {
        ready(dp);
    }
    let old = "old-token-0123456789-abcdef";
    let new = "new-token-0123456789-abcdef";
    admin.json(&["create", "mcp-client", "rot", "--access-token", old]);
    for dp in &dps {
        wait_status(dp, old, 200, "client synced");
    }
    let upd = admin.json(&[
        "update",
        "mcp-client",
        "rot",
        "--access-token",
        new,
        "--grace",
        "5s",
    ]);
    assert_eq!(
        (upd["confirmed"].as_u64(), upd["expected"].as_u64()),
        (Some(2), Some(2)),
        "{upd}"
    );
    for dp in &dps {
        assert_eq!(
            auth_status(dp, new),
            200,
            "new token rejected on {}",
            dp.addr()
        );
        assert_eq!(
            auth_status(dp, old),
            200,
            "old token rejected inside its grace on {}",
            dp.addr()
        );
    }
    // No further command: the old token stops working on every data plane by itself.
    for dp in &dps {
        wait_status(dp, old, 401, "old token expires after the grace");
        assert_eq!(auth_status(dp, new), 200);
    }
}

/// A data plane that was away while the change log was compacted past its revision gets a
/// snapshot (not a resume), and ends up with the right state.
fn compaction_falls_back_to_snapshot(cp_args: &[&str], wait_for_compaction: bool) {
    let (cp, admin) = enterprise_with(cp_args);
    let keep = access_token(&admin.json(&["create", "mcp-client", "keep"]));
    let gone = access_token(&admin.json(&["create", "mcp-client", "gone"]));
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let cache = cache_dir.path().join("dp.cache");
    let cache_arg = cache.display().to_string();
    let mut dp = DataPlane::start_with(&cp, &["--node-id", "behind", "--cache-file", &cache_arg]);
    ready(&dp);
    wait_status(&dp, &gone, 200, "synced");
    // Away (its state survives in the cache file, written on shutdown).
    dp.terminate();

    let deleted = revision(&admin.json(&["delete", "mcp-client", "gone"]));
    let mut added = Vec::new();
    for i in 0..6 {
        added.push(access_token(&admin.json(&[
            "create",
            "mcp-client",
            &format!("new-{i}"),
        ])));
    }
    if wait_for_compaction {
        // Compacted past the data plane's revision (at least through the deletion).
        poll(
            CONVERGE,
            "age compaction past the deletion",
            || cp.logs(),
            || {
                let through = cp
                    .logs()
                    .lines()
                    .filter(|l| l.contains("older than --changelog-max-age"))
                    .filter_map(|l| {
                        l.split("through=")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()?;
                (through >= deleted).then_some(())
            },
        );
    }

    dp.restart();
    poll(
        CONVERGE,
        "snapshot after falling behind compaction",
        || dp.logs(),
        || (metric(&dp, "canopy_sync_snapshots_total") >= 1.0).then_some(()),
    );
    assert_eq!(
        metric(&dp, "canopy_sync_resumes_total"),
        0.0,
        "a resume past the compacted log is impossible; logs:\n{}",
        dp.logs()
    );
    assert_eq!(
        auth_status(&dp, &gone),
        401,
        "deleted client survived the snapshot"
    );
    assert_eq!(auth_status(&dp, &keep), 200);
    for t in &added {
        assert_eq!(
            auth_status(&dp, t),
            200,
            "client created while away is missing"
        );
    }
}

#[test]
fn faults_compaction_by_count_falls_back_to_snapshot() {
    compaction_falls_back_to_snapshot(&["--changelog-retain", "2"], false);
}

#[test]
fn faults_compaction_by_age_falls_back_to_snapshot() {
    compaction_falls_back_to_snapshot(&["--changelog-max-age", "1s"], true);
}

#[test]
fn faults_list_data_planes_last_seen_follows_heartbeats() {
    let (cp, admin) = enterprise_with(&[]);
    let dp = DataPlane::start_with(&cp, &["--node-id", "beating"]);
    ready(&dp);
    let seen = |admin: &Cli| -> u64 {
        let list = admin.json(&["list", "data-planes"]);
        let me = list
            .as_array()
            .and_then(|a| a.iter().find(|d| d["id"] == "beating"))
            .unwrap_or_else(|| panic!("beating not listed: {list}"));
        assert_eq!(me["connected"], true, "{list}");
        assert_eq!(me["lag"], 0, "{list}");
        me["last_seen_ms"].as_u64().expect("last_seen_ms")
    };
    let first = seen(&admin);
    assert!(first > 0);
    // No changes at all: only heartbeats (and their acks) can move it.
    poll(
        CONVERGE,
        "last_seen advanced by heartbeats",
        || dp.logs(),
        || (seen(&admin) > first).then_some(()),
    );
}

/// `tools/list` of `dp` (development mode) contains every one of `tools`.
fn wait_tools(dp: &DataPlane, tools: &[&str], what: &str) {
    poll(
        CONVERGE,
        what,
        || format!("tools: {:?}", tool_names(dp, None).1),
        || {
            let names = tool_names(dp, None).1;
            tools
                .iter()
                .all(|t| names.iter().any(|n| n == t))
                .then_some(())
        },
    );
}

#[test]
fn faults_refresh_server_reaches_data_planes() {
    let cp = ControlPlane::start(ControlPlaneOptions {
        extra_args: vec!["--refresh-interval".into(), "0".into()],
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    let dp = DataPlane::start(&cp);
    ready(&dp);
    let port = free_port();
    let mut upstream = PortFixture::start(port, 0);
    admin.ok(&["register", "--name", "cat", "--url", &upstream.url()]);
    wait_tools(&dp, &["cat__echo"], "registered tools");
    assert!(!tool_names(&dp, None).1.iter().any(|n| n == "cat__tool_0"));

    upstream.kill9();
    let _upstream = PortFixture::start(port, 2);
    let out = admin.json(&["refresh", "server", "cat"]);
    assert!(out.to_string().contains("tool"), "{out}");
    wait_tools(
        &dp,
        &["cat__echo", "cat__tool_0", "cat__tool_1"],
        "refreshed tools on the data plane",
    );
    let servers = admin.json(&["list", "servers"]);
    find(&servers, "cat");
}

#[test]
fn faults_periodic_refresh_reaches_data_planes_and_survives_a_down_upstream() {
    let cp = ControlPlane::start(ControlPlaneOptions {
        extra_args: vec!["--refresh-interval".into(), "1s".into()],
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    let dps = [DataPlane::start(&cp), DataPlane::start(&cp)];
    for dp in &dps {
        ready(dp);
    }
    let port = free_port();
    let mut upstream = PortFixture::start(port, 0);
    admin.ok(&["register", "--name", "cat", "--url", &upstream.url()]);
    for dp in &dps {
        wait_tools(dp, &["cat__echo"], "registered tools");
    }

    // The upstream changes its tools; nobody runs a command.
    upstream.kill9();
    let mut upstream = PortFixture::start(port, 3);
    for dp in &dps {
        wait_tools(
            dp,
            &["cat__tool_0", "cat__tool_1", "cat__tool_2"],
            "periodic refresh on the data plane",
        );
    }

    // Unchanged catalogues store nothing: later rounds leave the revision alone.
    let rev = |dp: &DataPlane| {
        crate::faults::readyz(dp).1["revision"]
            .as_u64()
            .expect("revision")
    };
    let settled = rev(&dps[0]);
    let rounds = |cp: &ControlPlane| cp.logs().matches("periodic refresh round done").count();
    let seen = rounds(&cp);
    poll(
        CONVERGE,
        "three more refresh rounds",
        || cp.logs(),
        || (rounds(&cp) >= seen + 3).then_some(()),
    );
    assert_eq!(
        rev(&dps[0]),
        settled,
        "an unchanged catalogue created a change"
    );

    // A down upstream: the failure is logged, the server and its tools stay.
    upstream.kill9();
    poll(
        CONVERGE,
        "refresh failure logged",
        || cp.logs(),
        || cp.logs().contains("periodic refresh failed").then_some(()),
    );
    find(&admin.json(&["list", "servers"]), "cat");
    for dp in &dps {
        let names = tool_names(dp, None).1;
        assert!(
            names.iter().any(|n| n == "cat__tool_2"),
            "tools dropped after a failed refresh: {names:?}"
        );
        assert_eq!(rev(dp), settled);
    }
}
