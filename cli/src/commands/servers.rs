//! `register`, `deregister`, `list servers`, `refresh server`: upstream MCP servers.

use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{DeleteArgs, NameArg, RegisterArgs, Transport};
use crate::client::DEFAULT_CALL_TIMEOUT;
use crate::commands::{send_mutation, wait_options, Ctx, Outcome};
use crate::conf_file;
use crate::error::CliError;
use crate::output::{one_line, table, transport_name};

/// The control plane's per-call upstream deadline when the server sets none.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// `list servers` JSON (SPEC §2): no credentials, no headers, no env, no args (any of
/// which may hold a secret).
#[derive(Debug, Serialize)]
pub struct ServerJson {
    pub name: String,
    pub transport: &'static str,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub tools: u32,
    pub prompts: u32,
    /// What data planes record of arguments and results: off, hash or full.
    pub audit_payload: &'static str,
}

impl From<pb::ServerSummary> for ServerJson {
    fn from(s: pb::ServerSummary) -> Self {
        Self {
            name: s.name,
            transport: transport_name(s.transport),
            description: s.description,
            url: (!s.url.is_empty()).then_some(s.url),
            command: (!s.command.is_empty()).then_some(s.command),
            tools: s.tools,
            prompts: s.prompts,
            audit_payload: audit_payload_name(s.audit_payload),
        }
    }
}

fn audit_payload_name(raw: i32) -> &'static str {
    match pb::AuditPayload::try_from(raw) {
        Ok(pb::AuditPayload::Off) => "off",
        Ok(pb::AuditPayload::Hash) => "hash",
        Ok(pb::AuditPayload::Full) => "full",
        Err(_) => "unknown",
    }
}

/// What `register` and `refresh server` print.
#[derive(Debug, Serialize)]
struct DiscoveredJson {
    #[serde(flatten)]
    server: ServerJson,
    revision: u64,
}

pub async fn register(ctx: &Ctx, args: RegisterArgs) -> Result<(), CliError> {
    let mut spec = match (&args.conf, args.name) {
        (Some(path), _) => conf_file::load_server(path)?,
        (None, Some(name)) => {
            let timeout_ms = match args.timeout {
                Some(t) if t.is_zero() => {
                    return Err(CliError::usage("--timeout must be more than 0"))
                }
                Some(t) => u64::try_from(t.as_millis()).unwrap_or(u64::MAX),
                None => 0,
            };
            let spec = pb::ServerSpec {
                name,
                transport: Transport::from(args.transport).to_proto() as i32,
                description: args.description.unwrap_or_default(),
                url: args.url.unwrap_or_default(),
                bearer_token: args.bearer_token.unwrap_or_default(),
                timeout_ms,
                ..Default::default()
            };
            conf_file::check_server_spec(&spec).map_err(CliError::Usage)?;
            spec
        }
        (None, None) => return Err(CliError::usage("give --name and --url, or -c FILE")),
    };
    if let Some(payload) = args.audit_payload {
        spec.audit_payload = payload.to_proto() as i32;
    }
    // Discovery is several round trips to the upstream, each under its own deadline.
    let per_call = if spec.timeout_ms == 0 {
        DEFAULT_UPSTREAM_TIMEOUT
    } else {
        Duration::from_millis(spec.timeout_ms)
    };
    let deadline = DEFAULT_CALL_TIMEOUT.max(per_call.saturating_mul(4));
    let fallback_name = spec.name.clone();
    let req = pb::RegisterServerRequest {
        spec: Some(spec),
        force: args.force,
    };
    let mut a = ctx.admin()?;
    let resp = match a.at.call_within(deadline, a.rpc.register_server(req)).await {
        Err(CliError::Rpc { status, .. }) if status.code() == tonic::Code::AlreadyExists => {
            return Err(CliError::Other(format!(
                "{} (add --force to replace it)",
                status.message()
            )));
        }
        other => other?,
    };
    discovered(ctx, "Registered", &fallback_name, resp)
}

pub async fn refresh(ctx: &Ctx, args: NameArg) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let deadline = DEFAULT_CALL_TIMEOUT.max(DEFAULT_UPSTREAM_TIMEOUT.saturating_mul(4));
    let resp =
        a.at.call_within(
            deadline,
            a.rpc.refresh_server(pb::RefreshServerRequest {
                name: args.name.clone(),
            }),
        )
        .await?;
    discovered(ctx, "Refreshed", &args.name, resp)
}

fn discovered(
    ctx: &Ctx,
    verb: &str,
    name: &str,
    resp: pb::RegisterServerResponse,
) -> Result<(), CliError> {
    let mut server = ServerJson::from(resp.server.unwrap_or_default());
    if server.name.is_empty() {
        server.name = name.to_owned();
    }
    // The response's counts are authoritative; the summary's may be absent.
    server.tools = resp.tools;
    server.prompts = resp.prompts;
    let json = DiscoveredJson {
        server,
        revision: resp.revision,
    };
    ctx.emit(&json, || {
        let s = &json.server;
        format!(
            "{verb} server '{}' ({}): {} tool{} and {} prompt{} discovered.\n\
             See them with `canopy list tools --server {}`.",
            s.name,
            s.transport,
            s.tools,
            plural(s.tools),
            s.prompts,
            plural(s.prompts),
            s.name
        )
    })
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub async fn deregister(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let req = pb::DeregisterServerRequest {
        name: args.name.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let outcome = Outcome::new(
        format!(
            "Deregistered server '{}' and its tools and prompts; data planes no longer route to it.",
            args.name
        ),
        format!("The deregistration of server '{}'", args.name),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.deregister_server(req),
        &outcome,
    )
    .await
}

pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(a.rpc.list_servers(pb::ListServersRequest {}))
            .await?;
    let servers: Vec<ServerJson> = resp.servers.into_iter().map(ServerJson::from).collect();
    ctx.emit(&servers, || {
        let rows: Vec<Vec<String>> = servers
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.transport.to_owned(),
                    s.tools.to_string(),
                    s.prompts.to_string(),
                    s.audit_payload.to_owned(),
                    s.url
                        .clone()
                        .or_else(|| s.command.clone())
                        .unwrap_or_default(),
                    one_line(&s.description, 50),
                ]
            })
            .collect();
        table(
            &[
                "NAME",
                "TRANSPORT",
                "TOOLS",
                "PROMPTS",
                "AUDIT PAYLOAD",
                "ENDPOINT",
                "DESCRIPTION",
            ],
            &rows,
            "No servers registered. Add one with `canopy register --name NAME --url URL`.",
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn server_json_has_no_secrets_and_optional_fields() {
        let s = ServerJson::from(pb::ServerSummary {
            name: "gh".into(),
            transport: pb::Transport::StreamableHttp as i32,
            description: "d".into(),
            url: "https://x/mcp".into(),
            tools: 3,
            ..Default::default()
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["transport"], "streamable_http");
        assert_eq!(v["url"], "https://x/mcp");
        assert!(v.get("command").is_none());
        let stdio = ServerJson::from(pb::ServerSummary {
            name: "fs".into(),
            transport: pb::Transport::Stdio as i32,
            command: "npx".into(),
            args: vec!["--api-key=secret".into()],
            ..Default::default()
        });
        let text = serde_json::to_string(&stdio).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("\"url\""),
            "{text}"
        );
    }
}
