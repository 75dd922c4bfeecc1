//! Conversions between the generated protobuf types and the store's own types.
//! Protobuf types stop here.

use super::AdminError;
use crate::fleet::WaitReport;
use crate::store::{AuditPayload, Role, ServerRecord, ServerSpec, Transport};
use canopy_core::name::validate_server_name;
use canopy_core::AllowList;
use canopy_mcp::upstream::{TransportKind, UpstreamConfig, DEFAULT_TIMEOUT};
use canopy_proto::v1 as pb;
use std::time::Duration;

/// Default and ceiling of how long a revoking call waits for data planes.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);
const MAX_WAIT: Duration = Duration::from_secs(600);

pub(super) fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::User => pb::Role::User,
        Role::Admin => pb::Role::Admin,
    }
}

pub(super) fn role_from_pb(raw: i32) -> Result<Role, AdminError> {
    match pb::Role::try_from(raw) {
        Ok(pb::Role::Unspecified | pb::Role::User) => Ok(Role::User),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Err(_) => Err(AdminError::InvalidArgument(format!(
            "unknown role {raw}; use user or admin"
        ))),
    }
}

/// Parses allow-list entries (of an MCP client or a user) into their canonical form.
/// Entries that still hold commas (a CLI that did not split) are split here, so both
/// shapes mean the same.
pub(super) fn allow_list(entries: &[String]) -> Result<Vec<String>, AdminError> {
    let flat = entries
        .iter()
        .flat_map(|e| e.split(','))
        .filter(|e| !e.trim().is_empty());
    let list =
        AllowList::from_entries(flat).map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
    Ok(list.to_strings())
}

pub(super) fn wait_duration(wait: Option<&pb::WaitOptions>) -> Duration {
    wait.map_or(DEFAULT_WAIT, |w| {
        Duration::from_millis(w.wait_ms).min(MAX_WAIT)
    })
}

pub(super) fn mutation_result(report: WaitReport) -> pb::MutationResult {
    pb::MutationResult {
        revision: report.revision,
        confirmed: report.confirmed,
        expected: report.expected,
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        elapsed_us: u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
        pending: report.pending,
        access_token: String::new(),
    }
}

fn transport_from_pb(spec: &pb::ServerSpec) -> Result<Transport, AdminError> {
    match pb::Transport::try_from(spec.transport) {
        Ok(pb::Transport::StreamableHttp) => Ok(Transport::StreamableHttp),
        Ok(pb::Transport::Sse) => Ok(Transport::Sse),
        Ok(pb::Transport::Stdio) => Ok(Transport::Stdio),
        // Unspecified: what the admin gave tells us.
        Ok(pb::Transport::Unspecified) if !spec.url.is_empty() => Ok(Transport::StreamableHttp),
        Ok(pb::Transport::Unspecified) if !spec.command.is_empty() => Ok(Transport::Stdio),
        Ok(pb::Transport::Unspecified) => Err(AdminError::InvalidArgument(format!(
            "server '{}' needs a url or a command",
            spec.name
        ))),
        Err(_) => Err(AdminError::InvalidArgument(format!(
            "unknown transport {}",
            spec.transport
        ))),
    }
}

fn transport_to_pb(t: Transport) -> pb::Transport {
    match t {
        Transport::StreamableHttp => pb::Transport::StreamableHttp,
        Transport::Sse => pb::Transport::Sse,
        Transport::Stdio => pb::Transport::Stdio,
    }
}

/// Validates a server spec from the wire.
pub(super) fn spec_from_pb(spec: pb::ServerSpec) -> Result<ServerSpec, AdminError> {
    validate_server_name(&spec.name).map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
    let transport = transport_from_pb(&spec)?;
    let name = &spec.name;
    match transport {
        Transport::StreamableHttp | Transport::Sse => {
            if !(spec.url.starts_with("http://") || spec.url.starts_with("https://")) {
                return Err(AdminError::InvalidArgument(format!(
                    "server '{name}' needs an http:// or https:// url for transport {}",
                    transport.as_str()
                )));
            }
        }
        Transport::Stdio => {
            if spec.command.trim().is_empty() {
                return Err(AdminError::InvalidArgument(format!(
                    "stdio server '{name}' needs a command"
                )));
            }
        }
    }
    Ok(ServerSpec {
        name: spec.name,
        transport,
        description: spec.description,
        url: spec.url,
        bearer_token: Some(spec.bearer_token).filter(|t| !t.is_empty()),
        headers: spec.headers.into_iter().collect(),
        command: spec.command,
        args: spec.args,
        env: spec.env.into_iter().collect(),
        timeout_ms: spec.timeout_ms,
        audit_payload: audit_payload_from_pb(spec.audit_payload)?,
    })
}

pub(super) fn upstream_config(spec: &ServerSpec) -> UpstreamConfig {
    UpstreamConfig {
        name: spec.name.clone(),
        transport: match spec.transport {
            Transport::StreamableHttp => TransportKind::StreamableHttp,
            Transport::Sse => TransportKind::Sse,
            Transport::Stdio => TransportKind::Stdio,
        },
        url: spec.url.clone(),
        bearer_token: spec.bearer_token.clone(),
        headers: spec.headers.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        timeout: match spec.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(ms),
        },
    }
}

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A URL as listings may show it: credentials in the userinfo and query values can be
/// secrets (`https://user:pw@host/mcp?api_key=…`), so both are masked.
pub(crate) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        let masked: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}=***"),
                None => pair.to_owned(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    out
}

/// A server as listings show it: no bearer token, headers, env or arguments (any of which
/// may carry a secret), and a URL with credentials masked.
fn audit_payload_from_pb(raw: i32) -> Result<AuditPayload, AdminError> {
    match pb::AuditPayload::try_from(raw) {
        Ok(pb::AuditPayload::Off) => Ok(AuditPayload::Off),
        Ok(pb::AuditPayload::Hash) => Ok(AuditPayload::Hash),
        Ok(pb::AuditPayload::Full) => Ok(AuditPayload::Full),
        Err(_) => Err(AdminError::InvalidArgument(format!(
            "unknown audit payload setting {raw}; one of off, hash, full"
        ))),
    }
}

/// The wire form of the audit payload setting (Sync and listings).
pub(crate) fn audit_payload_to_pb(p: AuditPayload) -> pb::AuditPayload {
    match p {
        AuditPayload::Off => pb::AuditPayload::Off,
        AuditPayload::Hash => pb::AuditPayload::Hash,
        AuditPayload::Full => pb::AuditPayload::Full,
    }
}

pub(super) fn summary(record: &ServerRecord) -> pb::ServerSummary {
    let spec = &record.spec;
    pb::ServerSummary {
        name: spec.name.clone(),
        transport: transport_to_pb(spec.transport).into(),
        description: spec.description.clone(),
        url: redact_url(&spec.url),
        command: spec.command.clone(),
        args: Vec::new(),
        tools: count(record.tools.len()),
        prompts: count(record.prompts.len()),
        protocol_version: record.protocol_version.clone(),
        audit_payload: audit_payload_to_pb(spec.audit_payload).into(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn masks_userinfo_and_query_values() {
        assert_eq!(
            redact_url("http://127.0.0.1:1/mcp"),
            "http://127.0.0.1:1/mcp"
        );
        assert_eq!(
            redact_url("https://u:pw@h.example/mcp"),
            "https://***@h.example/mcp"
        );
        assert_eq!(
            redact_url("https://h/mcp?api_key=s3cret&x"),
            "https://h/mcp?api_key=***&x"
        );
    }
}
