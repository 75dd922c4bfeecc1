//! Fault tests (issue 4): helpers shared by the `faults_*` modules — MCP calls through a data
//! plane, its metrics, fixture upstreams on a fixed port, signals to our own children.
//!
//! Every wait is a bounded poll that fails the test at its deadline; nothing asserts on timing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canopy_e2e::{bin_path, wait_for_port, ChildProcess, DataPlane, START_DEADLINE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Failure deadline for "the fleet converges" polls (reconnect backoff is at most 10 s).
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Polls `f` every 100 ms until it returns `Some`, panicking with `what` (and `context()`) at
/// the deadline.
pub fn poll<T>(
    deadline: Duration,
    what: &str,
    mut context: impl FnMut() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("{what}: not reached within {deadline:?}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        // A failure deadline: upstream deadlines in these tests are far shorter.
        .timeout(Duration::from_secs(90))
        .build()
        .expect("reqwest client")
}

/// POST one JSON-RPC request to `url` (a data plane's `/mcp`); `(status, body as JSON or
/// Null)`. `None` when the connection itself failed.
pub fn rpc(url: &str, token: Option<&str>, method: &str, params: Value) -> Option<(u16, Value)> {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// `tools/call name args`.
pub fn call(dp: &DataPlane, token: Option<&str>, tool: &str, args: Value) -> (u16, Value) {
    rpc(
        &dp.mcp_url(),
        token,
        "tools/call",
        json!({"name": tool, "arguments": args}),
    )
    .unwrap_or_else(|| {
        panic!(
            "POST {} failed to connect; logs:\n{}",
            dp.mcp_url(),
            dp.logs()
        )
    })
}

/// True when an `echo` through `dp` with `token` succeeds (200, a result, not isError).
pub fn echo_ok(dp: &DataPlane, token: Option<&str>, tool: &str) -> bool {
    let (status, body) = call(dp, token, tool, json!({"message": "ping"}));
    status == 200 && body.get("result").is_some() && body["result"]["isError"] != true
}

/// `tools/list` through `dp`: `(status, tool names)`.
pub fn tool_names(dp: &DataPlane, token: Option<&str>) -> (u16, Vec<String>) {
    let (status, body) = rpc(&dp.mcp_url(), token, "tools/list", json!({}))
        .unwrap_or_else(|| panic!("POST {} failed; logs:\n{}", dp.mcp_url(), dp.logs()));
    let names = body["result"]["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, names)
}

/// The HTTP status of `tools/list` with `token` (401 for a rejected token).
pub fn auth_status(dp: &DataPlane, token: &str) -> u16 {
    tool_names(dp, Some(token)).0
}

/// One sample (no labels) from `dp`'s `/metrics`.
pub fn metric(dp: &DataPlane, name: &str) -> f64 {
    let (status, text) = dp
        .get("/metrics")
        .unwrap_or_else(|| panic!("GET /metrics failed; logs:\n{}", dp.logs()));
    assert_eq!(status, 200, "/metrics: {text}");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing from /metrics:\n{text}"))
}

/// `/readyz`: status and JSON body.
pub fn readyz(dp: &DataPlane) -> (u16, Value) {
    let (status, body) = dp
        .get("/readyz")
        .unwrap_or_else(|| panic!("GET /readyz failed; logs:\n{}", dp.logs()));
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("/readyz body is not JSON: {body}")),
    )
}

/// The pid of the `canopy-data-plane` we started listening on `addr` (found in /proc: the
/// testkit does not expose data-plane pids). Only ever one of our own children.
pub fn data_plane_pid(dp: &DataPlane) -> Pid {
    let listen = dp.addr().to_string();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let is_dp = args
            .first()
            .is_some_and(|a| a.ends_with(b"canopy-data-plane"));
        let on_addr = args
            .windows(2)
            .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes());
        if is_dp && on_addr {
            return Pid::from_raw(pid);
        }
    }
    panic!("no canopy-data-plane process listening on {listen}");
}

pub fn signal(pid: Pid, sig: Signal) {
    kill(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// A `canopy-fixture-server --transport http` on a fixed port (so it can be restarted "in
/// place"), optionally with `tool_0..tool_{extra_tools-1}`.
pub struct PortFixture {
    process: ChildProcess,
    pub addr: SocketAddr,
    _logs: tempfile::TempDir,
}

impl PortFixture {
    pub fn start(port: u16, extra_tools: usize) -> Self {
        let logs = tempfile::tempdir().expect("temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(bin_path("canopy-fixture-server"));
        cmd.args(["--transport", "http", "--listen", &addr.to_string()]);
        if extra_tools > 0 {
            cmd.args(["--extra-tools", &extra_tools.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(file(&logs.path().join("stdout.log")))
            .stderr(file(&logs.path().join("stderr.log")));
        let mut process = ChildProcess::spawn("canopy-fixture-server", cmd);
        assert!(
            wait_for_port(addr, START_DEADLINE, || process.is_running()),
            "fixture did not listen on {addr}"
        );
        Self {
            process,
            addr,
            _logs: logs,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }
}

/// A plain HTTP server on `port` that answers every request with 200 and a body that is not
/// JSON (a broken upstream).
pub struct GarbageServer {
    _process: ChildProcess,
}

impl GarbageServer {
    pub fn start(port: u16) -> Self {
        let script = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def _garbage(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        body = b"<html>definitely not JSON {{{"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = _garbage
    do_GET = _garbage
    do_DELETE = _garbage
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut process = ChildProcess::spawn("garbage-server", cmd);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            wait_for_port(addr, START_DEADLINE, || process.is_running()),
            "garbage server did not listen on {addr}"
        );
        Self { _process: process }
    }
}

fn file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).expect("log file")
}

/// The JSON-RPC error message of a response body (panics when it is not an error).
pub fn rpc_error(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a JSON-RPC error, got {body}"))
        .to_owned()
}
