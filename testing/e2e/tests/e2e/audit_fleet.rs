//! The audit trail end to end with real data planes (issue 12, item 7): calls through two data
//! planes in both protocol eras — results, a call outside the caller's scope, a bad token, an
//! SSO principal — read back with `canopy audit list` (and its filters), `export` and `tail`
//! with every field and no token; a `kill -9` of the control plane under load, after which
//! every answered request is in the trail exactly once; and a default (not `--audit-required`)
//! data plane whose spool is full, which keeps serving, counts the drops and reports a gap.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use canopy_e2e::{ChildProcess, Cli, DataPlane, FixtureServer, IdentityProvider};
use serde_json::{json, Value};

use crate::common::{access_token, enterprise};
use crate::dataplane_support::{
    eventually, modern_meta, post, wait_for_tool, Reply, MODERN, SYNC_DEADLINE,
};
use crate::faults::{metric, poll, CONVERGE};

const HANDSHAKE: &str = "2025-11-25";
/// A caller's W3C trace context: the event must carry its trace id.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The trace ids the bad-token calls carry: a 401 is refused before the body (and its
/// request id) is read, so the test finds those events by their trace id.
const TRACE_401: [(&str, &str); 2] = [
    ("dp-a", "0af7651916cd43dd8448eb211c80319c"),
    ("dp-b", "0bf7651916cd43dd8448eb211c80319c"),
];
const BAD_TOKEN: &str = "not-a-canopy-token-AUDIT-FLEET-SECRET";

/// A handshake-era request with a string id (after `initialize`: the version header is sent).
fn handshake(url: &str, token: Option<&str>, id: &str, method: &str, params: Value) -> Reply {
    handshake_with(url, token, id, method, params, &[])
}

fn handshake_with(
    url: &str,
    token: Option<&str>,
    id: &str,
    method: &str,
    params: Value,
    extra: &[(&str, &str)],
) -> Reply {
    let mut headers = vec![("MCP-Protocol-Version", HANDSHAKE)];
    headers.extend_from_slice(extra);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    post(url, token, &headers, &body)
}

/// A 2026-07-28 request with a string id: `_meta` in params, the headers derived from them.
fn modern(url: &str, token: Option<&str>, id: &str, method: &str, mut params: Value) -> Reply {
    let name = params["name"].as_str().map(str::to_owned);
    params["_meta"] = modern_meta();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut headers = vec![("MCP-Protocol-Version", MODERN), ("Mcp-Method", method)];
    if let Some(n) = &name {
        headers.push(("Mcp-Name", n));
    }
    post(url, token, &headers, &body)
}

/// The body `handshake`/`modern` send, for the recorded request size.
fn sent_size(id: &str, method: &str, params: Value) -> u64 {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .len() as u64
}

/// `canopy -o json audit list --kind request --limit 10000 <args>`.
fn requests(admin: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--kind", "request", "--limit", "10000"];
    all.extend_from_slice(args);
    admin.json(&all).as_array().cloned().unwrap_or_default()
}

/// The event whose `jsonrpc.request.id` is the JSON string `id`.
fn by_id<'a>(events: &'a [Value], id: &str) -> &'a Value {
    let want = format!("\"{id}\"");
    events
        .iter()
        .find(|e| e["jsonrpc.request.id"] == want.as_str())
        .unwrap_or_else(|| panic!("no event for request {id} in {events:#?}"))
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .filter_map(|e| e["jsonrpc.request.id"].as_str())
        .map(|id| id.trim_matches('"').to_owned())
        .collect()
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
    })
}

/// `audit export` as parsed JSON lines (and the raw text, to look for secrets).
fn export(admin: &Cli, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["-o", "json", "audit", "export", "--since", "1h"];
    all.extend_from_slice(args);
    let out = admin.ok(&all);
    let lines = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, out.stdout)
}

#[test]
fn calls_through_two_data_planes_are_in_the_trail_with_every_field() {
    let (cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let token =
        access_token(&admin.json(&["create", "mcp-client", "agent", "--allow", "rmcp__echo"]));
    let idp = IdentityProvider::start();
    admin.ok(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.issuer(),
    ]);
    admin.ok(&[
        "create",
        "access-rule",
        "alice",
        "--idp",
        "corp",
        "--subject",
        "alice",
        "--allow",
        "rmcp",
    ]);
    let a = DataPlane::start_with(&cp, &["--node-id", "dp-a"]);
    let b = DataPlane::start_with(&cp, &["--node-id", "dp-b"]);
    for dp in [&a, &b] {
        assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
        wait_for_tool(&dp.mcp_url(), Some(&token), "rmcp__echo");
    }
    eventually("the identity provider on dp-a", SYNC_DEADLINE, || {
        let (status, body) = a.get("/.well-known/oauth-protected-resource/mcp")?;
        (status == 200 && body.contains(&idp.issuer())).then_some(())
    });
    let (a_url, b_url) = (a.mcp_url(), b.mcp_url());
    let t = Some(token.as_str());
    let echo = json!({"name": "rmcp__echo", "arguments": {"message": "hello"}});
    let add = json!({"name": "rmcp__add", "arguments": {"a": 1, "b": 2}});

    // dp-a, handshake era: initialize (no version header yet), list, a call with the caller's
    // trace context, a tool outside the client's allow list, a bad token.
    let init_params = json!({
        "protocolVersion": HANDSHAKE,
        "capabilities": {},
        "clientInfo": {"name": "audit-e2e", "version": "0"},
    });
    let init = post(
        &a_url,
        t,
        &[],
        &json!({"jsonrpc": "2.0", "id": "a-init", "method": "initialize", "params": init_params}),
    );
    assert_eq!(init.status, 200, "{init}");
    let r = handshake(&a_url, t, "a-list", "tools/list", json!({}));
    assert_eq!(r.status, 200, "{r}");
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let a_call = handshake_with(
        &a_url,
        t,
        "a-call",
        "tools/call",
        echo.clone(),
        &[("traceparent", &traceparent)],
    );
    assert_eq!(a_call.status, 200, "{a_call}");
    assert!(a_call.json()["result"]["content"].is_array(), "{a_call}");
    let a_denied = handshake(&a_url, t, "a-denied", "tools/call", add.clone());
    let (a_denied_code, _) = a_denied.error();
    let r = handshake_with(
        &a_url,
        Some(BAD_TOKEN),
        "a-401",
        "tools/call",
        echo.clone(),
        &[(
            "traceparent",
            &format!("00-{}-00f067aa0ba902b7-01", TRACE_401[0].1),
        )],
    );
    assert_eq!(r.status, 401, "{r}");

    // dp-b, 2026-07-28 era: the same, and one more bad token.
    let r = modern(&b_url, t, "b-list", "tools/list", json!({}));
    assert_eq!(r.status, 200, "{r}");
    let b_call = modern(&b_url, t, "b-call", "tools/call", echo.clone());
    assert_eq!(b_call.status, 200, "{b_call}");
    assert!(b_call.json()["result"]["content"].is_array(), "{b_call}");
    let b_denied = modern(&b_url, t, "b-denied", "tools/call", add.clone());
    let (b_denied_code, _) = b_denied.error();
    let r = post(
        &b_url,
        Some(BAD_TOKEN),
        &[
            ("MCP-Protocol-Version", MODERN),
            (
                "traceparent",
                &format!("00-{}-00f067aa0ba902b7-01", TRACE_401[1].1),
            ),
        ],
        &json!({"jsonrpc": "2.0", "id": "b-401", "method": "tools/list", "params": {"_meta": modern_meta()}}),
    );
    assert_eq!(r.status, 401, "{r}");

    // A person signed in with SSO, on dp-a.
    let jwt = idp.mint(&json!({"sub": "alice", "aud": a_url}));
    let r = handshake(&a_url, Some(&jwt), "a-sso", "tools/call", echo.clone());
    assert_eq!(r.status, 200, "{r}");

    // Everything arrives (the shipper sends every 200 ms; the store answers after its write).
    let want = [
        "a-init", "a-list", "a-call", "a-denied", "b-list", "b-call", "b-denied", "a-sso",
    ];
    let events = poll(
        CONVERGE,
        "the requests in `audit list`",
        || format!("dp-a:\n{}\ndp-b:\n{}", a.logs(), b.logs()),
        || {
            let events = requests(&admin, &[]);
            let seen = ids(&events);
            let unauthorized = TRACE_401
                .iter()
                .all(|(_, trace)| events.iter().any(|e| e["trace_id"] == *trace));
            (want.iter().all(|w| seen.contains(*w)) && unauthorized).then_some(events)
        },
    );
    let listed = serde_json::to_string(&events).unwrap_or_default();

    // A call through dp-a: every field.
    let e = by_id(&events, "a-call");
    assert_eq!(e["canopy.kind"], "request", "{e:#}");
    assert_eq!(e["canopy.data_plane"], "dp-a", "{e:#}");
    assert_eq!(e["canopy.principal.kind"], "mcp_client", "{e:#}");
    assert_eq!(e["canopy.principal.name"], "agent", "{e:#}");
    assert_eq!(e["client.address"], "127.0.0.1", "{e:#}");
    assert!(e["client.port"].as_u64().unwrap_or(0) > 0, "{e:#}");
    assert_eq!(e["url.path"], "/mcp", "{e:#}");
    assert_eq!(e["mcp.protocol.version"], HANDSHAKE, "{e:#}");
    assert_eq!(e["mcp.method.name"], "tools/call", "{e:#}");
    assert_eq!(e["gen_ai.tool.name"], "rmcp__echo", "{e:#}");
    assert_eq!(e["canopy.server.name"], "rmcp", "{e:#}");
    assert_eq!(e["canopy.outcome"], "ok", "{e:#}");
    assert_eq!(e["http.response.status_code"], 200, "{e:#}");
    assert!(
        e["canopy.duration_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{e:#}"
    );
    assert_eq!(
        e["http.request.body.size"],
        sent_size("a-call", "tools/call", echo.clone()),
        "{e:#}"
    );
    assert_eq!(
        e["http.response.body.size"],
        a_call.text.len() as u64,
        "{e:#}"
    );
    assert_eq!(e["trace_id"], TRACE_ID, "{e:#}");
    assert!(is_hex(&e["span_id"], 16), "{e:#}");
    assert!(is_hex(&e["event.id"], 32), "{e:#}");
    assert!(e.get("gen_ai.tool.call.arguments").is_none(), "{e:#}");

    // The same call through dp-b in the 2026-07-28 era.
    let e = by_id(&events, "b-call");
    assert_eq!(e["canopy.data_plane"], "dp-b", "{e:#}");
    assert_eq!(e["canopy.principal.name"], "agent", "{e:#}");
    assert_eq!(e["client.address"], "127.0.0.1", "{e:#}");
    assert_eq!(e["mcp.protocol.version"], MODERN, "{e:#}");
    assert_eq!(e["mcp.method.name"], "tools/call", "{e:#}");
    assert_eq!(e["gen_ai.tool.name"], "rmcp__echo", "{e:#}");
    assert_eq!(e["canopy.server.name"], "rmcp", "{e:#}");
    assert_eq!(e["canopy.outcome"], "ok", "{e:#}");
    assert!(
        e["canopy.duration_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{e:#}"
    );
    assert!(
        e["http.request.body.size"].as_u64().unwrap_or(0) > 0,
        "{e:#}"
    );
    assert_eq!(
        e["http.response.body.size"],
        b_call.text.len() as u64,
        "{e:#}"
    );
    // No caller context: a trace of its own.
    assert!(is_hex(&e["trace_id"], 32), "{e:#}");
    assert_ne!(e["trace_id"], TRACE_ID, "{e:#}");

    // Lists and initialize.
    for (id, dp, version) in [("a-list", "dp-a", HANDSHAKE), ("b-list", "dp-b", MODERN)] {
        let e = by_id(&events, id);
        assert_eq!(e["canopy.data_plane"], dp, "{e:#}");
        assert_eq!(e["mcp.method.name"], "tools/list", "{e:#}");
        assert_eq!(e["mcp.protocol.version"], version, "{e:#}");
        assert_eq!(e["canopy.outcome"], "ok", "{e:#}");
        assert!(
            e["http.response.body.size"].as_u64().unwrap_or(0) > 0,
            "{e:#}"
        );
    }
    let e = by_id(&events, "a-init");
    assert_eq!(e["mcp.method.name"], "initialize", "{e:#}");
    assert_eq!(e["mcp.protocol.version"], HANDSHAKE, "{e:#}");

    // A tool outside the allow list: the client is told it is unknown, the trail says denied.
    for (id, dp, code) in [
        ("a-denied", "dp-a", a_denied_code),
        ("b-denied", "dp-b", b_denied_code),
    ] {
        let e = by_id(&events, id);
        assert_eq!(e["canopy.data_plane"], dp, "{e:#}");
        assert_eq!(e["canopy.principal.name"], "agent", "{e:#}");
        assert_eq!(e["canopy.outcome"], "denied", "{e:#}");
        assert_eq!(e["gen_ai.tool.name"], "rmcp__add", "{e:#}");
        assert_eq!(e["canopy.server.name"], "rmcp", "{e:#}");
        assert_eq!(e["rpc.jsonrpc.error_code"], code, "{e:#}");
        assert_eq!(e["error.type"], "unknown_tool", "{e:#}");
    }

    // Bad tokens: one 401 per data plane, anonymous.
    for (dp, trace) in TRACE_401 {
        let e = events
            .iter()
            .find(|e| e["trace_id"] == trace)
            .unwrap_or_else(|| panic!("no 401 of {dp} in {events:#?}"));
        assert_eq!(e["canopy.data_plane"], dp, "{e:#}");
        assert_eq!(e["http.response.status_code"], 401, "{e:#}");
        assert_eq!(e["canopy.outcome"], "denied", "{e:#}");
        assert_eq!(e["canopy.principal.kind"], "anonymous", "{e:#}");
        assert_eq!(e["error.type"], "unauthorized", "{e:#}");
        assert_eq!(e["client.address"], "127.0.0.1", "{e:#}");
        assert!(e.get("canopy.principal.name").is_none(), "{e:#}");
    }

    // The SSO principal.
    let e = by_id(&events, "a-sso");
    assert_eq!(e["canopy.principal.kind"], "sso", "{e:#}");
    assert_eq!(e["canopy.principal.name"], "corp:alice", "{e:#}");
    assert_eq!(e["canopy.idp"], "corp", "{e:#}");
    assert_eq!(e["enduser.id"], "alice", "{e:#}");
    assert_eq!(e["canopy.outcome"], "ok", "{e:#}");

    // Filters.
    let agent = requests(&admin, &["--client", "agent"]);
    assert!(agent.iter().all(|e| e["canopy.principal.name"] == "agent"));
    let seen = ids(&agent);
    for id in ["a-call", "b-call", "a-denied", "b-denied"] {
        assert!(seen.contains(id), "{id} not in --client agent: {agent:#?}");
    }
    assert!(!seen.contains("a-sso"), "{agent:#?}");
    // `--tool` takes the tool's own name; calls on /mcp record `rmcp__echo`.
    for tool in [
        &["--server", "rmcp", "--tool", "echo"][..],
        &["--tool", "rmcp__echo"],
    ] {
        let calls = requests(&admin, tool);
        assert!(
            calls.iter().all(|e| e["gen_ai.tool.name"] == "rmcp__echo"),
            "{tool:?}: {calls:#?}"
        );
        let seen = ids(&calls);
        for id in ["a-call", "b-call", "a-sso"] {
            assert!(seen.contains(id), "{id} not in {tool:?}: {calls:#?}");
        }
        assert!(!seen.contains("a-denied"), "{tool:?}: {calls:#?}");
    }
    let denied = requests(&admin, &["--outcome", "denied"]);
    assert!(denied.iter().all(|e| e["canopy.outcome"] == "denied"));
    let seen = ids(&denied);
    assert!(
        seen.contains("a-denied") && seen.contains("b-denied"),
        "{denied:#?}"
    );
    for (_, trace) in TRACE_401 {
        assert!(denied.iter().any(|e| e["trace_id"] == trace), "{denied:#?}");
    }
    let on_b = requests(&admin, &["--data-plane", "dp-b"]);
    assert!(on_b.iter().all(|e| e["canopy.data_plane"] == "dp-b"));
    assert!(ids(&on_b).contains("b-call") && !ids(&on_b).contains("a-call"));
    let alice = requests(&admin, &["--idp", "corp", "--subject", "alice"]);
    assert_eq!(
        ids(&alice),
        HashSet::from(["a-sso".to_owned()]),
        "{alice:#?}"
    );
    let table = admin.ok(&["audit", "list", "--kind", "request", "--client", "agent"]);
    assert!(table.stdout.contains("rmcp/rmcp__echo"), "{}", table.stdout);

    // Export: the same events as JSON lines.
    let (exported, export_text) = export(&admin, &["--kind", "request"]);
    let listed_now = requests(&admin, &[]);
    let event_ids = |v: &[Value]| -> HashSet<String> {
        v.iter()
            .filter_map(|e| e["event.id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(exported.len(), listed_now.len());
    assert_eq!(event_ids(&exported), event_ids(&listed_now));
    assert_eq!(by_id(&exported, "a-call"), by_id(&events, "a-call"));

    // Tail: a live event shows up while it follows.
    let tailed = tail_until(&admin, || {
        let r = modern(&b_url, t, "b-tail", "tools/call", echo.clone());
        assert_eq!(r.status, 200, "{r}");
    });
    let tailed_event: Value =
        serde_json::from_str(&tailed).unwrap_or_else(|e| panic!("{e}: {tailed}"));
    assert_eq!(tailed_event["canopy.data_plane"], "dp-b", "{tailed}");
    assert_eq!(tailed_event["gen_ai.tool.name"], "rmcp__echo", "{tailed}");

    // No token anywhere in what the trail shows.
    let everything = format!("{listed}\n{export_text}\n{}\n{tailed}", table.stdout);
    for secret in [
        token.as_str(),
        BAD_TOKEN,
        jwt.as_str(),
        cp.data_plane_token(),
    ] {
        assert!(
            !everything.contains(secret),
            "a token is in the audit trail"
        );
    }
}

/// Runs `canopy -o json audit tail --kind request --backlog 0`, calls `act` once the tail is
/// following, and returns the first line naming request `b-tail`; the tail is killed after.
fn tail_until(admin: &Cli, act: impl Fn()) -> String {
    let mut cmd = admin.command();
    cmd.args([
        "-o",
        "json",
        "audit",
        "tail",
        "--kind",
        "request",
        "--backlog",
        "0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut tail = ChildProcess::spawn("canopy audit tail", cmd);
    let stdout = tail
        .child_mut()
        .stdout
        .take()
        .expect("the tail's stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The tail subscribes when its call reaches the control plane, which this cannot see:
    // call again until an event of a call shows up (each call is a new event).
    let start = Instant::now();
    let line = loop {
        act();
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            if line.contains("b-tail") {
                break line;
            }
        }
        if start.elapsed() > CONVERGE {
            panic!("`canopy audit tail` showed no event of b-tail within {CONVERGE:?}");
        }
    };
    tail.kill9();
    line
}

/// One request of the load: its number, the data plane it went to, the HTTP status.
type Answered = (u64, usize, u16);

/// Open-loop load: request `n` is due at `n / rate` s; `workers` threads take the next due
/// request each (a worker that falls behind sends at once, so a slow machine gets fewer
/// requests, never a burst). Even requests are `tools/call`, odd ones `tools/list`; they
/// alternate between the data planes in pairs. Returns every request answered with an HTTP
/// status, the ones that got no answer, and the wall time.
fn drive(
    urls: &[String; 2],
    token: &str,
    rate: u64,
    length: Duration,
) -> (Vec<Answered>, u64, Duration) {
    const WORKERS: usize = 48;
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(WORKERS)
        .build()
        .expect("HTTP client");
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let per = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(1000);
    let threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, next, failed) = (client.clone(), next.clone(), failed.clone());
            let urls = urls.clone();
            let auth = format!("Bearer {token}");
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let due = per * u32::try_from(n).unwrap_or(u32::MAX);
                    if due >= length || start.elapsed() >= length {
                        return answered;
                    }
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let dp = usize::from((n / 2) % 2 == 1);
                    let body = if n % 2 == 0 {
                        json!({"jsonrpc": "2.0", "id": format!("r-{n}"), "method": "tools/call",
                               "params": {"name": "rmcp__echo", "arguments": {"message": "load"}}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": format!("r-{n}"), "method": "tools/list",
                               "params": {}})
                    };
                    let sent = client
                        .post(&urls[dp])
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", HANDSHAKE)
                        .header("authorization", &auth)
                        .body(body.to_string())
                        .send()
                        .and_then(|r| {
                            let status = r.status().as_u16();
                            r.bytes().map(|_| status)
                        });
                    match sent {
                        Ok(status) => answered.push((n, dp, status)),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let mut answered = Vec::new();
    for t in threads {
        answered.extend(t.join().expect("a load worker panicked"));
    }
    (answered, failed.load(Ordering::Relaxed), start.elapsed())
}

#[test]
fn kill9_of_the_control_plane_under_load_keeps_every_answered_request_once() {
    const RATE: u64 = 1000;
    const LENGTH: Duration = Duration::from_secs(30);
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let token = access_token(&admin.json(&["create", "mcp-client", "loadgen", "--allow", "rmcp"]));
    let spools = tempfile::tempdir().expect("temp dir");
    let spool = |name: &str| spools.path().join(name).display().to_string();
    let (spool_a, spool_b) = (spool("a.spool"), spool("b.spool"));
    let nodes = ["load-a", "load-b"];
    let a = DataPlane::start_with(
        &cp,
        &["--node-id", nodes[0], "--audit-spool-file", &spool_a],
    );
    let b = DataPlane::start_with(
        &cp,
        &["--node-id", nodes[1], "--audit-spool-file", &spool_b],
    );
    for dp in [&a, &b] {
        assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
        wait_for_tool(&dp.mcp_url(), Some(&token), "rmcp__echo");
    }
    let urls = [a.mcp_url(), b.mcp_url()];

    // The load runs on its own threads; the control plane dies at ~10 s and is back at ~15 s
    // (sleeps place the crash inside the load; nothing is asserted on time).
    let load = {
        let (urls, token) = (urls.clone(), token.clone());
        std::thread::spawn(move || drive(&urls, &token, RATE, LENGTH))
    };
    std::thread::sleep(Duration::from_secs(10));
    cp.kill9();
    std::thread::sleep(Duration::from_secs(5));
    cp.restart();
    let (answered, failed, took) = load.join().expect("the load driver panicked");
    let achieved = answered.len() as f64 / took.as_secs_f64();
    let not_ok = answered.iter().filter(|(_, _, s)| *s != 200).count();
    let spooled = [&a, &b].map(|dp| metric(dp, "canopy_audit_events_spooled_total"));
    eprintln!(
        "audit kill -9 load: {} requests answered ({} not 200), {failed} unanswered, in {:.1} s: \
         {achieved:.0} req/s (target {RATE}); spooled {spooled:?}",
        answered.len(),
        not_ok,
        took.as_secs_f64(),
    );
    // The outage fell inside the load: events went to the spools meanwhile.
    assert!(spooled.iter().sum::<f64>() > 0.0, "nothing spooled");
    // A floor well below the target: a debug build on a shared machine may not reach it
    // (measured: ~900 req/s with the machine's load average at 10).
    assert!(
        answered.len() >= 10_000,
        "only {} requests answered ({achieved:.0} req/s)",
        answered.len()
    );
    // The data planes served on while the control plane was down.
    assert_eq!(not_ok, 0, "requests not answered 200 during the outage");

    // Every answered request is in the trail, each exactly once.
    let want: HashSet<(String, String)> = answered
        .iter()
        .map(|(n, dp, _)| (nodes[*dp].to_owned(), format!("\"r-{n}\"")))
        .collect();
    assert_eq!(want.len(), answered.len());
    let counts = poll(
        Duration::from_secs(90),
        "every answered request in `audit export`",
        || {
            format!(
                "dp a:\n{}\ndp b:\n{}\ncp:\n{}",
                a.logs(),
                b.logs(),
                cp.logs()
            )
        },
        || {
            let (events, _) = export(&admin, &["--kind", "request", "--client", "loadgen"]);
            let mut counts: HashMap<(String, String), u32> = HashMap::new();
            for e in &events {
                let key = (
                    e["canopy.data_plane"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    e["jsonrpc.request.id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                *counts.entry(key).or_default() += 1;
            }
            let missing = want.iter().filter(|k| !counts.contains_key(*k)).count();
            eprintln!("audit kill -9 load: {missing} answered requests not yet in the trail");
            (missing == 0).then_some(counts)
        },
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} requests stored more than once, e.g. {:?}",
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    let duplicates = metric(&a, "canopy_audit_events_duplicate_total")
        + metric(&b, "canopy_audit_events_duplicate_total");
    eprintln!("audit kill -9 load: {duplicates} re-sent events the control plane already had");
}

#[test]
fn a_full_spool_without_audit_required_keeps_serving_and_reports_a_gap() {
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let token = access_token(&admin.json(&["create", "mcp-client", "lossy", "--allow", "rmcp"]));
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("audit.spool").display().to_string();
    let dp = DataPlane::start_with(
        &cp,
        &[
            "--node-id",
            "lossy",
            "--audit-spool-file",
            &spool,
            "--audit-spool-max-bytes",
            "4096",
        ],
    );
    assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    let url = dp.mcp_url();
    wait_for_tool(&url, Some(&token), "rmcp__echo");
    let echo = json!({"name": "rmcp__echo", "arguments": {"message": "x"}});
    let r = handshake(&url, Some(&token), "before", "tools/call", echo.clone());
    assert_eq!(r.status, 200, "{r}");

    // The control plane is gone: the spool fills, then events are dropped — and every call is
    // still served.
    cp.kill9();
    let mut n = 0;
    poll(
        CONVERGE,
        "audit events dropped once the spool is full",
        || dp.logs(),
        || {
            for _ in 0..20 {
                n += 1;
                let r = handshake(
                    &url,
                    Some(&token),
                    &format!("o-{n}"),
                    "tools/call",
                    echo.clone(),
                );
                assert_eq!(r.status, 200, "served while events are dropped: {r}");
            }
            (metric(&dp, "canopy_audit_events_dropped_total") > 0.0).then_some(())
        },
    );
    for i in 0..5 {
        let r = handshake(
            &url,
            Some(&token),
            &format!("more-{i}"),
            "tools/call",
            echo.clone(),
        );
        assert_eq!(r.status, 200, "{r}");
    }
    assert_eq!(metric(&dp, "canopy_audit_refusing"), 0.0);
    assert!(
        metric(&dp, "canopy_audit_events_spooled_total") > 0.0,
        "{}",
        dp.logs()
    );

    // Back: the spool is shipped and a gap event accounts for every dropped event.
    cp.restart();
    let gaps = poll(
        CONVERGE,
        "gap events for every dropped event",
        || dp.logs(),
        || {
            let gaps = admin.json(&["audit", "list", "--kind", "gap", "--data-plane", "lossy"]);
            let gaps = gaps.as_array().cloned().unwrap_or_default();
            let total: f64 = gaps
                .iter()
                .filter_map(|g| g["canopy.dropped"].as_f64())
                .sum();
            // Read again: events still queued when the control plane came back may have
            // been dropped after the last call.
            let dropped = metric(&dp, "canopy_audit_events_dropped_total");
            (total == dropped).then_some((gaps, dropped))
        },
    );
    let (gaps, dropped) = gaps;
    for g in &gaps {
        assert_eq!(g["canopy.kind"], "gap", "{g:#}");
        assert_eq!(g["canopy.data_plane"], "lossy", "{g:#}");
        assert!(
            g["canopy.from"].is_string() && g["canopy.to"].is_string(),
            "{g:#}"
        );
        assert!(g["canopy.reason"].is_string(), "{g:#}");
    }
    let table = admin.ok(&["audit", "list", "--kind", "gap"]);
    assert!(table.stdout.contains("events lost"), "{}", table.stdout);
    // What was kept arrived: stored + dropped covers every call made while the control plane
    // was away, and the call before the crash is there.
    let kept = poll(
        CONVERGE,
        "the spooled events in the trail",
        || dp.logs(),
        || {
            let events = requests(&admin, &["--data-plane", "lossy"]);
            let seen = ids(&events);
            let offline = seen
                .iter()
                .filter(|id| id.starts_with("o-") || id.starts_with("more-"))
                .count();
            (seen.contains("before") && offline as f64 + dropped == (n + 5) as f64).then_some(seen)
        },
    );
    assert!(kept.contains("o-1"), "the first spooled call is missing");
}
