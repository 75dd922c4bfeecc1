//! Identity providers on the control plane (issue 11): discovery and keys read at `create`
//! (an unreachable or garbage issuer stores nothing), access rules and `explain access`,
//! acknowledged revocation of a subject (exit 3 naming a stopped data plane), key rotation
//! and failed refreshes seen through the periodic refresh, and all of it surviving a
//! control-plane restart. A loopback test server stands in for the provider.

use canopy_e2e::{free_port, Cli, ControlPlane, ControlPlaneOptions, DataPlane, StaticHttpServer};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::common::{find, names};
use crate::faults::{data_plane_pid, poll, signal, CONVERGE};

const JWKS_K1: &str =
    r#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"}]}"#;
const JWKS_K2: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"},{"kty":"EC","kid":"k2","crv":"P-256","x":"f83O","y":"x_FE"}]}"#;

fn provider(admin: &Cli, name: &str) -> Value {
    find(&admin.json(&["list", "identity-providers"]), name).clone()
}

fn key_ids(p: &Value) -> Vec<String> {
    p["key_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no key_ids in {p}"))
        .iter()
        .map(|k| k.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn identity_providers_rules_and_revocations() {
    let mut cp = ControlPlane::start(ControlPlaneOptions {
        enterprise: true,
        extra_args: vec!["--idp-refresh-interval".into(), "1s".into()],
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    admin.json(&["init-server"]);

    // Bad issuers: a clear one-line error each, and nothing stored.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let garbage = StaticHttpServer::start();
    garbage.set(
        "/.well-known/openid-configuration",
        200,
        "<html>hello</html>",
    );
    let wrong_issuer = StaticHttpServer::start();
    wrong_issuer.set(
        "/.well-known/openid-configuration",
        200,
        r#"{"issuer":"https://someone.else","jwks_uri":"https://someone.else/jwks"}"#,
    );
    let no_keys = StaticHttpServer::start();
    no_keys.serve_provider(r#"{"keys":[]}"#);
    for (issuer, says) in [
        (nobody.as_str(), "cannot reach"),
        (&garbage.url(), "invalid json"),
        (&wrong_issuer.url(), "someone.else"),
        (&no_keys.url(), "empty"),
        ("http://idp.example", "https"),
    ] {
        let out = admin.fail(&["create", "identity-provider", "bad", "--issuer", issuer]);
        out.assert_one_line_error();
        assert!(
            out.text_lower().contains(says),
            "{issuer}: expected {says:?} in {out:?}"
        );
    }
    let out = admin.fail(&[
        "create",
        "identity-provider",
        "bad",
        "--issuer",
        &no_keys.url(),
        "--algorithms",
        "HS256",
    ]);
    assert!(out.text_lower().contains("never accepted"), "{out:?}");
    assert_eq!(admin.json(&["list", "identity-providers"]), json!([]));

    // A good provider: discovery, keys, defaults.
    let idp = StaticHttpServer::start();
    idp.serve_provider(JWKS_K1);
    let created = admin.json(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.url(),
        "--audience",
        "api://canopy",
        "--leeway",
        "30s",
    ]);
    assert_eq!(created["issuer"], idp.url(), "{created}");
    assert_eq!(key_ids(&created), vec!["k1"], "{created}");
    assert_eq!(created["subject_claim"], "sub", "{created}");
    assert_eq!(created["leeway_ms"], 30_000, "{created}");
    assert_eq!(
        created["jwks_uri"],
        format!("{}/jwks", idp.url()),
        "{created}"
    );
    admin
        .fail(&[
            "create",
            "identity-provider",
            "corp",
            "--issuer",
            &idp.url(),
        ])
        .assert_stderr_mentions("already exists");

    // Access rules and explain.
    admin.json(&[
        "create",
        "access-rule",
        "eng",
        "--idp",
        "corp",
        "--group",
        "eng",
        "--allow",
        "github",
    ]);
    admin.json(&[
        "create",
        "access-rule",
        "corp-mail",
        "--idp",
        "corp",
        "--email-domain",
        "corp.example",
        "--allow",
        "jira__search",
    ]);
    admin
        .fail(&[
            "create",
            "access-rule",
            "x",
            "--idp",
            "nope",
            "--group",
            "g",
            "--allow",
            "a",
        ])
        .assert_stderr_mentions("not found");
    admin
        .fail(&[
            "create",
            "access-rule",
            "x",
            "--idp",
            "corp",
            "--allow",
            "a",
        ])
        .assert_one_line_error();
    let claims = r#"{"sub": "u1", "email": "ann@corp.example", "groups": ["eng"]}"#;
    let explained = admin.json(&["explain", "access", "--idp", "corp", "--claims", claims]);
    assert_eq!(explained["subject"], "u1", "{explained}");
    assert_eq!(
        explained["matched_rules"],
        json!(["corp-mail", "eng"]),
        "{explained}"
    );
    assert_eq!(
        explained["allowed"],
        json!(["github", "jira__search"]),
        "{explained}"
    );
    let nothing = admin.json(&[
        "explain",
        "access",
        "--idp",
        "corp",
        "--claims",
        r#"{"sub":"u2"}"#,
    ]);
    assert_eq!(nothing["allowed"], json!([]), "{nothing}");

    // Acknowledged changes with a data plane connected.
    let dp = DataPlane::start_with(&cp, &["--node-id", "idp-a"]);
    assert!(dp.wait_ready(CONVERGE), "{}", dp.logs());
    let revoked = admin.json(&["revoke", "subject", "--idp", "corp", "u1"]);
    assert_eq!(
        (revoked["expected"].as_u64(), revoked["confirmed"].as_u64()),
        (Some(1), Some(1)),
        "{revoked}"
    );
    let explained = admin.json(&["explain", "access", "--idp", "corp", "--claims", claims]);
    assert_eq!(explained["revoked"], true, "{explained}");
    let updated = admin.json(&["update", "access-rule", "eng", "--allow", "github, slack"]);
    assert_eq!(updated["confirmed"], 1, "{updated}");
    // A stopped data plane is named and the command exits 3.
    let pid = data_plane_pid(&dp);
    signal(pid, Signal::SIGSTOP);
    let out = admin.run(&["revoke", "subject", "--idp", "corp", "u3", "--wait", "1s"]);
    signal(pid, Signal::SIGCONT);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("idp-a"), "{out:?}");
    let revocations = admin.json(&["list", "revocations"]);
    let subjects: Vec<&str> = revocations
        .as_array()
        .unwrap_or_else(|| panic!("{revocations}"))
        .iter()
        .filter_map(|r| r["subject"].as_str())
        .collect();
    assert_eq!(subjects, vec!["u1", "u3"], "{revocations}");
    admin.json(&["unrevoke", "--idp", "corp", "u3"]);
    admin
        .fail(&["unrevoke", "--idp", "corp", "u3"])
        .assert_stderr_mentions("not found");

    // Key rotation reaches the store through the periodic refresh; a failing provider keeps
    // its last good keys and says so.
    idp.set("/jwks", 200, JWKS_K2);
    poll(
        CONVERGE,
        "rotated keys fetched",
        || cp.logs(),
        || (key_ids(&provider(&admin, "corp")) == ["k1", "k2"]).then_some(()),
    );
    idp.set("/jwks", 503, "{}");
    let failing = poll(
        CONVERGE,
        "failed refresh listed",
        || cp.logs(),
        || {
            let p = provider(&admin, "corp");
            p["last_error"].is_string().then_some(p)
        },
    );
    assert_eq!(key_ids(&failing), vec!["k1", "k2"], "{failing}");
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("503"),
        "{failing}"
    );
    let text = admin.ok(&["list", "identity-providers"]);
    assert!(text.stdout.contains("FAILED"), "{text:?}");

    // Everything survives a restart.
    cp.restart();
    let after = provider(&admin, "corp");
    assert_eq!(key_ids(&after), vec!["k1", "k2"], "{after}");
    assert_eq!(
        names(&admin.json(&["list", "access-rules"])),
        vec!["corp-mail", "eng"]
    );
    let eng = find(
        &admin.json(&["list", "access-rules", "--idp", "corp"]),
        "eng",
    )
    .clone();
    assert_eq!(eng["allowed"], json!(["github", "slack"]), "{eng}");
    assert_eq!(eng["conditions"], json!(["group=eng"]), "{eng}");
    assert_eq!(
        admin
            .json(&["list", "revocations"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Deleting the provider takes its rules and revocations with it, acknowledged.
    poll(
        CONVERGE,
        "data plane reconnected",
        || dp.logs(),
        || {
            let planes = admin.json(&["list", "data-planes"]);
            (planes
                .as_array()
                .is_some_and(|p| p.iter().any(|d| d["connected"] == true)))
            .then_some(())
        },
    );
    let deleted = admin.json(&["delete", "identity-provider", "corp"]);
    assert_eq!(deleted["confirmed"], 1, "{deleted}");
    assert_eq!(admin.json(&["list", "identity-providers"]), json!([]));
    assert_eq!(admin.json(&["list", "access-rules"]), json!([]));
    assert_eq!(admin.json(&["list", "revocations"]), json!([]));
}

#[test]
fn identity_provider_from_file_and_update() {
    let (_cp, admin) = crate::common::enterprise();
    let idp = StaticHttpServer::start();
    idp.serve_provider(JWKS_K1);
    let file = admin.write_file(
        "corp.json",
        &json!({"name": "corp", "issuer": idp.url(), "algorithms": ["RS256"], "groups_claim": "roles"}).to_string(),
    );
    let created = admin.json(&["create", "identity-provider", "-c", &file.to_string_lossy()]);
    assert_eq!(created["algorithms"], json!(["RS256"]), "{created}");
    assert_eq!(created["groups_claim"], "roles", "{created}");
    let typo = admin.write_file(
        "typo.json",
        r#"{"name": "x", "issuer": "https://a", "audience": "b"}"#,
    );
    admin
        .fail(&["create", "identity-provider", "-c", &typo.to_string_lossy()])
        .assert_stderr_mentions("unknown field");
    let updated = admin.json(&[
        "update",
        "identity-provider",
        "corp",
        "--algorithms",
        "ES256,RS256",
    ]);
    assert!(updated["revision"].is_u64(), "{updated}");
    let p = provider(&admin, "corp");
    assert_eq!(p["algorithms"], json!(["ES256", "RS256"]), "{p}");
    assert_eq!(
        p["groups_claim"], "roles",
        "update keeps what was not given: {p}"
    );
    // An update whose fetch fails changes nothing.
    idp.set("/jwks", 200, "nonsense");
    admin
        .fail(&["update", "identity-provider", "corp", "--leeway", "10s"])
        .assert_one_line_error();
    assert_eq!(provider(&admin, "corp")["leeway_ms"], 60_000);
}
