//! The enterprise setup workflow of the reference page (steps 1–5) through the real CLI, with real
//! upstreams: the rmcp fixture over streamable HTTP and stdio, the Python SDK server over
//! streamable HTTP and SSE.

use canopy_e2e::{file_mode, Cli, FixtureOptions, FixtureServer, PyTransport, PythonServer};
use serde_json::json;

use crate::common::{access_token, allow_set, enterprise, find, first_text, names};

/// Step 1 + 2: start in enterprise mode, `init-server` writes a 0600 config and logs in as admin.
#[test]
fn init_server_creates_admin_and_private_config() {
    let (_cp, admin) = enterprise();
    // enterprise() already ran init-server; its JSON named the config file it wrote.
    let config = admin.config_path();
    assert!(
        config.is_file(),
        "init-server wrote no config file at {}",
        config.display()
    );
    assert_eq!(file_mode(&config), 0o600, "config file must be mode 0600");

    let me = admin.json(&["whoami"]);
    assert_eq!(me["name"], "admin", "whoami: {me}");
    assert_eq!(me["role"], "admin", "whoami: {me}");

    let users = admin.json(&["list", "users"]);
    let admin_entry = find(&users, "admin");
    assert_eq!(admin_entry["role"], "admin");

    // Text output marks admins.
    let text = admin.ok(&["list", "users"]);
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("admin"))
        .unwrap_or_else(|| panic!("admin missing from `list users`:\n{text}"));
    assert!(
        line.contains("[ADMIN]"),
        "admin not marked [ADMIN]:\n{text}"
    );
}

#[test]
fn init_server_json_reports_config_path() {
    let cp = canopy_e2e::ControlPlane::start_enterprise();
    let admin = Cli::new(&cp);
    let init = admin.json(&["init-server"]);
    assert_eq!(init["user"], "admin", "init-server JSON: {init}");
    let reported = init["config_path"]
        .as_str()
        .unwrap_or_else(|| panic!("init-server JSON without config_path: {init}"));
    assert_eq!(
        std::path::Path::new(reported),
        admin.config_path(),
        "config_path must be the CANOPY_CONFIG file"
    );
}

/// Step 3: register every kind of upstream, then read them back: servers, tools, prompts, usage,
/// invoke.
#[test]
fn register_list_usage_invoke_every_transport() {
    let (_cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    let rmcp_stateless = FixtureServer::http_with(FixtureOptions {
        stateless: true,
        ..Default::default()
    });
    let py_http = PythonServer::start(PyTransport::StreamableHttp { stateless: false });
    let py_sse = PythonServer::start(PyTransport::Sse);

    admin.ok(&[
        "register",
        "--name",
        "rmcp",
        "--url",
        &rmcp.url(),
        "--description",
        "rmcp fixture",
    ]);
    admin.ok(&[
        "register",
        "--name",
        "rmcp-json",
        "--url",
        &rmcp_stateless.url(),
    ]);
    let stdio = FixtureServer::stdio_command(&FixtureOptions::default());
    let stdio_conf = admin.write_file("stdio.json", &stdio.register_json("rmcpstdio").to_string());
    admin.ok(&["register", "-c", stdio_conf.to_str().expect("utf-8 path")]);
    let py_conf = admin.write_file(
        "py.json",
        &json!({"name": "py", "transport": "streamable_http", "url": py_http.url(),
                "description": "python sdk"})
        .to_string(),
    );
    admin.ok(&["register", "-c", py_conf.to_str().expect("utf-8 path")]);
    let sse_conf = admin.write_file(
        "sse.json",
        &json!({"name": "pysse", "transport": "sse", "url": py_sse.url()}).to_string(),
    );
    admin.ok(&["register", "-c", sse_conf.to_str().expect("utf-8 path")]);

    // Servers, with their transports.
    let servers = admin.json(&["list", "servers"]);
    let mut server_names = names(&servers);
    server_names.sort();
    assert_eq!(
        server_names,
        ["py", "pysse", "rmcp", "rmcp-json", "rmcpstdio"]
    );
    assert_eq!(find(&servers, "rmcp")["transport"], "streamable_http");
    assert_eq!(find(&servers, "rmcp")["description"], "rmcp fixture");
    assert_eq!(find(&servers, "rmcp")["url"], rmcp.url().as_str());
    assert_eq!(find(&servers, "pysse")["transport"], "sse");
    assert_eq!(find(&servers, "rmcpstdio")["transport"], "stdio");
    assert_eq!(
        find(&servers, "rmcpstdio")["command"],
        stdio.command.as_str()
    );

    // Tools: prefixed `<server>__<tool>`, with their server.
    let tools = admin.json(&["list", "tools"]);
    let tool_names = names(&tools);
    for expected in [
        "rmcp__echo",
        "rmcp__add",
        "rmcp__slow",
        "rmcp__fail",
        "rmcp__progress",
        "rmcp__auth_header",
        "rmcp-json__echo",
        "rmcpstdio__echo",
        "rmcpstdio__add",
        "py__echo",
        "py__add",
        "pysse__echo",
        "pysse__add",
    ] {
        assert!(
            tool_names.iter().any(|n| n == expected),
            "{expected} missing from {tool_names:?}"
        );
    }
    assert_eq!(find(&tools, "py__add")["server"], "py");
    assert_eq!(
        find(&tools, "rmcp__echo")["description"],
        "Echo the message back as text"
    );

    let only_py = admin.json(&["list", "tools", "--server", "py"]);
    let mut py_names = names(&only_py);
    py_names.sort();
    assert_eq!(py_names, ["py__add", "py__echo"]);

    // Prompts, prefixed the same way.
    let prompts = admin.ok(&["list", "prompts"]);
    for expected in [
        "rmcp__greeting",
        "rmcpstdio__greeting",
        "py__greeting",
        "pysse__greeting",
    ] {
        assert!(
            prompts.stdout.contains(expected),
            "{expected} missing:\n{prompts}"
        );
    }
    let py_prompts = admin.ok(&["list", "prompts", "--server", "py"]);
    assert!(py_prompts.stdout.contains("py__greeting"), "{py_prompts}");
    assert!(
        !py_prompts.stdout.contains("rmcp__greeting"),
        "{py_prompts}"
    );

    // Usage: description and input schema.
    let usage = admin.ok(&["usage", "rmcp__add"]);
    assert!(
        usage.stdout.contains("Add two numbers"),
        "usage lacks description:\n{usage}"
    );
    assert!(
        usage.stdout.contains("\"a\"") || usage.stdout.contains(" a"),
        "{usage}"
    );

    // Invoke through every transport; -o json gives the CallToolResult.
    let sum = admin.json(&["invoke", "rmcp__add", "--input", r#"{"a": 2, "b": 3}"#]);
    assert_eq!(first_text(&sum), "5", "{sum}");
    assert_ne!(sum["isError"], true, "{sum}");
    for (tool, input, want) in [
        ("rmcp-json__echo", r#"{"message": "hi json"}"#, "hi json"),
        ("rmcpstdio__echo", r#"{"message": "hi stdio"}"#, "hi stdio"),
        ("py__echo", r#"{"message": "hi python"}"#, "hi python"),
        ("pysse__add", r#"{"a": 40, "b": 2}"#, "42"),
    ] {
        let result = admin.json(&["invoke", tool, "--input", input]);
        assert_eq!(first_text(&result), want, "{tool}: {result}");
    }

    // A tool error is a result with isError, not a CLI crash.
    let failed = admin.run_json(&["invoke", "rmcp__fail"]);
    failed.assert_no_panic();
    assert!(
        failed.stdout.contains("\"isError\":true") || failed.stdout.contains("\"isError\": true"),
        "expected an isError result:\n{failed}"
    );
}

/// The registered bearer token reaches the upstream; `list servers` never shows it; the caller's
/// own token is never forwarded.
#[test]
fn registered_bearer_token_is_used_and_redacted() {
    let (_cp, admin) = enterprise();
    let upstream_token = "upstream-secret-0123456789abcdef";
    let secured = FixtureServer::http_with(FixtureOptions {
        require_bearer: Some(upstream_token.to_owned()),
        ..Default::default()
    });

    // Without the token the upstream answers 401: registration fails and stores nothing.
    admin
        .fail(&["register", "--name", "secured", "--url", &secured.url()])
        .assert_no_panic();
    assert!(names(&admin.json(&["list", "servers"])).is_empty());

    admin.ok(&[
        "register",
        "--name",
        "secured",
        "--url",
        &secured.url(),
        "--bearer-token",
        upstream_token,
    ]);
    let result = admin.json(&["invoke", "secured__auth_header"]);
    assert_eq!(first_text(&result), format!("Bearer {upstream_token}"));

    for args in [
        &["list", "servers"][..],
        &["-o", "json", "list", "servers"][..],
    ] {
        let out = admin.ok(args);
        assert!(
            !out.stdout.contains(upstream_token),
            "secret shown by list servers:\n{out}"
        );
    }

    // A user's invoke also uses the registered credentials, never the user's token.
    let user = admin.json(&["create", "user", "carol"]);
    let carol_token = access_token(&user);
    let carol = Cli::new(&_cp);
    carol.ok(&["login", &carol_token]);
    let result = carol.json(&["invoke", "secured__auth_header"]);
    assert_eq!(first_text(&result), format!("Bearer {upstream_token}"));
    assert!(!first_text(&result).contains(&carol_token));
}

/// Step 4: MCP clients with every kind of allow-list entry.
#[test]
fn create_mcp_clients_with_allow_lists() {
    let (_cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);

    let agent = admin.json(&[
        "create",
        "mcp-client",
        "my-agent",
        "--allow",
        "rmcp , other",
        "--description",
        "CI agent",
        // `other` is registered later (or never): stored on purpose.
        "--force",
    ]);
    assert_eq!(agent["name"], "my-agent");
    assert_eq!(agent["description"], "CI agent");
    assert_eq!(allow_set(&agent["allowed_servers"]), ["other", "rmcp"]);
    let agent_token = access_token(&agent);
    assert!(
        agent_token.len() >= 22,
        "a 128-bit token needs ≥ 22 chars: {agent_token}"
    );

    // `*` works and warns.
    let star = admin.run_json(&["create", "mcp-client", "everything", "--allow", "*"]);
    star.assert_success();
    assert_eq!(star.json()["allowed_servers"], json!(["*"]));
    assert!(
        star.text_lower().contains("warn"),
        "`--allow *` must print a warning:\n{star}"
    );

    // A single tool.
    let narrow = admin.json(&["create", "mcp-client", "narrow", "--allow", "rmcp__echo"]);
    assert_eq!(narrow["allowed_servers"], json!(["rmcp__echo"]));

    // No --allow: no access.
    let none = admin.json(&["create", "mcp-client", "nothing"]);
    assert_eq!(none["allowed_servers"], json!([]));

    // A custom token is accepted and not echoed back.
    let custom_token = "custom-client-token-0123456789";
    let custom = admin.json(&[
        "create",
        "mcp-client",
        "custom",
        "--allow",
        "rmcp",
        "--access-token",
        custom_token,
    ]);
    assert!(
        custom.get("access_token").is_none(),
        "custom token echoed: {custom}"
    );

    // The text output shows the generated token once.
    let text = admin.ok(&["create", "mcp-client", "texty", "--allow", "rmcp"]);
    assert!(!text.stdout.trim().is_empty(), "{text}");

    let list = admin.json(&["list", "mcp-clients"]);
    let mut client_names = names(&list);
    client_names.sort();
    assert_eq!(
        client_names,
        [
            "custom",
            "everything",
            "my-agent",
            "narrow",
            "nothing",
            "texty"
        ]
    );
    assert_eq!(
        allow_set(&find(&list, "my-agent")["allowed_servers"]),
        ["other", "rmcp"]
    );
    let list_text = admin.ok(&["list", "mcp-clients"]);
    for out in [
        serde_json::to_string(&list).unwrap_or_default(),
        list_text.stdout,
    ] {
        assert!(!out.contains(&agent_token), "list shows a token");
        assert!(!out.contains(custom_token), "list shows a token");
        assert!(
            !out.contains("access_token\":\""),
            "list has a token field: {out}"
        );
    }

    // update: description, allow list, token; then delete.
    admin.ok(&[
        "update",
        "mcp-client",
        "narrow",
        "--description",
        "just echo",
    ]);
    admin.json(&[
        "update",
        "mcp-client",
        "narrow",
        "--allow",
        "rmcp__echo, rmcp__add",
    ]);
    let list = admin.json(&["list", "mcp-clients"]);
    assert_eq!(find(&list, "narrow")["description"], "just echo");
    assert_eq!(
        allow_set(&find(&list, "narrow")["allowed_servers"]),
        ["rmcp__add", "rmcp__echo"]
    );
    admin.json(&[
        "update",
        "mcp-client",
        "narrow",
        "--access-token",
        "rotated-token-0123456789abc",
    ]);
    let deleted = admin.json(&["delete", "mcp-client", "narrow"]);
    assert!(
        deleted["revision"].is_u64(),
        "revoking commands report a revision: {deleted}"
    );
    assert!(!names(&admin.json(&["list", "mcp-clients"])).contains(&"narrow".to_owned()));
}

/// Step 5: users. The admin creates one; the user logs in with the printed command, may read and
/// invoke, and gets a one-line permission error for anything that changes state.
#[test]
fn users_login_and_role_limits() {
    let (cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);

    // Text output: prints the `canopy login <token>` line to share.
    let created = admin.ok(&["create", "user", "alice"]);
    let login_line = created
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("canopy login "))
        .unwrap_or_else(|| panic!("no `canopy login <token>` line:\n{created}"));
    let alice_token = login_line.trim().to_owned();
    assert!(!alice_token.is_empty());

    let alice = Cli::new(&cp);
    let who = alice.json(&["login", &alice_token]);
    assert_eq!(who["name"], "alice", "login: {who}");
    assert_eq!(who["role"], "user", "login: {who}");
    assert_eq!(
        file_mode(&alice.config_path()),
        0o600,
        "login config must be mode 0600"
    );
    let me = alice.json(&["whoami"]);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("alice"), Some("user"))
    );

    // Text login prints the name and role.
    let alice_text = Cli::new(&cp);
    let out = alice_text.ok(&["login", &alice_token]);
    assert!(
        out.stdout.contains("alice") && out.stdout.contains("user"),
        "{out}"
    );

    // What a user may do.
    assert_eq!(names(&alice.json(&["list", "servers"])), ["rmcp"]);
    assert!(names(&alice.json(&["list", "tools"])).contains(&"rmcp__echo".to_owned()));
    alice.ok(&["list", "prompts"]);
    alice.ok(&["usage", "rmcp__echo"]);
    let echoed = alice.json(&[
        "invoke",
        "rmcp__echo",
        "--input",
        r#"{"message": "from alice"}"#,
    ]);
    assert_eq!(first_text(&echoed), "from alice");

    // What a user may not do: one-line permission errors, and nothing changes.
    let conf = alice.write_file(
        "c.json",
        r#"{"name": "x", "access_token": "abcdefghijklmnop1234"}"#,
    );
    let rmcp_url = rmcp.url();
    let denied: Vec<Vec<&str>> = vec![
        vec!["create", "mcp-client", "sneaky", "--allow", "rmcp"],
        vec![
            "create",
            "mcp-client",
            "--conf",
            conf.to_str().expect("utf-8 path"),
        ],
        vec!["create", "user", "mallory"],
        vec!["register", "--name", "evil", "--url", &rmcp_url],
        vec!["deregister", "rmcp"],
        vec!["list", "users"],
        vec!["list", "mcp-clients"],
        vec!["delete", "user", "admin"],
        vec![
            "update",
            "user",
            "admin",
            "--access-token",
            "takeover-token-0123456789",
        ],
    ];
    for args in &denied {
        let out = alice.fail(args);
        out.assert_one_line_error();
        let lower = out.stderr.to_lowercase();
        assert!(
            lower.contains("permission") || lower.contains("denied") || lower.contains("admin"),
            "expected a permission error:\n{out}"
        );
    }
    assert_eq!(names(&admin.json(&["list", "servers"])), ["rmcp"]);
    assert!(names(&admin.json(&["list", "mcp-clients"])).is_empty());
    let mut users = names(&admin.json(&["list", "users"]));
    users.sort();
    assert_eq!(users, ["admin", "alice"]);

    // JSON creation, admin role, token rotation, deletion.
    let bob = admin.json(&["create", "user", "bob", "--role", "admin"]);
    assert_eq!(
        (bob["name"].as_str(), bob["role"].as_str()),
        (Some("bob"), Some("admin"))
    );
    let bob_cli = Cli::new(&cp);
    bob_cli.ok(&["login", &access_token(&bob)]);
    bob_cli.ok(&["list", "users"]);

    let new_token = "alice-rotated-token-0123456789";
    admin.json(&["update", "user", "alice", "--access-token", new_token]);
    alice.fail(&["list", "servers"]); // the old token is gone
    alice.ok(&["login", new_token]);
    alice.ok(&["whoami"]);

    admin.json(&["delete", "user", "alice"]);
    alice.fail(&["list", "servers"]);
    let users = names(&admin.json(&["list", "users"]));
    assert!(!users.contains(&"alice".to_owned()), "{users:?}");
}

/// `deregister` removes the server and its tools.
#[test]
fn deregister_removes_server_and_tools() {
    let (_cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    assert!(!names(&admin.json(&["list", "tools"])).is_empty());
    admin.ok(&["deregister", "rmcp"]);
    assert!(names(&admin.json(&["list", "servers"])).is_empty());
    assert!(names(&admin.json(&["list", "tools"])).is_empty());
    admin.fail(&["invoke", "rmcp__echo", "--input", r#"{"message": "x"}"#]);
}

/// A refused `create mcp-client --allow "*"` is a one-line permission error too: no warning about a
/// client that was never created.
#[test]
fn refused_star_client_is_a_one_line_error() {
    let (cp, admin) = enterprise();
    let user = admin.json(&["create", "user", "dave"]);
    let dave = Cli::new(&cp);
    dave.ok(&["login", &access_token(&user)]);
    let out = dave.fail(&["create", "mcp-client", "sneaky", "--allow", "*"]);
    out.assert_one_line_error();
    out.assert_stderr_mentions("permission");
}
