//! Plaintext tokens exist only at creation: no file in the data dir and no control-plane log
//! line ever contains one. Generated tokens carry a recognizable prefix per kind.

use canopy_e2e::{files_containing, Cli};
use serde_json::json;

use crate::common::{access_token, enterprise};

/// The longest common prefix of two strings.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map(|((i, c), _)| i + c.len_utf8())
        .unwrap_or(0);
    &a[..n]
}

#[test]
fn tokens_never_reach_disk_or_logs() {
    let (mut cp, admin) = enterprise();
    let mut tokens: Vec<String> = Vec::new();

    // Generated tokens, two of each kind.
    let c1 = access_token(&admin.json(&["create", "mcp-client", "gen1", "--allow", "*"]));
    let c2 = access_token(&admin.json(&["create", "mcp-client", "gen2"]));
    let u1 = access_token(&admin.json(&["create", "user", "genuser1"]));
    let u2 = access_token(&admin.json(&["create", "user", "genuser2", "--role", "admin"]));
    tokens.extend([c1.clone(), c2.clone(), u1.clone(), u2.clone()]);

    // Custom tokens through flags, config files and rotations.
    let custom = [
        "leakcheck-client-flag-0123456789",
        "leakcheck-user-flag-0123456789",
        "leakcheck-client-conf-0123456789",
        "leakcheck-user-envref-0123456789",
        "leakcheck-client-rotated-0123456789",
        "leakcheck-user-rotated-0123456789",
    ];
    admin.json(&[
        "create",
        "mcp-client",
        "flagclient",
        "--access-token",
        custom[0],
    ]);
    admin.json(&["create", "user", "flaguser", "--access-token", custom[1]]);
    let conf = admin.write_file(
        "client.json",
        &json!({"name": "confclient", "access_token": custom[2]}).to_string(),
    );
    admin.ok(&[
        "create",
        "mcp-client",
        "--conf",
        conf.to_str().expect("utf-8 path"),
    ]);
    let conf = admin.write_file(
        "user.json",
        &json!({"name": "envuser", "access_token_ref": {"env": "LEAKCHECK_TOKEN"}}).to_string(),
    );
    admin
        .run_with_env(
            &[
                "create",
                "user",
                "--conf",
                conf.to_str().expect("utf-8 path"),
            ],
            &[("LEAKCHECK_TOKEN", custom[3])],
        )
        .assert_success();
    admin.json(&[
        "update",
        "mcp-client",
        "flagclient",
        "--access-token",
        custom[4],
    ]);
    admin.json(&["update", "user", "flaguser", "--access-token", custom[5]]);
    tokens.extend(custom.iter().map(|s| s.to_string()));

    // Use some of them, so the authentication path runs (and could log) too.
    for token in [&u1, &u2, &custom[3].to_owned(), &custom[5].to_owned()] {
        let cli = Cli::new(&cp);
        cli.ok(&["login", token]);
        cli.ok(&["list", "servers"]);
    }
    let bad = Cli::new(&cp);
    bad.fail(&["login", "leakcheck-wrong-token-0123456789"]);
    tokens.push("leakcheck-wrong-token-0123456789".to_owned());

    // Lists never show tokens either.
    let listings = [
        admin.ok(&["list", "mcp-clients"]).stdout,
        admin.ok(&["-o", "json", "list", "mcp-clients"]).stdout,
        admin.ok(&["list", "users"]).stdout,
        admin.ok(&["-o", "json", "list", "users"]).stdout,
    ];

    // Stop gracefully so every buffer (sled, logs) is on disk before looking.
    let status = cp.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    let logs = cp.logs();
    assert!(!logs.is_empty() || cp.data_dir().exists());

    for token in &tokens {
        let in_files = files_containing(cp.data_dir(), token);
        assert!(
            in_files.is_empty(),
            "token {token} found in data dir files {in_files:?}"
        );
        assert!(
            !logs.contains(token.as_str()),
            "token {token} found in control-plane logs"
        );
        for listing in &listings {
            assert!(
                !listing.contains(token.as_str()),
                "token {token} shown by a list:\n{listing}"
            );
        }
    }

    // Generated tokens: ≥ 128 bits of randomness and a recognizable prefix per kind.
    for token in [&c1, &c2, &u1, &u2] {
        assert!(token.len() >= 22, "too short for 128 random bits: {token}");
        assert!(!token.chars().any(char::is_whitespace), "{token:?}");
    }
    let client_prefix = common_prefix(&c1, &c2);
    let user_prefix = common_prefix(&u1, &u2);
    assert!(
        client_prefix.len() >= 3,
        "client tokens share no prefix: {c1} {c2}"
    );
    assert!(
        user_prefix.len() >= 3,
        "user tokens share no prefix: {u1} {u2}"
    );
    assert!(
        !client_prefix.starts_with(user_prefix) && !user_prefix.starts_with(client_prefix),
        "client and user tokens need different prefixes: {c1} {u1}"
    );
    assert_ne!(c1, c2);
    assert_ne!(u1, u2);
}
