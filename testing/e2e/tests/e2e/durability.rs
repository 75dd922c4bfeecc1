//! Acknowledged = durable: every write the CLI saw succeed survives `kill -9`, and the global
//! revision counter continues without gaps after the restart.

use canopy_e2e::Cli;

use crate::common::{enterprise, names, revision};

const N: usize = 25;

#[test]
fn acknowledged_writes_survive_kill9_and_revisions_have_no_gaps() {
    let (mut cp, admin) = enterprise();

    // A revoking command reports the revision of its change: take one as the starting point.
    admin.json(&["create", "mcp-client", "marker"]);
    let start = revision(&admin.json(&["delete", "mcp-client", "marker"]));

    for i in 0..N {
        admin.json(&[
            "create",
            "mcp-client",
            &format!("client-{i:03}"),
            "--allow",
            "rmcp",
            // No server is registered here; only the writes matter.
            "--force",
        ]);
    }
    // N creations are N changes: the next change is start + N + 1.
    let after_creates =
        revision(&admin.json(&["update", "mcp-client", "client-000", "--allow", "*"]));
    assert_eq!(
        after_creates,
        start + N as u64 + 1,
        "revisions must be gapless"
    );

    // Crash with no warning.
    cp.kill9();
    cp.restart();

    let clients = names(&admin.json(&["list", "mcp-clients"]));
    for i in 0..N {
        let name = format!("client-{i:03}");
        assert!(
            clients.contains(&name),
            "{name} lost after kill -9: {clients:?}"
        );
    }
    assert!(
        !clients.contains(&"marker".to_owned()),
        "a deleted client came back"
    );
    let listed = admin.json(&["list", "mcp-clients"]);
    let c0 = listed
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "client-000"))
        .expect("client-000 listed");
    assert_eq!(
        c0["allowed_servers"],
        serde_json::json!(["*"]),
        "the last update was lost"
    );

    // The counter continues exactly where it stopped.
    let next = revision(&admin.json(&["delete", "mcp-client", "client-001"]));
    assert_eq!(
        next,
        after_creates + 1,
        "revision must continue without a gap after restart"
    );

    // Users and the admin's token survive too.
    admin.ok(&["whoami"]);
    let user = admin.json(&["create", "user", "durable"]);
    let token = user["access_token"]
        .as_str()
        .expect("generated token")
        .to_owned();
    cp.kill9();
    cp.restart();
    let durable = Cli::new(&cp);
    durable.ok(&["login", &token]);
    let next2 = revision(&admin.json(&["delete", "mcp-client", "client-002"]));
    assert_eq!(
        next2,
        next + 2,
        "one user creation in between: revision + 2"
    );

    // And a clean stop exits 0.
    let status = cp.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
}
