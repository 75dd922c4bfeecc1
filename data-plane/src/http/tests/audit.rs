//! The audit event of each request through the real router: one per request, every
//! outcome, the fields of the contract, and never a token.

use super::*;
use crate::audit::{Audit, AuditSettings};
use axum::extract::ConnectInfo;
use canopy_proto::v1::{AuditOutcome, AuditPayload};
use prost::Message;
use tokio::sync::mpsc;

const UPSTREAM_SECRET: &str = "upstream-secret";

async fn audited_with(
    settings: HttpSettings,
    payload: AuditPayload,
    max_payload: usize,
) -> (Env, mpsc::Receiver<pb::AuditEvent>) {
    let mut s = AuditSettings::new("dp-test");
    s.max_payload_bytes = max_payload;
    let (audit, rx) = Audit::new(s);
    let e = env_full(settings, pb::Mode::Enterprise, Some(audit), payload).await;
    (e, rx)
}

async fn audited() -> (Env, mpsc::Receiver<pb::AuditEvent>) {
    audited_with(HttpSettings::default(), AuditPayload::Off, 1024).await
}

/// The one event the last request produced, checked for what every event must have.
fn one(rx: &mut mpsc::Receiver<pb::AuditEvent>, secrets: &[&str]) -> pb::McpRequestEvent {
    let ev = rx.try_recv().expect("no audit event");
    assert!(
        rx.try_recv().is_err(),
        "more than one event for one request"
    );
    assert_eq!(ev.id.len(), 16);
    assert!(ev.time_unix_nanos > 1_600_000_000_000_000_000);
    let bytes = ev.encode_to_vec();
    for s in secrets {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "a secret in the audit event: {ev:?}"
        );
    }
    let Some(pb::audit_event::Kind::Request(r)) = ev.kind else {
        panic!("not a request event: {ev:?}");
    };
    // Stamped by the shipper, off the request path.
    assert_eq!(r.data_plane, "");
    assert_eq!(r.trace_id.len(), 32, "{r:?}");
    assert_eq!(r.span_id.len(), 16, "{r:?}");
    assert!(r.duration_ms >= 0.0);
    r
}

fn client_of(r: &pb::McpRequestEvent) -> Option<String> {
    match r.principal.as_ref()?.kind.as_ref()? {
        pb::audit_principal::Kind::McpClient(c) => Some(c.clone()),
        _ => None,
    }
}

fn anonymous(r: &pb::McpRequestEvent) -> bool {
    matches!(
        r.principal.as_ref().and_then(|p| p.kind.as_ref()),
        Some(pb::audit_principal::Kind::Anonymous(true))
    )
}

#[derive(Debug)]
struct Expect {
    status: u32,
    outcome: AuditOutcome,
    error_type: &'static str,
    code: i32,
    method: &'static str,
    server: &'static str,
    tool: &'static str,
    client: Option<&'static str>,
}

const OK: Expect = Expect {
    status: 200,
    outcome: AuditOutcome::Ok,
    error_type: "",
    code: 0,
    method: "tools/call",
    server: "gh",
    tool: "gh__echo",
    client: Some("alice"),
};

#[tokio::test]
async fn every_outcome_gets_one_event_with_its_fields() {
    let (e, mut rx) = audited().await;
    let secrets = [ALICE, BOB, UPSTREAM_SECRET, "bogus-token-0123456789"];
    let call = |name: &str| Req::rpc("tools/call", json!({"name": name, "arguments": {"q": 1}}));
    let cases: Vec<(&str, Req, Expect)> = vec![
        ("ok", call("gh__echo"), OK),
        (
            "tool isError",
            call("gh__odd"),
            Expect {
                outcome: AuditOutcome::ToolError,
                error_type: "tool_error",
                tool: "gh__odd",
                ..OK
            },
        ),
        (
            "upstream JSON-RPC error",
            call("gh__fail"),
            Expect {
                outcome: AuditOutcome::Error,
                error_type: "-32000",
                code: -32000,
                tool: "gh__fail",
                ..OK
            },
        ),
        (
            "upstream unreachable",
            call("down__x"),
            Expect {
                outcome: AuditOutcome::Error,
                error_type: "upstream_unreachable",
                code: -32603,
                server: "down",
                tool: "down__x",
                ..OK
            },
        ),
        (
            "no token",
            call("gh__echo").without("authorization"),
            Expect {
                status: 401,
                outcome: AuditOutcome::Denied,
                error_type: "unauthorized",
                code: -32600,
                method: "",
                server: "",
                tool: "",
                client: None,
            },
        ),
        (
            "unknown token",
            call("gh__echo").token("bogus-token-0123456789"),
            Expect {
                status: 401,
                outcome: AuditOutcome::Denied,
                error_type: "unauthorized",
                code: -32600,
                method: "",
                server: "",
                tool: "",
                client: None,
            },
        ),
        (
            "out of scope",
            call("gh__progress").token(BOB),
            Expect {
                outcome: AuditOutcome::Denied,
                error_type: "unknown_tool",
                code: -32602,
                tool: "gh__progress",
                client: Some("bob"),
                ..OK
            },
        ),
        (
            "unknown tool",
            call("gh__nope"),
            Expect {
                outcome: AuditOutcome::Error,
                error_type: "unknown_tool",
                code: -32602,
                server: "",
                tool: "gh__nope",
                ..OK
            },
        ),
        (
            "malformed JSON",
            Req::post("{not json"),
            Expect {
                status: 400,
                outcome: AuditOutcome::Error,
                error_type: "parse_error",
                code: -32700,
                method: "",
                server: "",
                tool: "",
                ..OK
            },
        ),
        (
            "unknown method",
            Req::rpc("bogus/method", json!({})),
            Expect {
                outcome: AuditOutcome::Error,
                error_type: "method_not_found",
                code: -32601,
                method: "bogus/method",
                server: "",
                tool: "",
                ..OK
            },
        ),
        (
            "list",
            Req::rpc("tools/list", json!({})),
            Expect {
                method: "tools/list",
                server: "",
                tool: "",
                ..OK
            },
        ),
    ];
    for (what, req, want) in cases {
        let body_len = req.body.len() as u64;
        let r = req.send(&e.dp).await;
        let got = one(&mut rx, &secrets);
        assert_eq!(got.http_status, want.status, "{what}: {got:?} {}", r.text);
        assert_eq!(got.http_status, u32::from(r.status.as_u16()), "{what}");
        assert_eq!(got.outcome, want.outcome as i32, "{what}: {got:?}");
        assert_eq!(got.error_type, want.error_type, "{what}: {got:?}");
        assert_eq!(got.jsonrpc_error_code, want.code, "{what}: {got:?}");
        assert_eq!(got.method, want.method, "{what}");
        assert_eq!(got.server, want.server, "{what}");
        assert_eq!(got.tool, want.tool, "{what}");
        assert_eq!(client_of(&got).as_deref(), want.client, "{what}");
        if want.client.is_none() {
            assert!(anonymous(&got), "{what}: {got:?}");
        }
        assert_eq!(got.endpoint, "/mcp");
        assert_eq!(got.bytes_out, r.text.len() as u64, "{what}");
        if want.status != 401 {
            // A refused request's body is not read.
            assert_eq!(got.bytes_in, body_len, "{what}");
        }
        if !want.method.is_empty() {
            assert_eq!(got.request_id, "1", "{what}");
        }
        assert!(
            got.arguments.is_empty() && got.result.is_empty(),
            "{what}: payload is off"
        );
    }
    // The same requests in the per-principal and per-tool series.
    let r = Req {
        method: "GET",
        path: "/metrics".into(),
        headers: vec![],
        body: String::new(),
    }
    .send(&e.dp)
    .await;
    for line in [
        "canopy_principal_requests_total{principal=\"alice\",outcome=\"ok\"} 2",
        "canopy_principal_requests_total{principal=\"alice\",outcome=\"tool_error\"} 1",
        "canopy_principal_requests_total{principal=\"bob\",outcome=\"denied\"} 1",
        "canopy_principal_requests_total{principal=\"anonymous\",outcome=\"denied\"} 2",
        "canopy_tool_calls_total{server=\"gh\",tool=\"gh__echo\",outcome=\"ok\"} 1",
        "canopy_tool_calls_total{server=\"gh\",tool=\"gh__fail\",outcome=\"error\"} 1",
        "canopy_tool_calls_duration_seconds_count{server=\"gh\",tool=\"gh__echo\"} 1",
        "canopy_audit_queue_depth 0",
    ] {
        assert!(r.text.contains(line), "{line} not in\n{}", r.text);
    }
    // Made-up tool names take no place in the tool series.
    assert!(!r.text.contains("gh__nope"), "{}", r.text);
}

#[tokio::test]
async fn era_endpoint_notification_and_too_large() {
    let settings = HttpSettings {
        max_body_bytes: 512,
        ..HttpSettings::default()
    };
    let (e, mut rx) = audited_with(settings, AuditPayload::Off, 1024).await;
    let r = Req::modern("tools/list", json!({})).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = one(&mut rx, &[ALICE]);
    assert_eq!(got.protocol_version, MODERN);
    assert_eq!(got.outcome, AuditOutcome::Ok as i32);

    let r = Req::rpc("tools/list", json!({}))
        .path("/servers/gh/mcp")
        .header("mcp-protocol-version", "2025-06-18")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = one(&mut rx, &[ALICE]);
    assert_eq!(got.endpoint, "/servers/gh/mcp");
    assert_eq!(got.protocol_version, "2025-06-18");

    let r = Req::post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let got = one(&mut rx, &[ALICE]);
    assert_eq!(got.method, "notifications/initialized");
    assert_eq!(got.request_id, "");
    assert_eq!(got.http_status, 202);
    assert_eq!(got.outcome, AuditOutcome::Ok as i32);
    assert_eq!(got.bytes_out, 0);

    let r = Req::rpc("initialize", json!({"protocolVersion":"2025-03-26"}))
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(one(&mut rx, &[ALICE]).protocol_version, "2025-03-26");

    for path in ["/mcp", "/servers/gh/mcp"] {
        let mut get = Req::post("");
        get.method = "GET";
        let r = get.path(path).send(&e.dp).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let got = one(&mut rx, &[ALICE]);
        assert_eq!(got.endpoint, path);
        assert_eq!(got.http_status, 405);
        assert_eq!(got.error_type, "method_not_allowed");
        assert_eq!(got.outcome, AuditOutcome::Error as i32);
    }

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(600)
    );
    let r = Req::post(big).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let got = one(&mut rx, &[ALICE]);
    assert_eq!(got.error_type, "too_large");
    assert_eq!(got.outcome, AuditOutcome::Error as i32);
    assert_eq!(client_of(&got).as_deref(), Some("alice"));
}

#[tokio::test]
async fn trace_context_from_the_header_or_meta_and_the_client_address() {
    let (e, mut rx) = audited().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    Req::rpc("tools/list", json!({}))
        .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
        .send(&e.dp)
        .await;
    let got = one(&mut rx, &[]);
    assert_eq!(got.trace_id, trace);
    assert_ne!(got.span_id, "00f067aa0ba902b7");

    let meta_trace = "0af7651916cd43dd8448eb211c80319c";
    Req::rpc(
        "tools/call",
        json!({"name":"gh__echo","_meta":{"traceparent":format!("00-{meta_trace}-b7ad6b7169203331-01")}}),
    )
    .send(&e.dp)
    .await;
    assert_eq!(one(&mut rx, &[]).trace_id, meta_trace);

    // Neither: a new trace id per request.
    Req::rpc("tools/list", json!({})).send(&e.dp).await;
    let a = one(&mut rx, &[]).trace_id;
    Req::rpc("tools/list", json!({})).send(&e.dp).await;
    assert_ne!(a, one(&mut rx, &[]).trace_id);

    // The peer address the listener attaches.
    let peer: std::net::SocketAddr = "127.0.0.1:40123".parse().unwrap();
    let req = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {ALICE}"))
        .extension(ConnectInfo(peer))
        .body(Body::from(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#))
        .unwrap();
    let resp = crate::http::router(e.dp.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = one(&mut rx, &[ALICE]);
    assert_eq!(got.client_address, "127.0.0.1:40123");
    assert_eq!(got.request_id, r#""a""#);
}

#[tokio::test]
async fn payload_per_server_setting() {
    let (e, mut rx) = audited_with(HttpSettings::default(), AuditPayload::Hash, 1024).await;
    Req::rpc("tools/call", json!({"name":"gh__echo","arguments":{"q":1}}))
        .send(&e.dp)
        .await;
    let got = one(&mut rx, &[]);
    assert_eq!(got.payload, AuditPayload::Hash as i32);
    assert_eq!(
        got.arguments,
        blake3::hash(br#"{"q":1}"#).to_hex().to_string()
    );
    assert_eq!(
        got.result,
        blake3::hash(mock::ECHO_RESULT.as_bytes())
            .to_hex()
            .to_string()
    );
    // Another server (payload off) keeps nothing.
    Req::rpc("tools/call", json!({"name":"down__x","arguments":{"q":1}}))
        .send(&e.dp)
        .await;
    let got = one(&mut rx, &[]);
    assert!(got.arguments.is_empty() && got.result.is_empty());
    assert_eq!(got.payload, AuditPayload::Off as i32);

    let (e, mut rx) = audited_with(HttpSettings::default(), AuditPayload::Full, 20).await;
    Req::rpc("tools/call", json!({"name":"gh__echo","arguments":{"q":1}}))
        .send(&e.dp)
        .await;
    let got = one(&mut rx, &[]);
    assert_eq!(got.payload, AuditPayload::Full as i32);
    assert_eq!(got.arguments, r#"{"q":1}"#);
    assert_eq!(got.result, format!("{}…[cut]", &mock::ECHO_RESULT[..20]));
    // Out of scope: nothing of the arguments is kept.
    Req::rpc(
        "tools/call",
        json!({"name":"gh__progress","arguments":{"q":1}}),
    )
    .token(BOB)
    .send(&e.dp)
    .await;
    assert!(one(&mut rx, &[BOB]).arguments.is_empty());
}

/// The `hash` setting hashes the bytes as sent, not a canonical form (docs/audit.md): an
/// auditor reproduces it from the client's request text, whitespace and key order included.
#[tokio::test]
async fn payload_hash_is_over_the_arguments_as_sent() {
    let (e, mut rx) = audited_with(HttpSettings::default(), AuditPayload::Hash, 1024).await;
    let args = r#"{ "b" : [1, 2.50],"a":"\u00e9" }"#;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"gh__echo","arguments":{args}}}}}"#
    );
    let r = Req::post(body).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = one(&mut rx, &[]);
    assert_eq!(
        got.arguments,
        blake3::hash(args.as_bytes()).to_hex().as_str()
    );
    // The same value re-encoded (sorted keys, no whitespace) hashes differently.
    let canonical = serde_json::from_str::<Value>(args).unwrap().to_string();
    assert_ne!(canonical, args);
    assert_ne!(
        got.arguments,
        blake3::hash(canonical.as_bytes()).to_hex().as_str()
    );
    // The upstream received the same arguments.
    let seen = e.mock.seen.calls.lock().unwrap();
    let sent = &seen.last().unwrap().2["arguments"];
    assert_eq!(sent, &serde_json::from_str::<Value>(args).unwrap());
}

#[tokio::test]
async fn a_relayed_stream_is_recorded_when_it_ends() {
    let (e, mut rx) = audited().await;
    let params =
        json!({"name":"gh__progress","arguments":{"steps":3},"_meta":{"progressToken":"t"}});
    let r = Req::rpc("tools/call", params).send(&e.dp).await;
    assert_eq!(r.headers.get("content-type").unwrap(), "text/event-stream");
    let got = one(&mut rx, &[ALICE, UPSTREAM_SECRET]);
    assert_eq!(got.http_status, 200);
    assert_eq!(got.outcome, AuditOutcome::Ok as i32);
    assert_eq!(got.tool, "gh__progress");
    assert_eq!(got.bytes_out, r.text.len() as u64);
}

#[tokio::test]
async fn a_signed_in_caller_is_named_by_provider_and_subject() {
    use crate::identity::tests::{
        claims, group_rule, jwks, keys, provider_def, sign, ISSUER, ORIGIN,
    };
    use crate::identity::{Resource, Sources};
    let settings = HttpSettings {
        resource: Resource::new(ORIGIN).unwrap(),
        ..Default::default()
    };
    let (e, mut rx) = audited_with(settings, AuditPayload::Off, 1024).await;
    let k = keys();
    e.dp.state.identities.replace_all(Sources {
        providers: vec![provider_def("corp", ISSUER, jwks(&[&k[0], &k[1], &k[2]]))],
        rules: vec![group_rule("eng", "eng", &["gh__echo"])],
        revoked: vec![],
    });
    let jwt = sign(&k[0], &claims("alice"));
    for _ in 0..2 {
        // Verified, then from the verified-token cache: the same principal.
        let r = Req::rpc("tools/list", json!({}))
            .token(&jwt)
            .send(&e.dp)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let got = one(&mut rx, &[&jwt, ALICE]);
        let Some(pb::audit_principal::Kind::Sso(sso)) = got.principal.and_then(|p| p.kind) else {
            panic!("not an SSO principal");
        };
        assert_eq!(sso.idp, "corp");
        assert_eq!(sso.subject, "alice");
    }
}

#[tokio::test]
async fn client_chosen_text_is_bounded_in_the_event() {
    let (e, mut rx) = audited().await;
    let long = "é".repeat(100_000);
    let r = Req::rpc(&long, json!({})).send(&e.dp).await;
    assert_eq!(r.error_code(), -32601);
    let got = one(&mut rx, &[ALICE]);
    assert!(got.method.len() <= 512 + 3, "{}", got.method.len());
    assert!(got.method.ends_with('…') && got.method.starts_with("éé"));
    let r = Req::rpc("tools/call", json!({"name": long}))
        .send(&e.dp)
        .await;
    assert_eq!(r.error_code(), -32602);
    assert!(one(&mut rx, &[ALICE]).tool.len() <= 515);
}

#[tokio::test]
async fn no_audit_no_events_and_same_answers() {
    let e = env().await;
    assert!(e.dp.audit.is_none());
    let r = Req::rpc("tools/call", json!({"name":"gh__echo"}))
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}
