//! Issue 17: one client cannot exhaust a data plane — bounded memory per call, slow and idle
//! clients shed or closed while real requests keep working, keep-alive after an early
//! rejection. One stack serves every check (CI time); nothing asserts on timing: waits are
//! failure deadlines, sleeps only pace a client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::dataplane_support::Gateway;

/// `--max-call-bytes` of the data plane under test.
const MAX_CALL_BYTES: &str = "4194304";
/// The stated bound: the data plane's resident memory grows by less than this while it relays
/// calls whose upstream sends 3,000,000 progress notifications (~400 MB) before its result.
/// Before the fix one such call grew it by ~1 GB.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;
/// Failure deadline of one raw read.
const READ_DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn dataplane_limits_one_client_cannot_exhaust_a_data_plane() {
    let gw = Gateway::start_with(
        "rmcp",
        &[
            "--max-call-bytes",
            MAX_CALL_BYTES,
            "--max-call-notifications",
            "1000000",
            "--max-connections",
            &MAX_CONNECTIONS.to_string(),
            "--header-read-timeout",
            "2s",
            "--body-read-timeout",
            "2s",
        ],
    );
    memory_per_call_is_bounded(&gw);
    keep_alive_survives_a_rejection(&gw);
    slow_clients_are_shed_or_closed(&gw);
}

/// `--max-connections` of the data plane under test: low, so the slow-loris run is cheap.
const MAX_CONNECTIONS: usize = 16;

/// After a 401 or 415 sent before the body was read, the next request on the same
/// connection works — or the rejection said `Connection: close`. The bearer scheme is read
/// case-insensitively, with exactly one space (issue 17, point 7).
fn keep_alive_survives_a_rejection(gw: &Gateway) {
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let mut conn = Conn::open(gw.dp.addr());
    for (token, status) in [
        (Some("canopy_mcp_not-a-token-at-all"), 401),
        (None, 401),
        (gw.token(), 200),
    ] {
        conn.post(token, "application/json", &ping);
        let head = conn.head();
        let _ = conn.body(&head);
        assert_eq!(head.status, status, "{head:?}");
        assert!(!head.has("connection", "close"), "{head:?}");
    }
    let lower = format!("bearer {}", gw.token);
    let spaced = format!("Bearer  {}", gw.token);
    for (auth, status) in [(lower.as_str(), 200), (spaced.as_str(), 401)] {
        conn.send_raw(
            "application/json",
            &[("Authorization", auth)],
            ping.to_string().as_bytes(),
        );
        let head = conn.head();
        let _ = conn.body(&head);
        assert_eq!(head.status, status, "{auth}: {head:?}");
    }
    // 415 with a body too large to be worth reading: the connection is closed, and says so.
    let big = vec![b'x'; 1024 * 1024];
    conn.send_raw("text/plain", &[], &big);
    let head = conn.head();
    let _ = conn.body(&head);
    assert_eq!(head.status, 415, "{head:?}");
    assert!(head.has("connection", "close"), "{head:?}");
    // 415 with a small body: read and dropped, the connection goes on.
    let mut conn = Conn::open(gw.dp.addr());
    conn.send_raw("text/plain", &[], b"{\"not\": \"json\"}");
    let head = conn.head();
    let _ = conn.body(&head);
    assert_eq!(head.status, 415, "{head:?}");
    conn.post(gw.token(), "application/json", &ping);
    let head = conn.head();
    assert_eq!(head.status, 200, "{head:?}");
}

/// Many connections that send a request line and one header, and some that send a head and
/// part of a body, then nothing: more than `--max-connections`. Past the cap they are shed
/// with 503; the rest are closed by the header and body read timeouts; real requests
/// succeed during the run (a shed one is retried) and after it.
fn slow_clients_are_shed_or_closed(gw: &Gateway) {
    let addr = gw.dp.addr();
    let mut held = Vec::new();
    for _ in 0..(MAX_CONNECTIONS * 2) {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = s.write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\n");
        held.push(s);
    }
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = s.write_all(
            b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\"",
        );
        held.push(s);
    }
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    crate::dataplane_support::eventually(
        "a real request succeeds while slow clients are connected",
        READ_DEADLINE,
        || (try_post(addr, gw.token(), &list) == Some(200)).then_some(()),
    );
    for (i, mut s) in held.into_iter().enumerate() {
        let _ = s.set_read_timeout(Some(READ_DEADLINE));
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("slow connection {i} still held by the data plane: {e}"),
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 503") || text.starts_with("HTTP/1.1 408"),
            "slow connection {i} got {text:?}"
        );
    }
    assert_eq!(try_post(addr, gw.token(), &list), Some(200));
}

/// The status of one request on a fresh connection; `None` when the connection failed.
fn try_post(addr: SocketAddr, token: Option<&str>, body: &Value) -> Option<u16> {
    let s = TcpStream::connect(addr).ok()?;
    let _ = s.set_read_timeout(Some(READ_DEADLINE));
    let mut conn = Conn {
        reader: BufReader::new(s),
    };
    let body = body.to_string();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.reader.get_mut().write_all(req.as_bytes()).ok()?;
    let mut status_line = String::new();
    conn.reader.read_line(&mut status_line).ok()?;
    status_line.split(' ').nth(1)?.parse().ok()
}

/// A progress call of 3,000,000 steps, for an SSE client that reads slowly and for a JSON-only
/// one: each ends with a JSON-RPC error naming the server, and RSS stays under the bound.
fn memory_per_call_is_bounded(gw: &Gateway) {
    let pid = gw
        .dp
        .pid()
        .unwrap_or_else(|| panic!("data plane not running"));
    let before = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let call = |id: u64, steps: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "rmcp__progress", "arguments": {"steps": steps},
            "_meta": {"progressToken": format!("tok-{id}")}}})
    };

    // SSE client: notifications flow as they come; this one does not read for a while, so
    // the data plane must stop pulling the upstream instead of buffering for it.
    let mut conn = Conn::open(gw.dp.addr());
    conn.post(
        gw.token(),
        "application/json, text/event-stream",
        &call(1, 3_000_000),
    );
    let head = conn.head();
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.has("content-type", "text/event-stream"), "{head:?}");
    std::thread::sleep(Duration::from_secs(2));
    let events = sse_events(&conn.body(&head));
    assert!(events.len() > 1_000, "only {} events", events.len());
    assert_eq!(events[0]["method"], "notifications/progress");
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["id"], 1, "{last}");
    assert_limit_error(&last);

    // JSON-only client: nothing to deliver notifications on; they are dropped, not kept.
    conn.post(gw.token(), "application/json", &call(2, 3_000_000));
    let head = conn.head();
    let body: Value = serde_json::from_slice(&conn.body(&head)).unwrap_or_default();
    assert_eq!((head.status, &body["id"]), (200, &json!(2)), "{body}");
    assert_limit_error(&body);

    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        grown < RSS_GROWTH_BOUND_KIB,
        "data plane RSS grew by {grown} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );

    // A call within the limits still gets every notification and its result.
    conn.post(
        gw.token(),
        "application/json, text/event-stream",
        &call(3, 3),
    );
    let head = conn.head();
    let events = sse_events(&conn.body(&head));
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events[3]["result"].is_object(), "{events:?}");
}

fn assert_limit_error(msg: &Value) {
    assert_eq!(msg["error"]["code"], -32603, "{msg}");
    let text = msg["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("'rmcp'") && text.contains(MAX_CALL_BYTES),
        "the error must name the server and the limit: {msg}"
    );
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The JSON messages of an SSE body.
fn sse_events(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|ev| {
            let data: String = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data).unwrap_or_default())
        })
        .collect()
}

/// One keep-alive HTTP/1.1 connection, read by hand (the pace and the framing are the test).
struct Conn {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    /// Lowercased `name: value` lines.
    headers: Vec<String>,
}

impl Head {
    fn has(&self, name: &str, value_prefix: &str) -> bool {
        let want = format!("{name}: {value_prefix}");
        self.headers.iter().any(|h| h.starts_with(&want))
    }

    fn get(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}

impl Conn {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let _ = stream.set_read_timeout(Some(READ_DEADLINE));
        Self {
            reader: BufReader::new(stream),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    fn post(&mut self, token: Option<&str>, accept: &str, body: &Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", accept)];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        self.send_raw("application/json", &headers, body.to_string().as_bytes());
    }

    /// `POST /mcp` with this content type, these extra headers and body.
    fn send_raw(&mut self, content_type: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.write(&bytes);
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read: {e}"));
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    fn head(&mut self) -> Head {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            headers.push(l.to_ascii_lowercase());
        }
        Head { status, headers }
    }

    /// The body after `head`: by Content-Length or chunked.
    fn body(&mut self, head: &Head) -> Vec<u8> {
        if let Some(n) = head.get("content-length").and_then(|v| v.parse().ok()) {
            let mut out = vec![0; n];
            self.reader
                .read_exact(&mut out)
                .unwrap_or_else(|e| panic!("read body: {e}"));
            return out;
        }
        let mut out = Vec::new();
        loop {
            let size_line = self.line();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
            let mut chunk = vec![0; size + 2];
            self.reader
                .read_exact(&mut chunk)
                .unwrap_or_else(|e| panic!("read chunk: {e}"));
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&chunk[..size]);
        }
    }
}
