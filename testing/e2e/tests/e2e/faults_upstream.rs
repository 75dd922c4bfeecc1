//! Upstream faults (issue 4): an upstream that hangs, dies mid-call or answers garbage gives a
//! JSON-RPC error naming the server — never a hang — and the next call works.

use std::time::Duration;

use canopy_e2e::{free_port, Cli, ControlPlane, DataPlane};
use serde_json::{json, Value};

use crate::faults::{call, echo_ok, poll, rpc_error, GarbageServer, PortFixture, CONVERGE};

/// `register -c` with a per-server call deadline.
fn register(admin: &Cli, name: &str, url: &str, timeout_ms: u64) {
    let conf = admin.write_file(
        &format!("{name}.json"),
        &json!({
            "name": name,
            "transport": "streamable_http",
            "url": url,
            "timeout_ms": timeout_ms,
        })
        .to_string(),
    );
    admin.ok(&["register", "-c", &conf.display().to_string()]);
}

fn dev_fleet() -> (ControlPlane, Cli, DataPlane) {
    let cp = ControlPlane::start_development();
    let admin = Cli::new(&cp);
    let dp = DataPlane::start_with(&cp, &["--node-id", "upstream-faults"]);
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    (cp, admin, dp)
}

/// Waits until `tool` is in the data plane's catalogue (registration is not an acknowledged wait).
fn wait_tool(dp: &DataPlane, tool: &str) {
    poll(
        CONVERGE,
        &format!("{tool} on the data plane"),
        || dp.logs(),
        || {
            crate::faults::tool_names(dp, None)
                .1
                .iter()
                .any(|t| t == tool)
                .then_some(())
        },
    );
}

fn assert_error_naming(status: u16, body: &Value, server: &str) {
    let msg = rpc_error(body);
    assert!(
        msg.contains(server),
        "the error must name the server {server:?}: HTTP {status} {body}"
    );
}

#[test]
fn faults_hanging_upstream_hits_its_deadline_and_the_next_call_works() {
    let (_cp, admin, dp) = dev_fleet();
    let upstream = PortFixture::start(free_port(), 0);
    register(&admin, "hangs", &upstream.url(), 1_000);
    wait_tool(&dp, "hangs__slow");

    // The upstream would answer after 10 minutes; the 1 s deadline answers for it.
    let (status, body) = call(&dp, None, "hangs__slow", json!({"ms": 600_000}));
    assert_error_naming(status, &body, "hangs");
    assert!(
        echo_ok(&dp, None, "hangs__echo"),
        "next call after a timeout failed; logs:\n{}",
        dp.logs()
    );
}

#[test]
fn faults_upstream_dying_mid_call_then_restarted_on_the_same_port() {
    let (_cp, admin, dp) = dev_fleet();
    let port = free_port();
    let mut upstream = PortFixture::start(port, 0);
    register(&admin, "mortal", &upstream.url(), 60_000);
    wait_tool(&dp, "mortal__slow");
    assert!(echo_ok(&dp, None, "mortal__echo"));

    let caller = {
        let url = dp.mcp_url();
        std::thread::spawn(move || {
            crate::faults::rpc(
                &url,
                None,
                "tools/call",
                json!({"name": "mortal__slow", "arguments": {"ms": 50_000}}),
            )
        })
    };
    // Give the call a moment to reach the upstream (if it does not, it fails on connect,
    // which is an error too).
    std::thread::sleep(Duration::from_millis(500));
    upstream.kill9();
    let (status, body) = caller
        .join()
        .expect("caller thread")
        .expect("the data plane must answer, not drop the connection");
    assert_error_naming(status, &body, "mortal");

    // Down: still an error naming it, promptly.
    let (status, body) = call(&dp, None, "mortal__echo", json!({"message": "x"}));
    assert_error_naming(status, &body, "mortal");

    let _upstream = PortFixture::start(port, 0);
    assert!(
        echo_ok(&dp, None, "mortal__echo"),
        "the first call after the upstream came back failed: {:?}; logs:\n{}",
        call(&dp, None, "mortal__echo", json!({"message": "again"})),
        dp.logs()
    );
}

#[test]
fn faults_upstream_answering_garbage_gives_a_json_rpc_error() {
    let (_cp, admin, dp) = dev_fleet();
    let port = free_port();
    let mut upstream = PortFixture::start(port, 0);
    register(&admin, "junk", &upstream.url(), 5_000);
    let healthy = PortFixture::start(free_port(), 0);
    register(&admin, "fine", &healthy.url(), 5_000);
    wait_tool(&dp, "junk__echo");
    wait_tool(&dp, "fine__echo");

    // Same address, now a server that answers 200 with a body that is not JSON.
    upstream.kill9();
    let _garbage = GarbageServer::start(port);
    let (status, body) = call(&dp, None, "junk__echo", json!({"message": "x"}));
    assert_error_naming(status, &body, "junk");
    assert!(
        echo_ok(&dp, None, "fine__echo"),
        "another upstream's call failed after garbage"
    );
    let (status, body) = call(&dp, None, "junk__echo", json!({"message": "y"}));
    assert_error_naming(status, &body, "junk");
}
