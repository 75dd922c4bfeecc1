//! `create|list|update|delete mcp-client`: bearer tokens for AI clients, each scoped to
//! an allow list.

use canopy_core::{name, token, AllowList};
use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{CreateClientArgs, DeleteArgs, UpdateClientArgs};
use crate::commands::{
    finish_mutation, grace_ms, send_mutation, wait_options, waiting_deadline, Ctx, Outcome,
};
use crate::conf_file;
use crate::error::CliError;
use crate::output::{self, table};

/// `create mcp-client` and `list mcp-clients` JSON (SPEC §2).
#[derive(Debug, Serialize)]
pub struct ClientJson {
    pub name: String,
    pub description: String,
    pub allowed_servers: Vec<String>,
    /// Only when the control plane generated the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Listings: the allow-list entries that name no registered server or tool (e.g. the
    /// server was deregistered, or the entry was stored with --force).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_entries: Option<Vec<String>>,
}

impl From<pb::McpClient> for ClientJson {
    fn from(c: pb::McpClient) -> Self {
        Self {
            name: c.name,
            description: c.description,
            allowed_servers: c.allowed_servers,
            access_token: None,
            unknown_entries: Some(c.unknown_entries),
        }
    }
}

pub async fn create(ctx: &Ctx, args: CreateClientArgs) -> Result<(), CliError> {
    let req = match (&args.conf, args.name) {
        (Some(path), _) => {
            let d = conf_file::load_client(path)?;
            pb::CreateMcpClientRequest {
                name: d.name,
                description: d.description,
                allowed_servers: d.allowed.to_strings(),
                access_token: d.access_token,
                force: args.force,
            }
        }
        (None, Some(name)) => {
            name::validate_principal_name("client", &name)?;
            let allowed = AllowList::parse_csv(args.allow.as_deref().unwrap_or(""))?;
            if let Some(t) = &args.access_token {
                token::validate_custom(t)?;
            }
            pb::CreateMcpClientRequest {
                name,
                description: args.description.unwrap_or_default(),
                allowed_servers: allowed.to_strings(),
                access_token: args.access_token.unwrap_or_default(),
                force: args.force,
            }
        }
        (None, None) => return Err(CliError::usage("give the client's name or --conf FILE")),
    };
    let mut a = ctx.admin()?;
    let resp = a.at.call(a.rpc.create_mcp_client(req.clone())).await?;
    // Warn only once the control plane accepted it: a refused command prints one line.
    warn_if_all(&req.name, &req.allowed_servers);
    let client = resp.client.unwrap_or(pb::McpClient {
        name: req.name,
        description: req.description,
        allowed_servers: req.allowed_servers,
        unknown_entries: Vec::new(),
    });
    warn_if_unknown(&client.name, &client.unknown_entries);
    let generated = (!resp.access_token.is_empty()).then_some(resp.access_token);
    let json = ClientJson {
        access_token: generated,
        unknown_entries: None,
        ..ClientJson::from(client)
    };
    ctx.emit(&json, || created_text(&json))
}

fn created_text(c: &ClientJson) -> String {
    let mut t = format!(
        "MCP client '{}' created.\nAllowed: {}\n",
        c.name,
        allowed_text(&c.allowed_servers)
    );
    match &c.access_token {
        Some(tok) => t.push_str(&format!(
            "\nAccess token (copy it now, it won't be shown again):\n\n    {tok}\n\n\
             AI clients send it as `Authorization: Bearer <token>` to a data plane's /mcp endpoint."
        )),
        None => t.push_str("It uses the access token you supplied."),
    }
    t
}

fn allowed_text(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "nothing (no access until you run `canopy update mcp-client NAME --allow LIST`)".to_owned()
    } else {
        allowed.join(", ")
    }
}

fn warn_if_all(name: &str, allowed: &[String]) {
    if allowed.iter().any(|e| e == "*") {
        output::warn(&format!(
            "'{name}' may use every server, including servers registered later; \
             prefer listing only the servers it needs"
        ));
    }
}

/// After `--force`: the entries stored although they name nothing (yet).
fn warn_if_unknown(name: &str, unknown: &[String]) {
    if !unknown.is_empty() {
        output::warn(&format!(
            "'{name}' has allow-list entries that name no registered server or tool: {}; \
             they grant nothing until one by that name is registered",
            unknown.join(", ")
        ));
    }
}

/// The ALLOWED column: entries that name nothing are marked.
fn allowed_cell(c: &ClientJson) -> String {
    if c.allowed_servers.is_empty() {
        return "(none)".into();
    }
    let unknown = c.unknown_entries.as_deref().unwrap_or_default();
    c.allowed_servers
        .iter()
        .map(|e| {
            if unknown.contains(e) {
                format!("{e} (not registered)")
            } else {
                e.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(a.rpc.list_mcp_clients(pb::ListMcpClientsRequest {}))
            .await?;
    let clients: Vec<ClientJson> = resp.clients.into_iter().map(ClientJson::from).collect();
    ctx.emit(&clients, || {
        let rows: Vec<Vec<String>> = clients
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    allowed_cell(c),
                    output::one_line(&c.description, 60),
                ]
            })
            .collect();
        table(
            &["NAME", "ALLOWED", "DESCRIPTION"],
            &rows,
            "No MCP clients.",
        )
    })
}

pub async fn update(ctx: &Ctx, args: UpdateClientArgs) -> Result<(), CliError> {
    if let Some(t) = &args.access_token {
        token::validate_custom(t)?;
    }
    let allowed = match &args.allow {
        Some(csv) => Some(AllowList::parse_csv(csv)?.to_strings()),
        None => None,
    };
    let grants_all = allowed.as_ref().is_some_and(|e| e.iter().any(|x| x == "*"));
    let mut changed = Vec::new();
    if args.access_token.is_some() || args.new_token {
        changed.push("access token");
    }
    if allowed.is_some() {
        changed.push("allow list");
    }
    if args.description.is_some() {
        changed.push("description");
    }
    if changed.is_empty() {
        // clap's argument group already demands one; kept for callers that bypass clap.
        return Err(CliError::usage(
            "give at least one of --access-token, --new-token, --allow, --description",
        ));
    }
    let req = pb::UpdateMcpClientRequest {
        name: args.name.clone(),
        access_token: args.access_token,
        allowed_servers: allowed.map(|entries| pb::AllowList { entries }),
        description: args.description,
        grace_ms: grace_ms(args.grace),
        wait: wait_options(args.wait.wait),
        force: args.force,
        new_token: args.new_token,
    };
    let mut a = ctx.admin()?;
    let result =
        a.at.call_within(
            waiting_deadline(args.wait.wait),
            a.rpc.update_mcp_client(req),
        )
        .await?;
    if grants_all {
        warn_if_all(&args.name, &["*".to_owned()]);
    }
    let what = changed.join(", ");
    let mut outcome = Outcome::new(
        format!("MCP client '{}' updated ({what}).", args.name),
        format!("The update of MCP client '{}' ({what})", args.name),
    );
    if !result.access_token.is_empty() {
        outcome.extra = Some(new_token_text(&result.access_token));
    }
    finish_mutation(ctx, &outcome, &result, args.wait.wait)
}

fn new_token_text(token: &str) -> String {
    format!(
        "New access token (copy it now, it won't be shown again):\n\n    {token}\n\n\
         AI clients send it as `Authorization: Bearer <token>` to a data plane's /mcp endpoint."
    )
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let req = pb::DeleteMcpClientRequest {
        name: args.name.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let outcome = Outcome::new(
        format!(
            "MCP client '{}' deleted; its access token no longer works.",
            args.name
        ),
        format!("The deletion of MCP client '{}'", args.name),
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.delete_mcp_client(req),
        &outcome,
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn json_has_token_only_when_generated() {
        let c = ClientJson {
            name: "a".into(),
            description: String::new(),
            allowed_servers: vec!["gh".into()],
            access_token: None,
            unknown_entries: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "a", "description": "", "allowed_servers": ["gh"]})
        );
        let g = ClientJson {
            access_token: Some("canopy_mcp_x".into()),
            ..c
        };
        assert_eq!(
            serde_json::to_value(&g).unwrap()["access_token"],
            "canopy_mcp_x"
        );
    }

    #[test]
    fn created_text_shows_generated_token_once() {
        let c = ClientJson {
            name: "a".into(),
            description: String::new(),
            allowed_servers: vec![],
            access_token: Some("canopy_mcp_x".into()),
            unknown_entries: None,
        };
        let t = created_text(&c);
        assert_eq!(t.matches("canopy_mcp_x").count(), 1);
        assert!(t.contains("won't be shown again"));
        assert!(t.contains("Allowed: nothing"));
    }

    #[test]
    fn listing_marks_entries_that_name_nothing() {
        let c = ClientJson::from(pb::McpClient {
            name: "a".into(),
            description: String::new(),
            allowed_servers: vec!["gh".into(), "pyhtp".into()],
            unknown_entries: vec!["pyhtp".into()],
        });
        assert_eq!(allowed_cell(&c), "gh, pyhtp (not registered)");
        assert_eq!(
            serde_json::to_value(&c).unwrap()["unknown_entries"],
            serde_json::json!(["pyhtp"])
        );
    }
}
