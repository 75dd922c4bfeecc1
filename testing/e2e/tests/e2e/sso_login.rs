//! `canopy login --sso` against a real identity provider (oidc-provider, testing/node/idp.mjs),
//! driven headlessly by testing/python/sso_browser.py: `--no-browser` (the redirected URL
//! pasted back) signs in an admin by group, `--device-code` a user; their commands get the
//! role and scope from the provider's claims; a token minted for a data plane is refused by
//! the Admin API; an expired access token is renewed with the saved refresh token; a revoked
//! subject is refused; no token appears in the CLI's output or the control plane's logs.
//! One stack for all of it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use canopy_e2e::{venv_python, workspace_root, Cli, IdentityProvider};
use serde_json::{json, Value};

use crate::common::enterprise;

const ADMIN_AUDIENCE: &str = "https://canopy-cp.test";

fn browser(args: &[&str]) -> String {
    let out = Command::new(venv_python())
        .arg(workspace_root().join("testing/python/sso_browser.py"))
        .args(args)
        .output()
        .expect("run sso_browser.py");
    assert!(
        out.status.success(),
        "sso_browser.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `canopy -o json login --sso …`; `drive` gets each stderr line and may answer on stdin.
fn sso_login(
    cli: &Cli,
    extra: &[&str],
    mut drive: impl FnMut(&str) -> Option<String>,
) -> (Value, String) {
    let mut child = cli
        .command()
        .args(["-o", "json", "login", "--sso", "--timeout", "60s"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn canopy");
    let mut stdin = child.stdin.take().expect("stdin");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut told = String::new();
    for line in stderr.lines() {
        let line = line.expect("stderr line");
        told.push_str(&line);
        told.push('\n');
        if let Some(answer) = drive(&line) {
            writeln!(stdin, "{answer}").expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("canopy login");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "login failed: {told}{stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (json, told)
}

fn saved(cli: &Cli) -> Value {
    let text = std::fs::read_to_string(cli.config_path()).expect("config file");
    serde_json::from_str(&text).expect("config JSON")
}

#[test]
fn sso_login_end_to_end() {
    let idp = IdentityProvider::start();
    let (cp, admin) = enterprise();
    let client_id = browser(&["register", &idp.issuer()]);
    admin.ok(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.issuer(),
        "--admin-group",
        "admins",
        "--admin-audience",
        ADMIN_AUDIENCE,
        "--cli-client-id",
        &client_id,
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
        "gh",
    ]);

    // carol (groups eng, admins): --no-browser, the redirected URL pasted back.
    let carol = Cli::new(&cp);
    let (me, told) = sso_login(&carol, &["--no-browser", "--login-hint", "carol"], |line| {
        let url = line.trim();
        url.starts_with("http://127.0.0.1")
            .then(|| url.contains("/auth"))
            .filter(|a| *a)
            .map(|_| browser(&["code", url]))
    });
    assert_eq!(me["role"], "admin", "{me}");
    assert_eq!(me["identity_provider"], "corp", "{me}");
    assert_eq!(me["subject"], "carol", "{me}");
    let conf = saved(&carol);
    assert_eq!(conf["sso"]["idp"], "corp", "{conf}");
    let refresh = conf["sso"]["refresh_token"]
        .as_str()
        .expect("refresh token saved")
        .to_owned();
    let carol_token = conf["access_token"].as_str().expect("token").to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(carol.config_path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!told.contains(&carol_token) && !told.contains(&refresh));
    // An admin command works for her.
    carol.ok(&["list", "users"]);

    // alice (group eng only): the device flow; a user with the rule's scope.
    let alice = Cli::new(&cp);
    let (me, told) = sso_login(&alice, &["--device-code"], |line| {
        let url = line
            .trim()
            .strip_prefix("(or open ")?
            .strip_suffix(" directly)")?;
        browser(&["device", url]);
        None
    });
    assert_eq!(me["role"], "user", "{me}");
    assert_eq!(me["subject"], "alice", "{me}");
    let whoami = alice.json(&["whoami"]);
    assert_eq!(whoami["identity_provider"], "corp", "{whoami}");
    assert_eq!(whoami["subject"], "alice", "{whoami}");
    assert_eq!(whoami["role"], "user", "{whoami}");
    let denied = alice.fail(&["list", "users"]);
    assert!(
        denied.stderr.contains("needs an admin"),
        "{}",
        denied.stderr
    );
    alice.ok(&["list", "servers"]);
    let alice_token = saved(&alice)["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(!told.contains(&alice_token));

    // An expired access token is renewed with the refresh token before the command.
    let mut conf = saved(&alice);
    conf["sso"]["expires_at"] = json!(1);
    std::fs::write(alice.config_path(), conf.to_string()).expect("write config");
    let whoami = alice.json(&["whoami"]);
    assert_eq!(whoami["subject"], "alice", "{whoami}");
    let renewed = saved(&alice);
    assert_ne!(renewed["access_token"], alice_token, "token renewed");
    assert!(renewed["sso"]["expires_at"].as_u64().unwrap_or(0) > 1);

    // A token minted for a data plane is refused by the Admin API.
    let dp_token = idp.mint(&json!({"sub": "carol", "aud": "http://127.0.0.1:1/mcp",
                                    "claims": {"groups": ["admins"]}}));
    let other = Cli::new(&cp);
    let refused = other.fail(&["login", &dp_token]);
    assert!(
        refused.stderr.contains("does not accept"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(&dp_token));

    // A revoked subject is refused on the Admin API too.
    admin.ok(&["revoke", "subject", "--idp", "corp", "alice"]);
    let out = alice.fail(&["whoami"]);
    assert!(out.stderr.contains("token invalid"), "{}", out.stderr);
    assert!(
        cp.logs().contains("Admin API refused a revoked subject"),
        "the control plane says why"
    );

    let logs = cp.logs();
    for secret in [&carol_token, &refresh, &alice_token, &dp_token] {
        assert!(
            !logs.contains(secret.as_str()),
            "a token reached the control plane's logs"
        );
    }
}
