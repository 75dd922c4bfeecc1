//! OpenTelemetry traces from the real data plane (issue 12 item 5) into an OTLP/gRPC receiver
//! that is not ours (`canopy-otlp-receiver`: opentelemetry-proto's generated collector
//! service): a `tools/call` with a `traceparent` header gives a SERVER span in that trace
//! with the MCP attributes and a CLIENT child span; the upstream fixture receives the CLIENT
//! span's context as a header and in `params._meta.traceparent`; with `--otlp-sampling 0` a
//! trace the data plane starts is not exported nor propagated, a caller's unsampled one is
//! propagated unsampled, a caller's sampled one is exported.

use std::time::Duration;

use canopy_e2e::{ControlPlane, DataPlane, FixtureOptions, FixtureServer, OtlpReceiver};
use serde_json::{json, Value};

use crate::common::{access_token, enterprise};
use crate::faults::{echo_ok, poll, CONVERGE};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// OTLP span kinds.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

/// `tools/call rmcp__trace_context` with `traceparent` (when given): what the upstream saw,
/// `{"header": …, "meta": …}`.
fn traced_call(dp: &DataPlane, token: &str, traceparent: Option<&str>) -> Value {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("reqwest client");
    let mut req = client
        .post(dp.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {token}"))
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "rmcp__trace_context", "arguments": {}}})
            .to_string(),
        );
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().expect("POST /mcp");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&resp.text().unwrap_or_default()).expect("JSON body");
    let text = body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result: {body}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `00-<trace>-<span>-<flags>` split.
fn parts(traceparent: &Value) -> (String, String, String) {
    let s = traceparent.as_str().unwrap_or_default();
    let p: Vec<&str> = s.split('-').collect();
    assert_eq!(p.len(), 4, "not a traceparent: {s}");
    assert_eq!(p[0], "00");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

fn setup(extra: &[&str]) -> (ControlPlane, FixtureServer, OtlpReceiver, DataPlane, String) {
    let (cp, admin) = enterprise();
    let upstream = FixtureServer::http_with(FixtureOptions {
        trace_tool: true,
        ..Default::default()
    });
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let token = access_token(&admin.json(&["create", "mcp-client", "traced", "--allow", "rmcp"]));
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let mut args = vec!["--node-id", "traced", "--otlp-endpoint", &endpoint];
    args.extend_from_slice(extra);
    let dp = DataPlane::start_with(&cp, &args);
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    assert!(echo_ok(&dp, Some(&token), "rmcp__echo"));
    (cp, upstream, receiver, dp, token)
}

#[test]
fn a_traced_call_exports_server_and_client_spans_and_reaches_the_upstream() {
    let (_cp, _upstream, receiver, dp, token) = setup(&[]);
    let seen = traced_call(&dp, &token, Some(&format!("00-{TRACE}-{PARENT}-01")));

    // The upstream got the CLIENT span's context, the same in both places.
    assert_eq!(seen["header"], seen["meta"], "{seen}");
    let (trace, client_span, flags) = parts(&seen["header"]);
    assert_eq!(trace, TRACE);
    assert_eq!(flags, "01");
    assert_ne!(client_span, PARENT);

    let (server, client) = poll(
        CONVERGE,
        "SERVER and CLIENT spans of the traced call at the receiver",
        || {
            format!(
                "receiver: {:?}\ndata plane:\n{}",
                receiver.spans(),
                dp.logs()
            )
        },
        || {
            let spans = receiver.spans();
            let in_trace = |kind| {
                spans
                    .iter()
                    .find(|s| s["trace_id"] == TRACE && s["kind"] == kind)
                    .cloned()
            };
            Some((in_trace(SERVER)?, in_trace(CLIENT)?))
        },
    );
    assert_eq!(server["parent_span_id"], PARENT, "{server}");
    assert_eq!(server["name"], "tools/call rmcp__trace_context");
    assert_eq!(server["service"], "canopy-data-plane");
    let a = &server["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call", "{server}");
    assert_eq!(a["gen_ai.tool.name"], "rmcp__trace_context");
    assert_eq!(a["jsonrpc.request.id"], "7");
    assert_eq!(a["mcp.protocol.version"], "2025-11-25");
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(a["network.transport"], "tcp");
    assert_eq!(a["canopy.principal"], "traced");
    assert!(a.get("error.type").is_none(), "{server}");

    assert_eq!(client["span_id"], client_span.as_str(), "{client}");
    assert_eq!(client["parent_span_id"], server["span_id"]);
    assert_eq!(client["name"], "tools/call rmcp__trace_context");
    let c = &client["attributes"];
    assert_eq!(c["canopy.server"], "rmcp", "{client}");
    assert_eq!(c["server.address"], "127.0.0.1");
    assert_eq!(c["canopy.upstream.outcome"], "ok");

    let all = serde_json::to_string(&receiver.spans()).unwrap_or_default();
    assert!(!all.contains(&token), "the client's token is in a span");
}

#[test]
fn sampling_zero_exports_no_span_of_its_own_but_follows_a_sampled_caller() {
    let (_cp, _upstream, receiver, dp, token) = setup(&["--otlp-sampling", "0"]);
    // No caller context: the data plane starts the trace, unsampled, and records nothing of
    // it: the upstream gets no context (params and headers as the client sent them).
    let seen = traced_call(&dp, &token, None);
    assert!(
        seen["header"] == "none" && seen["meta"] == "none",
        "an unsampled trace of our own was propagated: {seen}"
    );
    // A caller's unsampled context is passed on (W3C), still not sampled.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let seen = traced_call(&dp, &token, Some(&format!("00-{unsampled}-{PARENT}-00")));
    assert_eq!(seen["header"], seen["meta"], "{seen}");
    let (trace, _, flags) = parts(&seen["header"]);
    assert_eq!((trace.as_str(), flags.as_str()), (unsampled, "00"));

    // A caller's sampled context is followed (parent-based), and its spans leave through the
    // same queue after the first call's would have.
    let seen = traced_call(&dp, &token, Some(&format!("00-{TRACE}-{PARENT}-01")));
    assert_eq!(parts(&seen["header"]).2, "01");
    poll(
        CONVERGE,
        "the sampled caller's SERVER span at the receiver",
        || {
            format!(
                "receiver: {:?}\ndata plane:\n{}",
                receiver.spans(),
                dp.logs()
            )
        },
        || {
            receiver
                .spans()
                .iter()
                .any(|s| s["trace_id"] == TRACE && s["kind"] == SERVER)
                .then_some(())
        },
    );
    let spans = receiver.spans();
    assert!(
        spans.iter().all(|s| s["trace_id"] != unsampled),
        "an unsampled trace was exported: {spans:?}"
    );
}
