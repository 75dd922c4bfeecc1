//! Helpers for the data-plane end-to-end modules (`dataplane_*.rs`, `quick_start.rs`): raw HTTP
//! with reqwest, 2026-07-28 request building, the hand-written `raw_server.py` upstream, and
//! bounded waits for state to reach a data plane.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canopy_e2e::{venv_python, workspace_root, ChildProcess, START_DEADLINE};
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// Failure deadline for state (a new client, a new server) to reach a data plane.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(30);

pub const MODERN: &str = "2026-07-28";

/// One HTTP answer: status, headers and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status, self.text
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `result` of a JSON-RPC response (panics on an error response).
    pub fn result(&self) -> Value {
        let v = self.json();
        assert!(
            v.get("error").is_none() && v.get("result").is_some(),
            "expected a JSON-RPC result, got HTTP {}: {v}",
            self.status
        );
        v["result"].clone()
    }

    /// `(code, message)` of a JSON-RPC error response (panics on a result).
    pub fn error(&self) -> (i64, String) {
        let v = self.json();
        let code = v["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("expected a JSON-RPC error, got HTTP {}: {v}", self.status));
        let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
        (code, message)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, self.text)
    }
}

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("cannot build the HTTP client")
}

/// A request with exactly these headers (no defaults added).
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid HTTP method");
    let mut req = client().request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .unwrap_or_else(|e| panic!("HTTP request to {url} failed: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    Reply {
        status,
        headers,
        text,
    }
}

/// `POST url` with JSON content type, the Accept a Streamable HTTP client sends, an optional
/// bearer token and `extra` headers.
pub fn post(url: &str, token: Option<&str>, extra: &[(&str, &str)], body: &Value) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    headers.extend_from_slice(extra);
    send("POST", url, &headers, body.to_string().into_bytes())
}

/// A handshake-era request (no `MCP-Protocol-Version` header unless given in `extra`).
pub fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The `_meta` a 2026-07-28 request must carry.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "canopy-e2e-raw", "version": "0"},
    })
}

/// A 2026-07-28 request body: `params` with `_meta` added.
pub fn modern_rpc(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = modern_meta();
    rpc(id, method, params)
}

/// POST a well-formed 2026-07-28 request: headers derived from the body.
pub fn post_modern(url: &str, token: Option<&str>, id: u64, method: &str, params: Value) -> Reply {
    let name = params["name"].as_str().map(str::to_owned);
    let body = modern_rpc(id, method, params);
    let mut extra = vec![("MCP-Protocol-Version", MODERN), ("Mcp-Method", method)];
    if let Some(n) = &name {
        extra.push(("Mcp-Name", n));
    }
    post(url, token, &extra, &body)
}

/// POST a handshake-era request, with the version header a client sends after `initialize`.
pub fn post_legacy(url: &str, token: Option<&str>, id: u64, method: &str, params: Value) -> Reply {
    post(
        url,
        token,
        &[("MCP-Protocol-Version", "2025-11-25")],
        &rpc(id, method, params),
    )
}

/// Poll `probe` until it returns `Some` or `deadline` passes (then panic with `what`).
/// A failure deadline, not a timing assertion.
pub fn eventually<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("gave up after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until `token` may call `tools/list` on `mcp_url` and the list contains `tool`.
pub fn wait_for_tool(mcp_url: &str, token: Option<&str>, tool: &str) {
    eventually(
        &format!("{tool} visible at {mcp_url}"),
        SYNC_DEADLINE,
        || {
            let r = post_legacy(mcp_url, token, 1, "tools/list", json!({}));
            (r.status == 200 && tool_names(&r.json()["result"]).iter().any(|n| n == tool))
                .then_some(())
        },
    );
}

/// The `name`s of a `tools/list` (or `prompts/list`) result's items.
pub fn tool_names(result: &Value) -> Vec<String> {
    let items = result
        .get("tools")
        .or_else(|| result.get("prompts"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("not a list result: {result}"));
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// A running `testing/python/raw_server.py`: emits unknown fields in tool definitions and
/// call results; `modern` speaks 2026-07-28 and checks the headers/`_meta` it receives.
#[derive(Debug)]
pub struct RawUpstream {
    _process: ChildProcess,
    addr: SocketAddr,
}

impl RawUpstream {
    pub fn start(modern: bool) -> Self {
        let script = workspace_root()
            .join("testing")
            .join("python")
            .join("raw_server.py");
        let mut cmd = Command::new(venv_python());
        cmd.arg(script).args(["--port", "0"]);
        if modern {
            cmd.arg("--modern");
        }
        cmd.env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = ChildProcess::spawn("raw_server.py", cmd);
        let stdout = process
            .child_mut()
            .stdout
            .take()
            .expect("raw_server.py stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(START_DEADLINE)
            .unwrap_or_else(|_| panic!("raw_server.py printed no `listening on` line"));
        let addr: SocketAddr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from raw_server.py: {line:?}"));
        Self {
            _process: process,
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

/// What `raw_server.py` puts in every tool definition / call result under `x-unknown`.
pub fn raw_unknown_in_tool() -> Value {
    json!({"nested": {"keep": [1, 2.50, "three", null, true]}, "order": "b-then-a"})
}

pub fn raw_unknown_in_result() -> Value {
    json!({"echoed": true, "deep": {"list": [{"k": "v"}], "n": 1.250}})
}

/// The value of an unlabelled Prometheus sample `name` (or labelled: pass `name{…}`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

/// An enterprise control plane, an admin CLI, the rmcp fixture registered as `rmcp`, one data
/// plane, and an MCP client `agent` allowed `allow`, already visible on the data plane.
pub struct Gateway {
    pub upstream: canopy_e2e::FixtureServer,
    pub dp: canopy_e2e::DataPlane,
    pub admin: canopy_e2e::Cli,
    pub cp: canopy_e2e::ControlPlane,
    pub token: String,
}

impl Gateway {
    pub fn start(allow: &str) -> Self {
        Self::start_with(allow, &[])
    }

    /// Same, with extra data-plane flags.
    pub fn start_with(allow: &str, dp_args: &[&str]) -> Self {
        let (cp, admin) = crate::common::enterprise();
        let upstream = canopy_e2e::FixtureServer::http();
        admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
        let created = admin.json(&["create", "mcp-client", "agent", "--allow", allow]);
        let token = crate::common::access_token(&created);
        let dp = canopy_e2e::DataPlane::start_with(&cp, dp_args);
        assert!(
            dp.wait_ready(SYNC_DEADLINE),
            "data plane never became ready; logs:\n{}",
            dp.logs()
        );
        eventually("agent's token accepted", SYNC_DEADLINE, || {
            (post_legacy(&dp.mcp_url(), Some(&token), 1, "tools/list", json!({})).status == 200)
                .then_some(())
        });
        Self {
            upstream,
            dp,
            admin,
            cp,
            token,
        }
    }

    pub fn mcp(&self) -> String {
        self.dp.mcp_url()
    }

    pub fn token(&self) -> Option<&str> {
        Some(&self.token)
    }
}
