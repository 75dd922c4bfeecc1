//! An audit event as JSON (OpenTelemetry semantic-convention names where there is one,
//! `canopy.*` where there is none) and as a table row. The one place these names are
//! chosen; docs/audit.md lists them.

use canopy_proto::v1 as pb;
use pb::audit_event::Kind;
use pb::audit_principal::Kind as Who;
use serde_json::{Map, Value};

use super::when;

/// Adds `key` unless `value` is empty text, zero or null.
fn put(m: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    let value = value.into();
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if !empty {
        m.insert(key.to_owned(), value);
    }
}

pub fn kind_name(e: &pb::AuditEvent) -> &'static str {
    match e.kind {
        Some(Kind::Request(_)) => "request",
        Some(Kind::Change(_)) => "change",
        Some(Kind::AuthFailure(_)) => "auth-failure",
        Some(Kind::Gap(_)) => "gap",
        None => "unknown",
    }
}

fn outcome_name(raw: i32) -> &'static str {
    match pb::AuditOutcome::try_from(raw) {
        Ok(pb::AuditOutcome::Ok) => "ok",
        Ok(pb::AuditOutcome::ToolError) => "tool_error",
        Ok(pb::AuditOutcome::Error) => "error",
        Ok(pb::AuditOutcome::Denied) => "denied",
        Ok(pb::AuditOutcome::Limited) => "limited",
        _ => "",
    }
}

fn payload_name(raw: i32) -> &'static str {
    match pb::AuditPayload::try_from(raw) {
        Ok(pb::AuditPayload::Hash) => "hash",
        Ok(pb::AuditPayload::Full) => "full",
        _ => "",
    }
}

/// `client.address` and `client.port` from "ip:port" (or just the address).
fn client_address(m: &mut Map<String, Value>, raw: &str) {
    match raw.parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            put(m, "client.address", addr.ip().to_string());
            put(m, "client.port", addr.port());
        }
        Err(_) => put(m, "client.address", raw),
    }
}

fn principal(m: &mut Map<String, Value>, p: Option<&pb::AuditPrincipal>) {
    let (kind, name) = match p.and_then(|p| p.kind.as_ref()) {
        Some(Who::McpClient(c)) => ("mcp_client", c.clone()),
        Some(Who::Sso(s)) => {
            put(m, "canopy.idp", s.idp.clone());
            put(m, "enduser.id", s.subject.clone());
            ("sso", format!("{}:{}", s.idp, s.subject))
        }
        Some(Who::User(u)) => ("user", u.clone()),
        Some(Who::Anonymous(_)) => ("anonymous", String::new()),
        Some(Who::System(_)) => ("system", String::new()),
        None => return,
    };
    put(m, "canopy.principal.kind", kind);
    put(m, "canopy.principal.name", name);
}

/// Stored object JSON as a JSON value (so it is not a string inside the document).
fn object(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub fn to_json(e: &pb::AuditEvent) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), when::format(e.time_unix_nanos).into());
    m.insert("time_unix_nano".into(), e.time_unix_nanos.into());
    put(&mut m, "event.id", hex(&e.id));
    m.insert("canopy.kind".into(), kind_name(e).into());
    match &e.kind {
        Some(Kind::Request(r)) => {
            put(&mut m, "canopy.data_plane", r.data_plane.clone());
            principal(&mut m, r.principal.as_ref());
            client_address(&mut m, &r.client_address);
            put(&mut m, "url.path", r.endpoint.clone());
            put(&mut m, "mcp.protocol.version", r.protocol_version.clone());
            put(&mut m, "mcp.method.name", r.method.clone());
            put(&mut m, "canopy.server.name", r.server.clone());
            put(&mut m, "gen_ai.tool.name", r.tool.clone());
            put(&mut m, "gen_ai.prompt.name", r.prompt.clone());
            put(&mut m, "mcp.resource.uri", r.resource_uri.clone());
            put(&mut m, "canopy.outcome", outcome_name(r.outcome));
            put(&mut m, "http.response.status_code", r.http_status);
            put(&mut m, "rpc.jsonrpc.error_code", r.jsonrpc_error_code);
            put(&mut m, "error.type", r.error_type.clone());
            if let Some(ms) = serde_json::Number::from_f64(r.duration_ms) {
                put(&mut m, "canopy.duration_ms", Value::Number(ms));
            }
            put(&mut m, "http.request.body.size", r.bytes_in);
            put(&mut m, "http.response.body.size", r.bytes_out);
            put(&mut m, "jsonrpc.request.id", r.request_id.clone());
            put(&mut m, "trace_id", r.trace_id.clone());
            put(&mut m, "span_id", r.span_id.clone());
            put(&mut m, "canopy.audit_payload", payload_name(r.payload));
            put(&mut m, "gen_ai.tool.call.arguments", r.arguments.clone());
            put(&mut m, "gen_ai.tool.call.result", r.result.clone());
        }
        Some(Kind::Change(c)) => {
            principal(&mut m, c.actor.as_ref());
            client_address(&mut m, &c.client_address);
            put(&mut m, "canopy.command", c.command.clone());
            put(&mut m, "canopy.object.kind", c.object_kind.clone());
            put(&mut m, "canopy.object.name", c.object_name.clone());
            m.insert("canopy.before".into(), object(&c.before));
            m.insert("canopy.after".into(), object(&c.after));
            put(&mut m, "canopy.revision", c.revision);
            put(&mut m, "error.message", c.error.clone());
            put(
                &mut m,
                "canopy.outcome",
                if c.error.is_empty() { "ok" } else { "error" },
            );
        }
        Some(Kind::AuthFailure(a)) => {
            put(&mut m, "canopy.surface", a.surface.clone());
            client_address(&mut m, &a.client_address);
            put(&mut m, "canopy.command", a.command.clone());
            put(&mut m, "canopy.reason", a.reason.clone());
            put(&mut m, "canopy.outcome", "denied");
        }
        Some(Kind::Gap(g)) => {
            put(&mut m, "canopy.data_plane", g.data_plane.clone());
            put(&mut m, "canopy.dropped", g.dropped);
            if g.from_unix_nanos != 0 {
                put(&mut m, "canopy.from", when::format(g.from_unix_nanos));
            }
            if g.to_unix_nanos != 0 {
                put(&mut m, "canopy.to", when::format(g.to_unix_nanos));
            }
            put(&mut m, "canopy.reason", g.reason.clone());
        }
        None => {}
    }
    Value::Object(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub const HEADERS: [&str; 7] = [
    "TIME",
    "KIND",
    "PRINCIPAL",
    "METHOD/COMMAND",
    "TARGET",
    "OUTCOME",
    "DURATION",
];

fn principal_text(p: Option<&pb::AuditPrincipal>) -> String {
    match p.and_then(|p| p.kind.as_ref()) {
        Some(Who::McpClient(c)) => c.clone(),
        Some(Who::Sso(s)) => format!("{}:{}", s.idp, s.subject),
        Some(Who::User(u)) => u.clone(),
        Some(Who::Anonymous(_)) => "anonymous".into(),
        Some(Who::System(_)) => "system".into(),
        None => "-".into(),
    }
}

/// One table row (see [`HEADERS`]).
pub fn row(e: &pb::AuditEvent) -> Vec<String> {
    let time = when::format(e.time_unix_nanos);
    let dash = || "-".to_owned();
    let (principal, method, target, outcome, duration) = match &e.kind {
        Some(Kind::Request(r)) => {
            let name = [&r.tool, &r.prompt, &r.resource_uri]
                .into_iter()
                .find(|n| !n.is_empty())
                .cloned()
                .unwrap_or_default();
            let target = match (r.server.is_empty(), name.is_empty()) {
                (false, false) => format!("{}/{name}", r.server),
                (false, true) => r.server.clone(),
                (true, false) => name,
                (true, true) => r.endpoint.clone(),
            };
            let mut outcome = outcome_name(r.outcome).to_owned();
            if !r.error_type.is_empty() {
                outcome = format!("{outcome} ({})", r.error_type);
            } else if r.http_status != 0 && r.http_status != 200 {
                outcome = format!("{outcome} ({})", r.http_status);
            }
            (
                principal_text(r.principal.as_ref()),
                r.method.clone(),
                target,
                outcome,
                format!("{:.1}ms", r.duration_ms),
            )
        }
        Some(Kind::Change(c)) => (
            principal_text(c.actor.as_ref()),
            c.command.clone(),
            format!("{} {}", c.object_kind, c.object_name),
            if c.error.is_empty() {
                format!("ok (rev {})", c.revision)
            } else {
                format!("error: {}", crate::output::one_line(&c.error, 40))
            },
            dash(),
        ),
        Some(Kind::AuthFailure(a)) => (
            "anonymous".into(),
            a.command.clone(),
            a.surface.clone(),
            format!("denied: {}", a.reason),
            dash(),
        ),
        Some(Kind::Gap(g)) => (
            g.data_plane.clone(),
            dash(),
            dash(),
            format!("{} events lost ({})", g.dropped, g.reason),
            dash(),
        ),
        None => (dash(), dash(), dash(), dash(), dash()),
    };
    let or_dash = |s: String| if s.is_empty() { dash() } else { s };
    vec![
        time,
        kind_name(e).to_owned(),
        or_dash(principal),
        or_dash(method),
        or_dash(target),
        or_dash(outcome),
        duration,
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn request_fields_use_semantic_convention_names() {
        let e = pb::AuditEvent {
            id: vec![0xab; 16],
            time_unix_nanos: 1_772_366_400_000_000_000,
            kind: Some(Kind::Request(pb::McpRequestEvent {
                data_plane: "dp-1".into(),
                principal: Some(pb::AuditPrincipal {
                    kind: Some(Who::Sso(pb::SsoPrincipal {
                        idp: "corp".into(),
                        subject: "u1".into(),
                    })),
                }),
                client_address: "10.0.0.7:51234".into(),
                method: "tools/call".into(),
                server: "files".into(),
                tool: "read".into(),
                outcome: pb::AuditOutcome::ToolError as i32,
                http_status: 200,
                error_type: "tool_error".into(),
                duration_ms: 12.5,
                request_id: "7".into(),
                ..Default::default()
            })),
        };
        let v = to_json(&e);
        assert_eq!(v["mcp.method.name"], "tools/call");
        assert_eq!(v["gen_ai.tool.name"], "read");
        assert_eq!(v["jsonrpc.request.id"], "7");
        assert_eq!(v["error.type"], "tool_error");
        assert_eq!(v["client.address"], "10.0.0.7");
        assert_eq!(v["client.port"], 51234);
        assert_eq!(v["enduser.id"], "u1");
        assert_eq!(v["canopy.idp"], "corp");
        assert_eq!(v["time"], "2026-03-01T12:00:00.000Z");
        assert!(v.get("gen_ai.prompt.name").is_none());
        let r = row(&e);
        assert_eq!(r[2], "corp:u1");
        assert_eq!(r[4], "files/read");
        assert_eq!(r[5], "tool_error (tool_error)");
    }

    #[test]
    fn change_objects_are_json_values() {
        let e = pb::AuditEvent {
            id: vec![1; 16],
            time_unix_nanos: 1,
            kind: Some(Kind::Change(pb::ChangeEvent {
                command: "CreateMcpClient".into(),
                object_kind: "mcp-client".into(),
                object_name: "c1".into(),
                after: r#"{"name":"c1","tokens":[{"hash":"redacted"}]}"#.into(),
                revision: 4,
                ..Default::default()
            })),
        };
        let v = to_json(&e);
        assert_eq!(v["canopy.before"], Value::Null);
        assert_eq!(v["canopy.after"]["tokens"][0]["hash"], "redacted");
        assert_eq!(v["canopy.revision"], 4);
    }
}
