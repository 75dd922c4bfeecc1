//! Data planes as OAuth 2.1 resource servers, against a real identity provider (oidc-provider,
//! testing/node/idp.mjs): the official Python (both protocol eras) and TypeScript SDK clients sign
//! in given only the URL; every refusal of issue 11 is a 401 with the challenge; a revoked subject
//! and a deleted provider are refused on every data plane as soon as the command returns; static
//! tokens keep working; no token reaches the logs or the upstream. One stack for all of it.

use canopy_e2e::{
    node_oauth_client, python_oauth_client, DataPlane, FixtureOptions, FixtureServer,
    IdentityProvider,
};
use serde_json::{json, Value};

use crate::common::{access_token, enterprise, first_text};
use crate::dataplane_support::{eventually, post_legacy, tool_names, Reply, SYNC_DEADLINE};

const UPSTREAM_SECRET: &str = "oauth-upstream-secret-0123456789";

fn list(dp: &DataPlane, token: &str) -> Reply {
    post_legacy(&dp.mcp_url(), Some(token), 1, "tools/list", json!({}))
}

fn assert_401(dp: &DataPlane, token: &str, what: &str) {
    let r = list(dp, token);
    assert_eq!(r.status, 401, "{what}: {r}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    let meta = format!("{}/.well-known/oauth-protected-resource/mcp", dp.url());
    assert_eq!(
        challenge,
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{meta}\", scope=\"mcp\""),
        "{what}"
    );
    assert_eq!(r.json()["jsonrpc"], "2.0", "{what}: {r}");
    assert!(r.json()["error"]["code"].is_i64(), "{what}: {r}");
}

fn mint(idp: &IdentityProvider, dp: &DataPlane, extra: Value) -> String {
    let mut req = json!({"sub": "alice", "aud": dp.mcp_url()});
    if let (Some(req), Some(extra)) = (req.as_object_mut(), extra.as_object()) {
        req.extend(extra.clone());
    }
    idp.mint(&req)
}

fn sorted(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn confirmed_by(report: &Value, n: u64) {
    assert_eq!(report["expected"], n, "{report}");
    assert_eq!(report["confirmed"], n, "{report}");
}

#[test]
fn oauth_resource_server_end_to_end() {
    let (cp, admin) = enterprise();
    let upstream = FixtureServer::http_with(FixtureOptions {
        require_bearer: Some(UPSTREAM_SECRET.to_owned()),
        ..Default::default()
    });
    admin.ok(&[
        "register",
        "--name",
        "rmcp",
        "--url",
        &upstream.url(),
        "--bearer-token",
        UPSTREAM_SECRET,
    ]);
    let mut idp = IdentityProvider::start();
    admin.ok(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.issuer(),
        "--required-scope",
        "mcp",
    ]);
    admin.ok(&[
        "create",
        "access-rule",
        "eng",
        "--idp",
        "corp",
        "--group",
        "eng",
        "--allow",
        "rmcp__echo,rmcp__auth_header",
    ]);
    let a = DataPlane::start_with(&cp, &["--node-id", "dp-a"]);
    let mut b = DataPlane::start_with(&cp, &["--node-id", "dp-b"]);
    for dp in [&a, &b] {
        assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());

        eventually(
            "the identity provider on the data plane",
            SYNC_DEADLINE,
            || {
                let (status, body) = dp.get("/.well-known/oauth-protected-resource/mcp")?;
                (status == 200 && body.contains(&idp.issuer())).then_some(())
            },
        );
    }

    // RFC 9728 metadata, built from the data plane's own URL.
    let (status, body) = a
        .get("/.well-known/oauth-protected-resource/servers/rmcp/mcp")
        .unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    let meta: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(meta["resource"], format!("{}/servers/rmcp/mcp", a.url()));
    assert_eq!(meta["authorization_servers"], json!([idp.issuer()]));
    assert_eq!(meta["scopes_supported"], json!(["mcp"]));
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));

    // The official Python SDK, given only the URL: 401 → metadata → discovery → registration →
    // authorization (headless) → token → tools filtered by the access rules → a call.
    let out = python_oauth_client(
        &a.mcp_url(),
        "alice",
        &["--call", "rmcp__auth_header", "--args", "{}"],
    );
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        sorted(&out["tools"]),
        ["rmcp__auth_header", "rmcp__echo"],
        "{out}"
    );
    let seen = first_text(&out["call"]).to_owned();
    assert_eq!(
        seen,
        format!("Bearer {UPSTREAM_SECRET}"),
        "the upstream saw: {seen}"
    );
    let http = out["http"].to_string();
    for step in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/reg",
        "/token",
    ] {
        assert!(http.contains(step), "no {step} in the flow: {http}");
    }
    assert!(
        out["http"][0][2] == 401,
        "the flow starts with a 401: {http}"
    );
    assert_eq!(out["token_claims"]["aud"], a.mcp_url(), "{out}");
    assert_eq!(out["token_claims"]["sub"], "alice", "{out}");
    // The 2026-07-28 era signs in the same way.
    let out = python_oauth_client(&a.mcp_url(), "alice", &["--mode", "2026-07-28"]);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        sorted(&out["tools"]),
        ["rmcp__auth_header", "rmcp__echo"],
        "{out}"
    );
    // On one server's endpoint the resource (and the token's audience) is that endpoint.
    let server_url = format!("{}/servers/rmcp/mcp", a.url());
    let out = python_oauth_client(&server_url, "alice", &[]);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["token_claims"]["aud"], server_url, "{out}");
    assert_eq!(sorted(&out["tools"]), ["auth_header", "echo"], "{out}");
    // The same with the official TypeScript SDK client.
    let out = node_oauth_client(
        &a.mcp_url(),
        "carol",
        &["--call", "rmcp__echo", "--args", r#"{"message":"ts"}"#],
    );
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        sorted(&out["tools"]),
        ["rmcp__auth_header", "rmcp__echo"],
        "{out}"
    );
    assert_eq!(first_text(&out["call"]), "ts", "{out}");
    assert_eq!(out["token_claims"]["sub"], "carol", "{out}");
    assert_eq!(out["token_claims"]["aud"], a.mcp_url(), "{out}");
    // Someone no rule matches signs in fine and sees nothing.
    let out = python_oauth_client(
        &a.mcp_url(),
        "bob",
        &["--call", "rmcp__echo", "--args", r#"{"message":"x"}"#],
    );
    assert_eq!(out["tools"], json!([]), "{out}");
    let why = out["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("no access rule matches"), "{out}");

    // Tokens of alice for both data planes; each works (and is cached) before the refusals.
    let tok_a = mint(&idp, &a, json!({}));
    let tok_b = mint(&idp, &b, json!({}));
    for (dp, t) in [(&a, &tok_a), (&b, &tok_b)] {
        let r = list(dp, t);
        assert_eq!(r.status, 200, "{r}");
        let mut names = tool_names(&r.result());
        names.sort();
        assert_eq!(names, ["rmcp__auth_header", "rmcp__echo"]);
    }
    let cc = idp.client_credentials(&a.mcp_url());
    assert_eq!(list(&a, &cc).status, 200, "client credentials");

    // A rotated key is unknown at first, then accepted once the control plane has refetched
    // the JWKS (the data plane reported the kid; it never contacts the provider itself).
    idp.restart_rotated();
    let rotated = mint(&idp, &a, json!({}));
    assert_401(&a, &rotated, "a key the data plane has not seen yet");
    eventually("the rotated key accepted", SYNC_DEADLINE, || {
        (list(&a, &rotated).status == 200).then_some(())
    });

    // Every refusal is a 401 with the challenge.
    let mut tampered = tok_a.clone();
    let last = if tampered.ends_with('A') { 'B' } else { 'A' };
    tampered.pop();
    tampered.push(last);
    let cases = [
        (
            "wrong aud",
            mint(&idp, &a, json!({"aud": "http://127.0.0.1:1/mcp"})),
        ),
        ("token for another data plane", tok_b.clone()),
        (
            "wrong iss",
            mint(&idp, &a, json!({"iss": "http://127.0.0.1:1"})),
        ),
        ("expired", mint(&idp, &a, json!({"exp_in": -3600}))),
        ("not yet valid", mint(&idp, &a, json!({"nbf_in": 3600}))),
        ("bad signature", tampered),
        ("alg none", mint(&idp, &a, json!({"alg": "none"}))),
        (
            "HS256 with the public key",
            mint(&idp, &a, json!({"alg": "HS256-public"})),
        ),
        (
            "ID token",
            mint(
                &idp,
                &a,
                json!({"typ": "JWT", "claims": {"nonce": "n-0S6"}}),
            ),
        ),
        (
            "unknown kid",
            mint(&idp, &a, json!({"kid": "never-published"})),
        ),
        ("no token at all", String::new()),
    ];
    for (what, token) in &cases {
        if token.is_empty() {
            let r = post_legacy(&a.mcp_url(), None, 1, "tools/list", json!({}));
            assert_eq!(r.status, 401, "{r}");
            let meta = format!("{}/.well-known/oauth-protected-resource/mcp", a.url());
            assert_eq!(
                r.header("www-authenticate").unwrap_or_default(),
                format!("Bearer resource_metadata=\"{meta}\", scope=\"mcp\"")
            );
        } else {
            assert_401(&a, token, what);
        }
    }
    // Missing the required scope: 403.
    let r = list(&a, &mint(&idp, &a, json!({"claims": {"scope": "openid"}})));
    assert_eq!(r.status, 403, "{r}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
        "{r}"
    );

    // A restarted data plane gets the providers back (and verifies again).
    b.kill9();
    b.restart();
    assert!(b.wait_ready(SYNC_DEADLINE), "{}", b.logs());
    assert_eq!(list(&b, &tok_b).status, 200);

    // Static MCP-client tokens keep working beside JWTs.
    let created = admin.json(&["create", "mcp-client", "static", "--allow", "rmcp__echo"]);
    let static_token = access_token(&created);
    eventually("static client visible", SYNC_DEADLINE, || {
        (list(&a, &static_token).status == 200).then_some(())
    });

    // Revocation beats the token lifetime: refused on every data plane once `revoke` returns.
    let report = admin.json(&["revoke", "subject", "--idp", "corp", "alice"]);
    confirmed_by(&report, 2);
    assert_401(&a, &tok_a, "revoked subject on a");
    assert_401(&b, &tok_b, "revoked subject on b");
    admin.ok(&["unrevoke", "--idp", "corp", "alice"]);
    eventually("unrevoked", SYNC_DEADLINE, || {
        (list(&a, &tok_a).status == 200).then_some(())
    });

    // A deleted provider's tokens are refused everywhere at once; static tokens are untouched.
    let report = admin.json(&["delete", "identity-provider", "corp"]);
    confirmed_by(&report, 2);
    for (dp, t) in [(&a, &tok_a), (&b, &tok_b)] {
        let r = list(dp, t);
        assert_eq!(r.status, 401, "deleted provider: {r}");
    }
    assert_eq!(list(&a, &static_token).status, 200);

    // Nothing secret in any log.
    let secrets = [&tok_a, &tok_b, &cc, &rotated, &static_token];
    for (who, logs) in [
        ("data plane a", a.logs()),
        ("data plane b", b.logs()),
        ("control plane", cp.logs()),
        ("identity provider", idp.stderr_log()),
    ] {
        for s in secrets {
            assert!(!logs.contains(s.as_str()), "{who} logged a token");
        }
    }
}
