//! Two data planes on one control plane: a client created, re-scoped and deleted through the CLI
//! is seen accordingly by both, on the first request after the (acknowledged) CLI command returns;
//! `list data-planes` shows both; the upstream receives the registered token, not the client's.

use canopy_e2e::{DataPlane, FixtureOptions, FixtureServer};
use serde_json::{json, Value};

use crate::common::{access_token, enterprise, first_text, revision};
use crate::dataplane_support::{eventually, post_legacy, post_modern, tool_names, SYNC_DEADLINE};

fn listed(dp: &DataPlane, token: &str) -> Vec<String> {
    let r = post_legacy(&dp.mcp_url(), Some(token), 1, "tools/list", json!({}));
    assert_eq!(r.status, 200, "{}: {r}", dp.url());
    tool_names(&r.result())
}

fn call(dp: &DataPlane, token: &str, tool: &str, modern: bool) -> crate::dataplane_support::Reply {
    let params = json!({"name": tool, "arguments": {"message": "fleet"}});
    if modern {
        post_modern(&dp.mcp_url(), Some(token), 2, "tools/call", params)
    } else {
        post_legacy(&dp.mcp_url(), Some(token), 2, "tools/call", params)
    }
}

/// The `{"revision","confirmed","expected","elapsed_ms"}` report of an acknowledged command.
fn assert_confirmed_by_both(report: &Value) {
    assert_eq!(report["expected"], 2, "{report}");
    assert_eq!(report["confirmed"], 2, "{report}");
    assert!(
        report["elapsed_ms"].is_f64(),
        "elapsed_ms is a float (sub-millisecond): {report}"
    );
    revision(report);
}

#[test]
fn two_data_planes_follow_create_rescope_delete() {
    let (cp, admin) = enterprise();
    let upstream_secret = "fleet-upstream-secret-0123456789";
    let upstream = FixtureServer::http_with(FixtureOptions {
        require_bearer: Some(upstream_secret.to_owned()),
        ..Default::default()
    });
    admin.ok(&[
        "register",
        "--name",
        "rmcp",
        "--url",
        &upstream.url(),
        "--bearer-token",
        upstream_secret,
    ]);
    let a = DataPlane::start_with(&cp, &["--node-id", "dp-a"]);
    let b = DataPlane::start_with(&cp, &["--node-id", "dp-b"]);
    for dp in [&a, &b] {
        assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    }

    // Both data planes are known to the control plane, connected, with their addresses.
    let planes = eventually("both data planes connected", SYNC_DEADLINE, || {
        let planes = admin.json(&["list", "data-planes"]);
        let connected = planes
            .as_array()
            .map(|p| {
                p.iter()
                    .filter(|d| d["connected"] == true && (d["id"] == "dp-a" || d["id"] == "dp-b"))
                    .count()
            })
            .unwrap_or(0);
        (connected == 2).then_some(planes)
    });
    for (id, dp) in [("dp-a", &a), ("dp-b", &b)] {
        let entry = planes
            .as_array()
            .and_then(|p| p.iter().find(|d| d["id"] == id))
            .unwrap_or_else(|| panic!("{id} missing: {planes}"));
        assert!(entry["applied_revision"].is_u64(), "{entry}");
        assert!(entry["lag"].is_u64(), "{entry}");
        assert!(entry["last_seen_ms"].as_u64().unwrap_or(0) > 0, "{entry}");
        assert!(
            entry["address"]
                .as_str()
                .is_some_and(|s| s.contains(&dp.addr().port().to_string())),
            "{id} should report its listen address {}: {entry}",
            dp.addr()
        );
    }
    let text = admin.ok(&["list", "data-planes"]);
    assert!(
        text.stdout.contains("dp-a") && text.stdout.contains("dp-b"),
        "{text}"
    );

    // Create: not an acknowledged command, so each data plane gets a bounded wait.
    let created = admin.json(&["create", "mcp-client", "fleet", "--allow", "rmcp__echo"]);
    let token = access_token(&created);
    for dp in [&a, &b] {
        eventually(
            &format!("fleet visible on {}", dp.url()),
            SYNC_DEADLINE,
            || {
                (post_legacy(&dp.mcp_url(), Some(&token), 1, "tools/list", json!({})).status == 200)
                    .then_some(())
            },
        );
        assert_eq!(listed(dp, &token), ["rmcp__echo"]);
        assert_eq!(
            first_text(&call(dp, &token, "rmcp__echo", false).result()),
            "fleet"
        );
        assert_eq!(
            call(dp, &token, "rmcp__auth_header", true).error().0,
            -32602
        );
    }

    // Widen: acknowledged by both; the very next request on each sees it.
    let report = admin.json(&[
        "update",
        "mcp-client",
        "fleet",
        "--allow",
        "rmcp__echo, rmcp__auth_header",
    ]);
    assert_confirmed_by_both(&report);
    for dp in [&a, &b] {
        assert_eq!(
            listed(dp, &token),
            ["rmcp__auth_header", "rmcp__echo"],
            "{}",
            dp.url()
        );
        for modern in [false, true] {
            // The upstream saw the registered token, never the client's.
            let r = call(dp, &token, "rmcp__auth_header", modern);
            let seen = first_text(&r.result()).to_owned();
            assert_eq!(seen, format!("Bearer {upstream_secret}"), "{r}");
            assert!(!seen.contains(&token), "client token forwarded: {seen}");
        }
    }

    // Narrow: echo disappears everywhere at once.
    let report = admin.json(&[
        "update",
        "mcp-client",
        "fleet",
        "--allow",
        "rmcp__auth_header",
    ]);
    assert_confirmed_by_both(&report);
    for dp in [&a, &b] {
        assert_eq!(listed(dp, &token), ["rmcp__auth_header"], "{}", dp.url());
        for modern in [false, true] {
            let r = call(dp, &token, "rmcp__echo", modern);
            assert_eq!(r.status, 200, "{r}");
            assert_eq!(r.error().0, -32602, "{r}");
        }
    }

    // Delete: the token is refused by both on the next request.
    let report = admin.json(&["delete", "mcp-client", "fleet"]);
    assert_confirmed_by_both(&report);
    let deleted_at = revision(&report);
    for dp in [&a, &b] {
        let r = post_legacy(&dp.mcp_url(), Some(&token), 1, "tools/list", json!({}));
        assert_eq!(r.status, 401, "{}: {r}", dp.url());
        assert!(r.header("www-authenticate").is_some(), "{r}");
        let r = call(dp, &token, "rmcp__auth_header", true);
        assert_eq!(r.status, 401, "{}: {r}", dp.url());
    }

    // The fleet view caught up with the deletion on both.
    eventually(
        "both data planes report the delete's revision",
        SYNC_DEADLINE,
        || {
            let planes = admin.json(&["list", "data-planes"]);
            let ok = ["dp-a", "dp-b"].iter().all(|id| {
                planes.as_array().is_some_and(|p| {
                    p.iter().any(|d| {
                        d["id"] == *id
                            && d["applied_revision"].as_u64().unwrap_or(0) >= deleted_at
                            && d["lag"] == 0
                    })
                })
            });
            ok.then_some(())
        },
    );
    for dp in [&a, &b] {
        let (status, body) = dp.get("/readyz").expect("readyz");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(body.trim()).expect("readyz JSON");
        assert!(v["revision"].as_u64().unwrap_or(0) >= deleted_at, "{v}");
    }
}
