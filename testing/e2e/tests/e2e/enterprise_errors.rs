//! Every error case of the admin surface: each is a clean, clear failure (non-zero exit, a message
//! on stderr, no panic) and changes nothing.

use canopy_e2e::{free_port, Cli, ControlPlane, ControlPlaneOptions, FixtureServer};
use serde_json::json;

use crate::common::{enterprise, names};

#[test]
fn init_server_only_once() {
    let (cp, admin) = enterprise();
    admin.fail(&["init-server"]);
    // Also from another machine with no config.
    let other = Cli::new(&cp);
    other.fail(&["init-server"]);
    assert!(
        !other.config_path().exists(),
        "a failed init-server must not write a config"
    );
    // The admin still works.
    admin.ok(&["whoami"]);
}

#[test]
fn init_token_guard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard_file = dir.path().join("init.token");
    std::fs::write(&guard_file, "init-guard-token-0123456789\n").expect("write guard file");
    let cp = ControlPlane::start(ControlPlaneOptions {
        enterprise: true,
        extra_args: vec![
            "--init-token-file".to_owned(),
            guard_file.display().to_string(),
        ],
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    admin.fail(&["init-server"]);
    admin.fail(&[
        "init-server",
        "--init-token",
        "wrong-guard-token-0123456789",
    ]);
    admin.ok(&["init-server", "--init-token", "init-guard-token-0123456789"]);
    admin.ok(&["whoami"]);
}

#[test]
fn commands_need_a_token_in_enterprise_mode() {
    let (cp, _admin) = enterprise();
    let anonymous = Cli::new(&cp);
    for args in [
        &["list", "servers"][..],
        &["list", "tools"][..],
        &["create", "mcp-client", "x"][..],
        &["whoami"][..],
    ] {
        anonymous.fail(args);
    }
    let bogus = Cli::new(&cp);
    bogus.fail(&["login", "not-a-real-token-0123456789"]);
    assert!(
        !bogus.config_path().exists(),
        "a rejected login must not save the token"
    );
}

#[test]
fn unknown_names_are_named_in_the_error() {
    let (_cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    for (args, name) in [
        (
            &["delete", "mcp-client", "ghost-client"][..],
            "ghost-client",
        ),
        (
            &["update", "mcp-client", "ghost-client", "--description", "d"][..],
            "ghost-client",
        ),
        (&["delete", "user", "ghost-user"][..], "ghost-user"),
        (
            &[
                "update",
                "user",
                "ghost-user",
                "--access-token",
                "some-long-token-0123456789",
            ][..],
            "ghost-user",
        ),
        (&["deregister", "ghost-server"][..], "ghost-server"),
        (&["refresh", "server", "ghost-server"][..], "ghost-server"),
        (&["usage", "rmcp__ghost_tool"][..], "rmcp__ghost_tool"),
        (&["usage", "ghost-server__echo"][..], "ghost-server__echo"),
        (&["invoke", "rmcp__ghost_tool"][..], "rmcp__ghost_tool"),
        (
            &["invoke", "ghost-server__echo", "--input", "{}"][..],
            "ghost-server__echo",
        ),
    ] {
        admin.fail(args).assert_stderr_mentions(name);
    }
}

#[test]
fn duplicate_names_are_rejected() {
    let (_cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    admin
        .fail(&["register", "--name", "rmcp", "--url", &rmcp.url()])
        .assert_stderr_mentions("rmcp");
    // --force replaces it.
    admin.ok(&[
        "register",
        "--name",
        "rmcp",
        "--url",
        &rmcp.url(),
        "--description",
        "replaced",
        "--force",
    ]);
    let servers = admin.json(&["list", "servers"]);
    assert_eq!(names(&servers), ["rmcp"]);
    assert_eq!(servers[0]["description"], "replaced");

    admin.json(&["create", "mcp-client", "dup"]);
    admin
        .fail(&["create", "mcp-client", "dup"])
        .assert_stderr_mentions("dup");
    assert_eq!(names(&admin.json(&["list", "mcp-clients"])), ["dup"]);

    admin.json(&["create", "user", "dupuser"]);
    admin
        .fail(&["create", "user", "dupuser"])
        .assert_stderr_mentions("dupuser");
    admin
        .fail(&["create", "user", "admin"])
        .assert_stderr_mentions("admin");
}

#[test]
fn token_refs_in_config_files() {
    let (cp, admin) = enterprise();

    // Missing env var: the error names it.
    let conf = admin.write_file(
        "env.json",
        &json!({"name": "envclient", "allowed_servers": ["x"],
                "access_token_ref": {"env": "CANOPY_TEST_UNSET_TOKEN_VAR"}})
        .to_string(),
    );
    let conf = conf.to_str().expect("utf-8 path");
    admin
        .fail(&["create", "mcp-client", "--conf", conf])
        .assert_stderr_mentions("CANOPY_TEST_UNSET_TOKEN_VAR");
    // Set but empty: also an error naming it.
    admin
        .run_with_env(
            &["create", "mcp-client", "--conf", conf],
            &[("CANOPY_TEST_UNSET_TOKEN_VAR", "")],
        )
        .assert_failure()
        .assert_stderr_mentions("CANOPY_TEST_UNSET_TOKEN_VAR");
    // Set: works, and the client has the file's fields.
    let created = admin.json_with_env(
        // No server `x` is registered: stored on purpose.
        &["create", "mcp-client", "--conf", conf, "--force"],
        &[("CANOPY_TEST_UNSET_TOKEN_VAR", "env-ref-token-0123456789")],
    );
    assert_eq!(created["name"], "envclient");
    assert_eq!(created["allowed_servers"], json!(["x"]));
    assert!(
        created.get("access_token").is_none(),
        "custom tokens are not echoed: {created}"
    );

    // Missing file: the error names the path.
    let missing = admin.home().join("no-such-token-file");
    let conf = admin.write_file(
        "file.json",
        &json!({"name": "fileuser", "access_token_ref": {"file": missing}}).to_string(),
    );
    let conf = conf.to_str().expect("utf-8 path");
    admin
        .fail(&["create", "user", "--conf", conf])
        .assert_stderr_mentions("no-such-token-file");
    // Empty file: an error naming it.
    std::fs::write(&missing, "").expect("write empty token file");
    admin
        .fail(&["create", "user", "--conf", conf])
        .assert_stderr_mentions("no-such-token-file");
    // Filled: works, and that user can log in with it.
    std::fs::write(&missing, "file-ref-token-0123456789\n").expect("write token file");
    admin.ok(&["create", "user", "--conf", conf]);
    let user = Cli::new(&cp);
    let who = user.json(&["login", "file-ref-token-0123456789"]);
    assert_eq!(who["name"], "fileuser");

    // A config file must carry a token.
    let conf = admin.write_file("notoken.json", r#"{"name": "tokenless"}"#);
    admin.fail(&[
        "create",
        "mcp-client",
        "--conf",
        conf.to_str().expect("utf-8 path"),
    ]);
    admin.fail(&[
        "create",
        "user",
        "--conf",
        conf.to_str().expect("utf-8 path"),
    ]);
    // ... exactly one token source.
    let conf = admin.write_file(
        "two.json",
        &json!({"name": "two", "access_token": "inline-token-0123456789",
                "access_token_ref": {"env": "HOME"}})
        .to_string(),
    );
    admin.fail(&[
        "create",
        "mcp-client",
        "--conf",
        conf.to_str().expect("utf-8 path"),
    ]);

    let clients = names(&admin.json(&["list", "mcp-clients"]));
    assert_eq!(clients, ["envclient"]);
}

#[test]
fn short_or_blank_custom_tokens_are_rejected() {
    let (_cp, admin) = enterprise();
    for token in ["short", "fifteen-chars-x", "has white space 0123456789"] {
        admin.fail(&["create", "mcp-client", "c1", "--access-token", token]);
        admin.fail(&["create", "user", "u1", "--access-token", token]);
    }
    // Exactly 16 characters is enough.
    admin.json(&[
        "create",
        "mcp-client",
        "c16",
        "--access-token",
        "sixteen-chars-ok",
    ]);
    admin.fail(&["update", "mcp-client", "c16", "--access-token", "short"]);
    admin.fail(&["update", "user", "admin", "--access-token", "short"]);
    let conf = admin.write_file("short.json", r#"{"name": "c2", "access_token": "tiny"}"#);
    admin.fail(&[
        "create",
        "mcp-client",
        "--conf",
        conf.to_str().expect("utf-8 path"),
    ]);

    assert_eq!(names(&admin.json(&["list", "mcp-clients"])), ["c16"]);
    assert_eq!(names(&admin.json(&["list", "users"])), ["admin"]);
    admin.ok(&["whoami"]); // the admin token was not changed
}

#[test]
fn bad_json_config_files_are_rejected() {
    let (_cp, admin) = enterprise();
    let broken = admin.write_file("broken.json", "{\"name\": \"x\", ");
    let broken = broken.to_str().expect("utf-8 path");
    admin.fail(&["create", "mcp-client", "--conf", broken]);
    admin.fail(&["create", "user", "--conf", broken]);
    admin.fail(&["register", "-c", broken]);
    let missing = admin.home().join("missing.json");
    admin
        .fail(&["register", "-c", missing.to_str().expect("utf-8 path")])
        .assert_stderr_mentions("missing.json");
    // Valid JSON, wrong shape: unknown transport.
    let wrong = admin.write_file(
        "wrong.json",
        r#"{"name": "w", "transport": "carrier-pigeon", "url": "http://127.0.0.1:1/mcp"}"#,
    );
    admin.fail(&["register", "-c", wrong.to_str().expect("utf-8 path")]);
    // Bad --input JSON for invoke.
    admin.fail(&["invoke", "x__y", "--input", "{not json"]);

    assert!(names(&admin.json(&["list", "mcp-clients"])).is_empty());
    assert!(names(&admin.json(&["list", "servers"])).is_empty());
}

#[test]
fn unreachable_or_invalid_upstreams_store_nothing() {
    let (_cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    let before_servers = admin.json(&["list", "servers"]);
    let before_tools = admin.json(&["list", "tools"]);

    // Nothing listens on a fresh port.
    let down = format!("http://127.0.0.1:{}/mcp", free_port());
    admin
        .fail(&["register", "--name", "down", "--url", &down])
        .assert_no_panic();
    // A stdio command that does not exist.
    let conf = admin.write_file(
        "nocmd.json",
        r#"{"name": "nocmd", "transport": "stdio", "command": "/nonexistent/canopy-no-such-binary"}"#,
    );
    admin.fail(&["register", "-c", conf.to_str().expect("utf-8 path")]);
    // A stdio command that is not an MCP server.
    let conf = admin.write_file(
        "notmcp.json",
        r#"{"name": "notmcp", "transport": "stdio", "command": "/bin/sh", "args": ["-c", "echo hello; exit 3"]}"#,
    );
    admin.fail(&["register", "-c", conf.to_str().expect("utf-8 path")]);
    // A server that never answers: registration gives up at the server's deadline.
    let conf = admin.write_file(
        "silent.json",
        r#"{"name": "silent", "transport": "stdio", "command": "/bin/sh", "args": ["-c", "sleep 60"], "timeout_ms": 500}"#,
    );
    let out = admin.fail(&["register", "-c", conf.to_str().expect("utf-8 path")]);
    assert!(
        out.stderr.contains("silent") && out.stderr.contains("did not answer"),
        "a deadline error naming the server, got: {}",
        out.stderr
    );
    // Invalid names.
    for bad in ["bad__name", "bad_", "bad name", "bad/name", ""] {
        admin.fail(&["register", "--name", bad, "--url", &rmcp.url()]);
    }

    assert_eq!(admin.json(&["list", "servers"]), before_servers);
    assert_eq!(admin.json(&["list", "tools"]), before_tools);
}

#[test]
fn update_needs_a_flag_and_last_admin_stays() {
    let (_cp, admin) = enterprise();
    admin.json(&["create", "mcp-client", "c"]);
    admin.fail(&["update", "mcp-client", "c"]);
    admin.fail(&["delete", "user", "admin"]).assert_no_panic();
    assert_eq!(names(&admin.json(&["list", "users"])), ["admin"]);
    admin.ok(&["whoami"]);
}

#[test]
fn errors_are_one_line_without_panics() {
    let (_cp, admin) = enterprise();
    // A control plane that is not there: clear error, no hang, no panic.
    let nowhere = Cli::with_registry(&format!("http://127.0.0.1:{}", free_port()));
    nowhere.fail(&["list", "servers"]);
    nowhere.fail(&["init-server"]);
    // An unknown subcommand is a usage error, not a crash.
    let out = admin.run(&["frobnicate"]);
    assert_ne!(out.code, Some(0), "{out}");
    out.assert_no_panic();
}
