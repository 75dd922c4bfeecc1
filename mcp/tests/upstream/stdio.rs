//! stdio upstream: a python3 MCP server written to a temp file.

use canopy_mcp::upstream::{Upstream, UpstreamConfig, UpstreamError};
use std::time::Duration;

use crate::support::{names, raw, result_json};

const SERVER: &str = r#"
import json, os, sys

def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()

sys.stderr.write("fixture starting\n")
sys.stderr.flush()
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    mid = msg.get("id")
    method = msg.get("method")
    params = msg.get("params") or {}
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "py", "version": "1"}}})
    elif method is None or mid is None:
        continue
    elif method == "tools/list":
        sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"},"x-keep":[1.50]}]}}\n' % json.dumps(mid))
        sys.stdout.flush()
    elif method == "tools/call":
        name = params.get("name")
        if name == "echo":
            token = (params.get("_meta") or {}).get("progressToken")
            if token is not None:
                send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}})
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": params["arguments"]["text"]}]}})
        elif name == "env":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": os.environ.get("FIXTURE_GREETING", "")}]}})
        elif name == "pid":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": str(os.getpid())}]}})
        elif name == "ask":
            send({"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"})
            answer = json.loads(sys.stdin.readline())
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "refused %s" % answer["error"]["code"]}]}})
        elif name == "crash":
            sys.exit(3)
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no " + method}})
"#;

fn upstream(dir: &tempfile::TempDir) -> Upstream {
    let path = dir.path().join("server.py");
    std::fs::write(&path, SERVER).unwrap();
    let mut cfg = UpstreamConfig::stdio(
        "pyserver",
        "python3",
        vec!["-u".into(), path.display().to_string()],
    );
    cfg.env
        .insert("FIXTURE_GREETING".into(), "hello-env".into());
    cfg.timeout = Duration::from_secs(20);
    Upstream::new(cfg)
}

fn text(r: &canopy_mcp::upstream::UpstreamResponse) -> String {
    result_json(r)["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn discover_call_progress_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(&dir);
    let d = up.discover().await.unwrap();
    assert_eq!(d.protocol_version, "2025-06-18");
    assert_eq!(names(&d.tools), vec!["echo"]);
    assert!(
        d.tools[0].get().contains(r#""x-keep":[1.50]"#),
        "{}",
        d.tools[0].get()
    );
    assert!(d.prompts.is_empty());

    // Pretty-printed params must not break newline framing.
    let p = raw("{\n  \"name\": \"echo\",\n  \"arguments\": {\"text\": \"a b\"},\n  \"_meta\": {\"progressToken\": 7}\n}");
    let r = up.request("tools/call", Some(&p), None).await.unwrap();
    assert_eq!(text(&r), "a b");
    assert_eq!(r.notifications.len(), 1);

    let r = up
        .request("tools/call", Some(&raw(r#"{"name":"env"}"#)), None)
        .await
        .unwrap();
    assert_eq!(text(&r), "hello-env");

    let calls = (0..10).map(|i| {
        let up = up.clone();
        async move {
            let p = raw(&format!(
                r#"{{"name":"echo","arguments":{{"text":"c{i}"}}}}"#
            ));
            assert_eq!(
                text(&up.request("tools/call", Some(&p), None).await.unwrap()),
                format!("c{i}")
            );
        }
    });
    futures::future::join_all(calls).await;

    let r = up.request("resources/list", None, None).await.unwrap();
    assert_eq!(r.outcome.unwrap_err().code, -32601);
    up.shutdown().await;
}

#[tokio::test]
async fn server_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(&dir);
    let r = up
        .request("tools/call", Some(&raw(r#"{"name":"ask"}"#)), None)
        .await
        .unwrap();
    assert_eq!(text(&r), "refused -32601");
    up.shutdown().await;
}

#[tokio::test]
async fn crash_fails_pending_call_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(&dir);
    let first_pid = text(
        &up.request("tools/call", Some(&raw(r#"{"name":"pid"}"#)), None)
            .await
            .unwrap(),
    );
    let err = up
        .request("tools/call", Some(&raw(r#"{"name":"crash"}"#)), None)
        .await
        .unwrap_err();
    match &err {
        UpstreamError::Unreachable { server, reason } => {
            assert_eq!(server, "pyserver");
            assert!(reason.contains("exited"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.to_string().contains("hello-env"));
    let second_pid = text(
        &up.request("tools/call", Some(&raw(r#"{"name":"pid"}"#)), None)
            .await
            .unwrap(),
    );
    assert_ne!(
        first_pid, second_pid,
        "a new process serves after the crash"
    );
    up.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(&dir);
    let pid = text(
        &up.request("tools/call", Some(&raw(r#"{"name":"pid"}"#)), None)
            .await
            .unwrap(),
    );
    let proc_path = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_path).exists());
    up.shutdown().await;
    // Reaped by the supervisor before shutdown returns, so the pid is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&proc_path).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "child {pid} still alive after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn missing_command_is_a_spawn_error() {
    let up = Upstream::new(UpstreamConfig::stdio(
        "nocmd",
        "/nonexistent/canopy-test-cmd",
        vec![],
    ));
    let err = up.discover().await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::Spawn { ref server, .. } if server == "nocmd"),
        "{err:?}"
    );
}
