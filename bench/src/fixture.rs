//! Names, tokens and wire bytes shared by the bench binaries and benches.

use serde_json::value::RawValue;

/// Name the bench upstream is registered under.
pub const SERVER: &str = "bench";
/// The admin created in bench data dirs (token is [`ADMIN_TOKEN`]).
pub const ADMIN: &str = "bench-admin";
/// Custom admin token of bench data dirs. Never used outside loopback benches.
pub const ADMIN_TOKEN: &str = "canopy_usr_bench_admin_token_0001";
/// Number of tools the bench upstream lists (including `echo`).
pub const TOOLS: usize = 50;
/// The 2026-07-28 protocol version.
pub const MODERN: &str = "2026-07-28";

/// Name of the i-th bulk-created MCP client.
pub fn client_name(i: u64) -> String {
    format!("bench-{i:08}")
}

/// Token of the i-th bulk-created MCP client (≥ 16 characters, deterministic so the
/// harness can authenticate as any of them without storing plaintexts).
pub fn client_token(i: u64) -> String {
    format!("canopy_mcp_bench_{i:012}")
}

/// `{"tools":[…]}` members: 49 filler tools and `echo`, as one JSON array.
pub fn tools_array() -> String {
    let mut out = String::from("[");
    for i in 0..TOOLS - 1 {
        out.push_str(&format!(
            r#"{{"name":"tool_{i:02}","description":"Bench filler tool number {i}; it does nothing useful.","inputSchema":{{"type":"object","properties":{{"query":{{"type":"string","description":"what to look for"}},"limit":{{"type":"integer"}}}},"required":["query"]}}}},"#
        ));
    }
    out.push_str(r#"{"name":"echo","description":"Returns its message argument as text.","inputSchema":{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}}]"#);
    out
}

/// JSON-RPC body of a handshake-era request with id 1.
pub fn request_body(method: &str, params: Option<&str>) -> String {
    match params {
        Some(p) => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{p}}}"#),
        None => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#),
    }
}

/// `tools/call` of `tool` with a short message.
pub fn echo_call(tool: &str) -> String {
    request_body(
        "tools/call",
        Some(&format!(
            r#"{{"name":"{tool}","arguments":{{"message":"hello from the bench"}}}}"#
        )),
    )
}

/// Checks that a JSON-RPC response is a result (not an error); returns the result's text.
pub fn result_of(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Resp<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    let r: Resp<'_> = serde_json::from_slice(body).map_err(|e| format!("not JSON-RPC: {e}"))?;
    match (r.result, r.error) {
        (Some(res), None) => Ok(res.get().to_owned()),
        (_, Some(e)) => Err(format!("JSON-RPC error: {}", e.get())),
        _ => Err("neither result nor error".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_array_is_json_with_50_tools() {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(&tools_array()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.len(), TOOLS);
        assert_eq!(v[TOOLS - 1]["name"], "echo");
    }

    #[test]
    fn bodies_are_json() {
        for b in [echo_call("echo"), request_body("tools/list", None)] {
            assert!(serde_json::from_str::<serde_json::Value>(&b).is_ok(), "{b}");
        }
    }
}
