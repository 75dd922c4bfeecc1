//! Users' allow lists (issue 17, point 8): `invoke`, `usage`, `list tools|prompts|servers` reach
//! only what the user's list allows, and anything outside it answers exactly like an unknown tool.
//! One stack serves every check.

use canopy_e2e::{Cli, ControlPlane, FixtureServer};
use serde_json::{json, Value};

use crate::common::{access_token, enterprise, find, first_text, names};

fn logged_in(cp: &ControlPlane, created: &Value) -> Cli {
    let cli = Cli::new(cp);
    cli.ok(&["login", &access_token(created)]);
    cli
}

/// Runs `args` twice as `cli`, once naming a hidden thing and once an unknown one, and checks
/// both fail the same way (exit code, one-line message but for the name).
fn same_failure(cli: &Cli, args: &[&str], hidden: &str, unknown: &str) {
    let with = |name: &str| -> Vec<String> {
        args.iter()
            .map(|a| a.replace("{}", name))
            .collect::<Vec<_>>()
    };
    let hidden_args = with(hidden);
    let unknown_args = with(unknown);
    let h = cli.fail(&hidden_args.iter().map(String::as_str).collect::<Vec<_>>());
    let u = cli.fail(&unknown_args.iter().map(String::as_str).collect::<Vec<_>>());
    h.assert_one_line_error();
    assert_eq!(h.code, u.code, "hidden:\n{h}\nunknown:\n{u}");
    assert_eq!(
        h.stderr.replace(hidden, "<name>"),
        u.stderr.replace(unknown, "<name>"),
        "an out-of-scope name must read like an unknown one"
    );
}

#[test]
fn user_allow_list_limits_list_usage_and_invoke() {
    let (mut cp, admin) = enterprise();
    let fixture = FixtureServer::http();
    admin.ok(&["register", "--name", "fixture", "--url", &fixture.url()]);
    let all_tools = names(&admin.json(&["list", "tools"]));
    assert!(
        all_tools.contains(&"fixture__add".to_owned()),
        "{all_tools:?}"
    );

    // A user limited to one tool.
    let created = admin.json(&["create", "user", "carol", "--allow", "fixture__echo"]);
    assert_eq!(
        created["allowed_servers"],
        json!(["fixture__echo"]),
        "{created}"
    );
    let carol = logged_in(&cp, &created);
    let echoed = carol.json(&["invoke", "fixture__echo", "--input", r#"{"message": "hi"}"#]);
    assert_eq!(first_text(&echoed), "hi");
    carol.ok(&["usage", "fixture__echo"]);
    same_failure(
        &carol,
        &["invoke", "{}", "--input", r#"{"a": 1, "b": 2}"#],
        "fixture__add",
        "fixture__nope",
    );
    same_failure(&carol, &["usage", "{}"], "fixture__add", "fixture__nope");
    assert_eq!(names(&carol.json(&["list", "tools"])), ["fixture__echo"]);
    assert_eq!(
        names(&carol.json(&["list", "tools", "--server", "fixture"])),
        ["fixture__echo"]
    );
    assert!(names(&carol.json(&["list", "prompts"])).is_empty());
    let servers = carol.json(&["list", "servers"]);
    assert_eq!(find(&servers, "fixture")["tools"], 1, "{servers}");

    // No --allow: every server, as before.
    let created = admin.json(&["create", "user", "dave"]);
    assert_eq!(created["allowed_servers"], json!(["*"]), "{created}");
    let dave = logged_in(&cp, &created);
    assert_eq!(names(&dave.json(&["list", "tools"])), all_tools);
    let sum = dave.json(&["invoke", "fixture__add", "--input", r#"{"a": 2, "b": 3}"#]);
    assert_eq!(first_text(&sum), "5", "{sum}");

    // A user file with allowed_servers.
    let conf = admin.write_file(
        "erin.json",
        r#"{"name": "erin", "allowed_servers": ["fixture__add"], "access_token": "erin-token-0123456789"}"#,
    );
    let erin = admin.json(&["create", "user", "-c", conf.to_str().expect("utf-8 path")]);
    assert_eq!(erin["allowed_servers"], json!(["fixture__add"]), "{erin}");

    // Admins are not restricted, and a narrower list for one is refused in one line.
    admin
        .fail(&[
            "create", "user", "root", "--role", "admin", "--allow", "fixture",
        ])
        .assert_one_line_error();
    assert_eq!(names(&admin.json(&["list", "tools"])), all_tools);
    let sum = admin.json(&["invoke", "fixture__add", "--input", r#"{"a": 1, "b": 1}"#]);
    assert_eq!(first_text(&sum), "2", "{sum}");

    // Listings show each user's list (text and JSON).
    let users = admin.json(&["list", "users"]);
    for (name, allowed) in [
        ("admin", json!(["*"])),
        ("carol", json!(["fixture__echo"])),
        ("dave", json!(["*"])),
        ("erin", json!(["fixture__add"])),
    ] {
        assert_eq!(find(&users, name)["allowed_servers"], allowed, "{users}");
    }
    let text = admin.ok(&["list", "users"]).stdout;
    let carol_line = text.lines().find(|l| l.starts_with("carol"));
    assert!(
        carol_line.is_some_and(|l| l.contains("fixture__echo")),
        "{text}"
    );

    // Updating a list takes effect on the user's next command; the token is kept.
    admin.json(&["update", "user", "carol", "--allow", "fixture"]);
    let sum = carol.json(&["invoke", "fixture__add", "--input", r#"{"a": 4, "b": 5}"#]);
    assert_eq!(first_text(&sum), "9", "{sum}");
    admin.json(&["update", "user", "dave", "--allow", ""]);
    assert!(names(&dave.json(&["list", "tools"])).is_empty());
    same_failure(
        &dave,
        &["invoke", "{}", "--input", r#"{"message": "x"}"#],
        "fixture__echo",
        "fixture__nope",
    );

    // Lists survive a control-plane restart.
    cp.restart();
    assert_eq!(names(&carol.json(&["list", "tools"])), all_tools);
    assert!(names(&dave.json(&["list", "tools"])).is_empty());
    let users = admin.json(&["list", "users"]);
    assert_eq!(
        find(&users, "erin")["allowed_servers"],
        json!(["fixture__add"])
    );
}
