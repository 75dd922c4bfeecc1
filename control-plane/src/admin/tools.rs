//! Listing tools and prompts of registered servers and invoking tools through the
//! control plane (with the server's registered credentials), each within the caller's
//! scope: what lies outside it is answered like something that does not exist.

use super::auth::Need;
use super::scope::caller_scope;
use super::{AdminError, AdminService};
use crate::store::ServerRecord;
use canopy_core::{qualify, split_qualified, AllowList};
use canopy_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tonic::Request;

/// The two fields listings need from a raw tool or prompt definition.
#[derive(Deserialize)]
struct Named {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

/// One catalogue entry: qualified name, upstream name, description, raw definition.
struct Entry<'a> {
    qualified: String,
    upstream_name: String,
    description: String,
    raw: &'a RawValue,
}

fn entries<'a>(server: &str, defs: &'a [Box<RawValue>]) -> impl Iterator<Item = Entry<'a>> + 'a {
    let server = server.to_owned();
    defs.iter().filter_map(move |raw| {
        // A definition without a name cannot be called or listed; skip it.
        let named: Named = serde_json::from_str(raw.get()).ok()?;
        Some(Entry {
            qualified: qualify(&server, &named.name),
            upstream_name: named.name,
            description: named.description.unwrap_or_default(),
            raw,
        })
    })
}

#[derive(Serialize)]
struct CallParams<'a> {
    name: &'a str,
    arguments: &'a RawValue,
}

impl Entry<'_> {
    fn in_scope(&self, server: &str, scope: &AllowList) -> bool {
        scope.allows_listed_tool(server, &self.upstream_name, &self.qualified)
    }
}

/// How many tools and prompts of `record` a caller with `scope` sees, for `list servers`.
pub(super) fn visible_counts(record: &ServerRecord, scope: &AllowList) -> (usize, usize) {
    let server = record.spec.name.as_str();
    let tools = entries(server, &record.tools)
        .filter(|e| e.in_scope(server, scope))
        .count();
    let prompts = if scope.allows_server(server) {
        entries(server, &record.prompts).count()
    } else {
        0
    };
    (tools, prompts)
}

impl AdminService {
    /// The servers `scope` reaches: all of them, or the one named (NotFound if unknown or
    /// outside the scope, alike).
    pub(super) fn servers_for(
        &self,
        filter: &str,
        scope: &AllowList,
    ) -> Result<Vec<ServerRecord>, AdminError> {
        if filter.is_empty() {
            let mut all = self.store.servers()?;
            all.retain(|s| scope.touches_server(&s.spec.name));
            return Ok(all);
        }
        let one = self
            .store
            .server(filter)?
            .filter(|_| scope.touches_server(filter))
            .ok_or(AdminError::NotFound {
                kind: "server",
                name: filter.into(),
            })?;
        Ok(vec![one])
    }

    pub(super) fn tool_list(
        &self,
        req: Request<pb::ListToolsRequest>,
    ) -> Result<pb::ListToolsResponse, AdminError> {
        let scope = caller_scope(&self.authorize(req.metadata(), Need::Read)?);
        let mut tools = Vec::new();
        for s in self.servers_for(&req.get_ref().server, &scope)? {
            let server = s.spec.name.as_str();
            let visible = entries(server, &s.tools).filter(|e| e.in_scope(server, &scope));
            tools.extend(visible.map(|e| pb::ToolInfo {
                name: e.qualified,
                server: s.spec.name.clone(),
                description: e.description,
                definition_json: e.raw.get().to_owned(),
            }));
        }
        Ok(pb::ListToolsResponse { tools })
    }

    pub(super) fn prompt_list(
        &self,
        req: Request<pb::ListPromptsRequest>,
    ) -> Result<pb::ListPromptsResponse, AdminError> {
        let scope = caller_scope(&self.authorize(req.metadata(), Need::Read)?);
        let mut prompts = Vec::new();
        for s in self.servers_for(&req.get_ref().server, &scope)? {
            // Prompts are not named one by one in allow lists: they come with a whole server,
            // as on the data plane.
            if !scope.allows_server(&s.spec.name) {
                continue;
            }
            prompts.extend(entries(&s.spec.name, &s.prompts).map(|e| pb::PromptInfo {
                name: e.qualified,
                server: s.spec.name.clone(),
                description: e.description,
                definition_json: e.raw.get().to_owned(),
            }));
        }
        Ok(pb::ListPromptsResponse { prompts })
    }

    /// The server record and upstream tool name behind a qualified tool name; a tool
    /// outside `scope` is not found, exactly like one that does not exist.
    fn find_tool(
        &self,
        qualified: &str,
        scope: &AllowList,
    ) -> Result<(ServerRecord, String, pb::ToolInfo), AdminError> {
        let not_found = || AdminError::NotFound {
            kind: "tool",
            name: qualified.to_owned(),
        };
        let (server, _) = split_qualified(qualified).ok_or_else(not_found)?;
        let record = self.store.server(server)?.ok_or_else(not_found)?;
        // Compare qualified names rather than splitting, so shortened long names resolve too.
        let entry = entries(server, &record.tools)
            .find(|e| e.qualified == qualified)
            .filter(|e| e.in_scope(server, scope))
            .ok_or_else(not_found)?;
        let info = pb::ToolInfo {
            name: entry.qualified,
            server: server.to_owned(),
            description: entry.description,
            definition_json: entry.raw.get().to_owned(),
        };
        let upstream_name = entry.upstream_name;
        Ok((record, upstream_name, info))
    }

    pub(super) fn tool_info(
        &self,
        req: Request<pb::GetToolRequest>,
    ) -> Result<pb::ToolInfo, AdminError> {
        let scope = caller_scope(&self.authorize(req.metadata(), Need::Read)?);
        Ok(self.find_tool(&req.get_ref().name, &scope)?.2)
    }

    pub(super) async fn invoke(
        &self,
        req: Request<pb::InvokeToolRequest>,
    ) -> Result<pb::InvokeToolResponse, AdminError> {
        let scope = caller_scope(&self.authorize(req.metadata(), Need::Read)?);
        let req = req.into_inner();
        let (record, tool, _) = self.find_tool(&req.name, &scope)?;
        let args = if req.arguments_json.trim().is_empty() {
            "{}"
        } else {
            req.arguments_json.as_str()
        };
        let arguments: &RawValue = serde_json::from_str(args).map_err(|e| {
            AdminError::InvalidArgument(format!("tool input is not valid JSON: {e}"))
        })?;
        if !arguments.get().trim_start().starts_with('{') {
            return Err(AdminError::InvalidArgument(
                "tool input must be a JSON object".into(),
            ));
        }
        let params = serde_json::to_string(&CallParams {
            name: &tool,
            arguments,
        })
        .and_then(RawValue::from_string)
        .map_err(|e| AdminError::InvalidArgument(format!("tool input: {e}")))?;
        let server = record.spec.name.clone();
        let up = self.upstreams.for_record(&record);
        let response = up
            .request("tools/call", Some(&params), None)
            .await
            .map_err(|source| AdminError::Upstream {
                action: "calling",
                server: server.clone(),
                source,
            })?;
        match response.outcome {
            Ok(result) => Ok(pb::InvokeToolResponse {
                result_json: result.get().to_owned(),
            }),
            Err(e) => Err(AdminError::ToolCall {
                server,
                code: e.code,
                message: e.message,
            }),
        }
    }
}
