//! JWT access tokens on the request path: beside static tokens, the challenges, the
//! protected-resource metadata, and the token never going upstream.

use super::*;
use crate::identity::tests::{
    claims, group_rule, jwks, keys, now, provider_def, sign, ISSUER, ORIGIN,
};
use crate::identity::{Resource, Sources};

async fn oauth_env(required_scopes: &[&str]) -> Env {
    let settings = HttpSettings {
        resource: Resource::new(ORIGIN).unwrap(),
        ..Default::default()
    };
    let e = env_with(settings, pb::Mode::Enterprise).await;
    let k = keys();
    let mut def = provider_def("corp", ISSUER, jwks(&[&k[0], &k[1], &k[2]]));
    def.required_scopes = required_scopes.iter().map(|s| (*s).to_owned()).collect();
    e.dp.state.identities.replace_all(Sources {
        providers: vec![def],
        rules: vec![group_rule("eng", "eng", &["gh__echo"])],
        revoked: vec![],
    });
    e
}

fn www(r: &Resp) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn jwt_beside_static_tokens_and_never_upstream() {
    let e = oauth_env(&[]).await;
    let jwt = sign(&keys()[0], &claims("alice"));
    for _ in 0..2 {
        // The second time from the verified-token cache.
        let r = Req::rpc("tools/list", json!({}))
            .token(&jwt)
            .send(&e.dp)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.tool_names(), ["gh__echo"]);
    }
    assert_eq!(e.dp.state.identities.cached_tokens(), 1);
    let r = Req::rpc("tools/call", json!({"name":"gh__echo","arguments":{"n":1}}))
        .token(&jwt)
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json()["result"].is_object(), "{}", r.text);
    let calls = e.mock.seen.calls.lock().unwrap().clone();
    assert!(!calls.is_empty());
    assert!(calls
        .iter()
        .all(|(a, _, _)| a.as_deref() == Some("Bearer upstream-secret")));
    // Out of its rules' scope.
    let r = Req::rpc("tools/call", json!({"name":"gh__fail"}))
        .token(&jwt)
        .send(&e.dp)
        .await;
    assert_eq!(r.error_code(), canopy_mcp::jsonrpc::code::INVALID_PARAMS);
    // Static tokens keep working.
    let r = Req::rpc("tools/list", json!({})).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.tool_names().len() > 1);
    // A valid token no rule matches: nothing listed, and calls say why.
    let mut c = claims("dave");
    c["groups"] = json!(["sales"]);
    let nobody = sign(&keys()[1], &c);
    let r = Req::rpc("tools/list", json!({}))
        .token(&nobody)
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.tool_names().is_empty());
    let r = Req::rpc("tools/call", json!({"name":"gh__echo"}))
        .token(&nobody)
        .send(&e.dp)
        .await;
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no access rule matches"));
    // Revocation beats the cache.
    e.dp.state
        .identities
        .apply(&pb::change::Kind::SubjectRevoke(pb::RevokedSubject {
            idp: "corp".into(),
            subject: "alice".into(),
            revoked_at_ms: 1,
        }));
    let r = Req::rpc("tools/list", json!({}))
        .token(&jwt)
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn challenges_name_the_metadata_and_scope() {
    let e = oauth_env(&["mcp"]).await;
    let meta = format!("{ORIGIN}/.well-known/oauth-protected-resource");
    let r = Req::rpc("tools/list", json!({}))
        .without("authorization")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&r),
        format!("Bearer resource_metadata=\"{meta}/mcp\", scope=\"mcp\"")
    );
    assert!(r.error_code() < 0);
    let mut c = claims("alice");
    c["exp"] = json!(now() - 3600);
    let r = Req::rpc("tools/list", json!({}))
        .token(&sign(&keys()[1], &c))
        .path("/servers/gh/mcp")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&r),
        format!(
            "Bearer error=\"invalid_token\", resource_metadata=\"{meta}/servers/gh/mcp\", scope=\"mcp\""
        )
    );
    let mut c = claims("alice");
    c["scope"] = json!("openid");
    let r = Req::rpc("tools/list", json!({}))
        .token(&sign(&keys()[2], &c))
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        www(&r),
        format!(
            "Bearer error=\"insufficient_scope\", resource_metadata=\"{meta}/mcp\", scope=\"mcp\""
        )
    );
    assert!(r.error_code() < 0);
    // The right scope passes.
    let r = Req::rpc("tools/list", json!({}))
        .token(&sign(&keys()[2], &claims("alice")))
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn protected_resource_metadata() {
    let e = oauth_env(&["mcp"]).await;
    for (path, resource) in [
        ("/mcp", format!("{ORIGIN}/mcp")),
        ("/servers/gh/mcp", format!("{ORIGIN}/servers/gh/mcp")),
        ("", ORIGIN.to_owned()),
    ] {
        let mut req = Req::post("").path(&format!("/.well-known/oauth-protected-resource{path}"));
        req.method = "GET";
        // The Host header has no say in the resource.
        let r = req.header("host", "evil.example").send(&e.dp).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let v = r.json();
        assert_eq!(v["resource"], resource.as_str());
        assert_eq!(v["authorization_servers"], json!([ISSUER]));
        assert_eq!(v["scopes_supported"], json!(["mcp"]));
        assert_eq!(v["bearer_methods_supported"], json!(["header"]));
    }
    let dev = env_with(HttpSettings::default(), pb::Mode::Development).await;
    let mut req = Req::post("").path("/.well-known/oauth-protected-resource/mcp");
    req.method = "GET";
    assert_eq!(req.send(&dev.dp).await.status, StatusCode::NOT_FOUND);
}
