//! The control plane's Prometheus endpoint (`--metrics-listen`) while a real identity provider
//! (oidc-provider, testing/node/idp.mjs) goes bad after `create`: its keys are served through a
//! loopback relay the test turns to garbage. The failure counters rise, `list
//! identity-providers` names the failure, tokens signed with the last good keys keep verifying
//! on the data plane, and an unknown `kid` prompts a (failing) fetch that is counted.

use canopy_e2e::{
    free_port, http_get, Cli, ControlPlane, ControlPlaneOptions, DataPlane, FixtureServer,
    IdentityProvider, StaticHttpServer,
};
use serde_json::{json, Value};
use std::net::SocketAddr;

use crate::common::find;
use crate::dataplane_support::{eventually, post_legacy, Reply, SYNC_DEADLINE};
use crate::faults::CONVERGE;

/// The `/metrics` page of the control plane.
fn scrape(metrics: SocketAddr) -> String {
    let (status, body) =
        http_get(metrics, "/metrics").unwrap_or_else(|| panic!("no answer from /metrics"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels as written) on a page, if present.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn corp(page: &str, family: &str) -> f64 {
    let series = format!("{family}{{provider=\"corp\"}}");
    sample(page, &series).unwrap_or_else(|| panic!("no {series} in\n{page}"))
}

fn list(dp: &DataPlane, token: &str) -> Reply {
    post_legacy(&dp.mcp_url(), Some(token), 1, "tools/list", json!({}))
}

#[test]
fn failing_identity_provider_in_metrics_and_list() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cp = ControlPlane::start(ControlPlaneOptions {
        enterprise: true,
        extra_args: vec![
            "--idp-refresh-interval".into(),
            "1s".into(),
            "--metrics-listen".into(),
            metrics.to_string(),
        ],
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    admin.json(&["init-server"]);
    let (status, health) = http_get(metrics, "/healthz").unwrap_or_default();
    assert_eq!(status, 200, "{health}");

    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);

    // The real provider's discovery; its key set relayed by a server the test controls.
    let idp = IdentityProvider::start();
    let (status, discovery) =
        http_get(idp.addr(), "/.well-known/openid-configuration").unwrap_or_default();
    assert_eq!(status, 200, "{discovery}");
    let discovery: Value = serde_json::from_str(&discovery).unwrap_or_default();
    let jwks_path = discovery["jwks_uri"]
        .as_str()
        .and_then(|u| u.strip_prefix(&idp.issuer()))
        .unwrap_or_else(|| panic!("no jwks_uri of the issuer in {discovery}"))
        .to_owned();
    let (status, jwks) = http_get(idp.addr(), &jwks_path).unwrap_or_default();
    assert_eq!(status, 200, "{jwks}");
    let published = serde_json::from_str::<Value>(&jwks).unwrap_or_default()["keys"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_else(|| panic!("no keys in {jwks}"));
    let relay = StaticHttpServer::start();
    relay.set("/jwks", 200, &jwks);
    admin.ok(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.issuer(),
        "--jwks-uri",
        &format!("{}/jwks", relay.url()),
    ]);
    admin.ok(&[
        "create",
        "access-rule",
        "alice",
        "--idp",
        "corp",
        "--subject",
        "alice",
        "--allow",
        "rmcp",
    ]);
    let dp = DataPlane::start(&cp);
    assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    eventually("the provider on the data plane", SYNC_DEADLINE, || {
        let (status, body) = dp.get("/.well-known/oauth-protected-resource/mcp")?;
        (status == 200 && body.contains(&idp.issuer())).then_some(())
    });
    let mint = |extra: Value| {
        let mut req = json!({"sub": "alice", "aud": dp.mcp_url()});
        if let (Some(req), Some(extra)) = (req.as_object_mut(), extra.as_object()) {
            req.extend(extra.clone());
        }
        idp.mint(&req)
    };
    let before = list(&dp, &mint(json!({})));
    assert_eq!(before.status, 200, "{before}");

    // Healthy: periodic refreshes succeed.
    let page = eventually("a periodic refresh", CONVERGE, || {
        let page = scrape(metrics);
        (corp(&page, "canopy_cp_idp_refresh_attempts_total") >= 1.0).then_some(page)
    });
    assert_eq!(
        corp(&page, "canopy_cp_idp_refresh_failures_total"),
        0.0,
        "{page}"
    );
    assert_eq!(
        corp(&page, "canopy_cp_idp_consecutive_failures"),
        0.0,
        "{page}"
    );
    assert_eq!(
        corp(&page, "canopy_cp_idp_keys"),
        published as f64,
        "{page}"
    );
    assert!(corp(&page, "canopy_cp_idp_last_success_timestamp_seconds") > 1.0e9);
    assert_eq!(sample(&page, "canopy_cp_data_planes_connected"), Some(1.0));
    assert_eq!(sample(&page, "canopy_cp_sync_streams"), Some(1.0));
    let ok_calls = sample(&page, "canopy_cp_admin_rpcs_total{result=\"ok\"}").unwrap_or(0.0);
    assert!(ok_calls >= 4.0, "{page}");

    // The provider's keys turn to garbage: failures rise, the last good keys stay.
    relay.set("/jwks", 200, "<html>maintenance</html>");
    let page = eventually("failures counted", CONVERGE, || {
        let page = scrape(metrics);
        (corp(&page, "canopy_cp_idp_consecutive_failures") >= 2.0).then_some(page)
    });
    assert!(
        corp(&page, "canopy_cp_idp_refresh_failures_total") >= 2.0,
        "{page}"
    );
    assert_eq!(
        corp(&page, "canopy_cp_idp_keys"),
        published as f64,
        "{page}"
    );
    let last_success = corp(&page, "canopy_cp_idp_last_success_timestamp_seconds");
    assert!(last_success > 1.0e9, "{page}");
    let listed = admin.json(&["list", "identity-providers"]);
    let p = find(&listed, "corp");
    assert!(p["last_error"].is_string(), "{p}");
    assert!(p["refresh_failures"].as_u64().unwrap_or(0) >= 2, "{p}");
    assert_eq!(
        p["key_ids"].as_array().map(Vec::len),
        Some(published),
        "{p}"
    );
    let text = admin.ok(&["list", "identity-providers"]);
    assert!(text.stdout.contains("FAILED"), "{text:?}");

    // A new token (not in any cache) still verifies with the last good keys.
    let after = list(&dp, &mint(json!({})));
    assert_eq!(after.status, 200, "{after}");
    let page = scrape(metrics);
    assert_eq!(
        corp(&page, "canopy_cp_idp_last_success_timestamp_seconds"),
        last_success,
        "no success while the keys are garbage: {page}"
    );

    // A kid nobody published: refused, reported, and the prompted fetch counted.
    let unknown = list(&dp, &mint(json!({"kid": "never-published"})));
    assert_eq!(unknown.status, 401, "{unknown}");
    eventually("the unknown-kid fetch counted", CONVERGE, || {
        let page = scrape(metrics);
        (corp(&page, "canopy_cp_idp_unknown_kid_fetches_total") >= 1.0).then_some(())
    });

    // The provider recovers: the streak ends.
    relay.set("/jwks", 200, &jwks);
    eventually("a success after the failures", CONVERGE, || {
        let page = scrape(metrics);
        (corp(&page, "canopy_cp_idp_consecutive_failures") == 0.0).then_some(())
    });
    assert!(find(&admin.json(&["list", "identity-providers"]), "corp")["last_error"].is_null());
}
