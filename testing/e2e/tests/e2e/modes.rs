//! Development vs enterprise mode, and a data dir that remembers its mode.

use canopy_e2e::{Cli, ControlPlane, ControlPlaneOptions, FixtureServer, StartOutcome};

use crate::common::{first_text, names};

#[test]
fn development_mode_refuses_user_and_client_commands() {
    let cp = ControlPlane::start_development();
    let cli = Cli::new(&cp);
    let commands: [&[&str]; 9] = [
        &["init-server"],
        &["create", "mcp-client", "c", "--allow", "*"],
        &["list", "mcp-clients"],
        &["update", "mcp-client", "c", "--description", "d"],
        &["delete", "mcp-client", "c"],
        &["create", "user", "alice"],
        &["list", "users"],
        &[
            "update",
            "user",
            "alice",
            "--access-token",
            "some-long-token-0123456789",
        ],
        &["delete", "user", "alice"],
    ];
    for args in commands {
        cli.fail(args).assert_stderr_mentions("enterprise");
    }
}

#[test]
fn development_mode_serves_servers_without_a_token() {
    let cp = ControlPlane::start_development();
    let cli = Cli::new(&cp);
    let rmcp = FixtureServer::http();
    cli.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    assert_eq!(names(&cli.json(&["list", "servers"])), ["rmcp"]);
    assert!(names(&cli.json(&["list", "tools"])).contains(&"rmcp__add".to_owned()));
    let sum = cli.json(&["invoke", "rmcp__add", "--input", r#"{"a": 1, "b": 2}"#]);
    assert_eq!(first_text(&sum), "3");
    cli.ok(&["deregister", "rmcp"]);
}

fn expect_refusal(outcome: StartOutcome, wanted: &str) {
    match outcome {
        StartOutcome::Listening { output } => {
            panic!("a data dir in the other mode must refuse to start ({wanted}); it listened:\n{output}")
        }
        StartOutcome::Exited { status, output } => {
            assert!(
                !status.success(),
                "refusal must exit non-zero: {status:?}\n{output}"
            );
            assert!(
                output.to_lowercase().contains("enterprise"),
                "the refusal must say which mode the data dir is in:\n{output}"
            );
            assert!(
                !output.contains("panicked at"),
                "refusal by panic:\n{output}"
            );
        }
    }
}

#[test]
fn enterprise_data_dir_refuses_development_mode() {
    let mut cp = ControlPlane::start_enterprise();
    Cli::new(&cp).json(&["init-server"]);
    let outcome = cp.try_start_with(ControlPlaneOptions::default());
    expect_refusal(outcome, "enterprise dir started in development mode");
    // Still fine in its own mode, with its admin intact.
    cp.restart();
    let admin = Cli::new(&cp);
    admin.fail(&["init-server"]);
}

#[test]
fn development_data_dir_refuses_enterprise_mode() {
    let mut cp = ControlPlane::start_development();
    // A development dir in use: it holds a registered server.
    let rmcp = FixtureServer::http();
    Cli::new(&cp).ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    let outcome = cp.try_start_with(ControlPlaneOptions {
        enterprise: true,
        ..Default::default()
    });
    expect_refusal(outcome, "development dir started in enterprise mode");
    cp.restart();
    assert_eq!(names(&Cli::new(&cp).json(&["list", "servers"])), ["rmcp"]);
}
