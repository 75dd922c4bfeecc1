//! `list tools`, `list prompts`, `usage`, `invoke`: the catalogue as clients see it
//! (`<server>__<name>`), readable and callable by any user.

use std::time::Duration;

use canopy_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::args::{Format, InvokeArgs, ServerFilter, ToolArg};
use crate::commands::{read_arg_source, Ctx};
use crate::error::CliError;
use crate::output::{self, one_line, pretty_json, table};

/// A tool call may run as long as the upstream allows; this only guards against a control
/// plane that never answers.
const INVOKE_DEADLINE: Duration = Duration::from_secs(600);

/// `list tools` / `list prompts` JSON (SPEC §2).
#[derive(Debug, Serialize)]
pub struct EntryJson {
    pub name: String,
    pub description: String,
    pub server: String,
}

fn entries_text(entries: &[EntryJson], empty: &str) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| vec![e.name.clone(), one_line(&e.description, 80)])
        .collect();
    table(&["NAME", "DESCRIPTION"], &rows, empty)
}

pub async fn list_tools(ctx: &Ctx, f: ServerFilter) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let req = pb::ListToolsRequest {
        server: f.server.unwrap_or_default(),
    };
    let resp = a.at.call(a.rpc.list_tools(req)).await?;
    let tools: Vec<EntryJson> = resp
        .tools
        .into_iter()
        .map(|t| EntryJson {
            name: t.name,
            description: t.description,
            server: t.server,
        })
        .collect();
    ctx.emit(&tools, || entries_text(&tools, "No tools."))
}

pub async fn list_prompts(ctx: &Ctx, f: ServerFilter) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let req = pb::ListPromptsRequest {
        server: f.server.unwrap_or_default(),
    };
    let resp = a.at.call(a.rpc.list_prompts(req)).await?;
    let prompts: Vec<EntryJson> = resp
        .prompts
        .into_iter()
        .map(|p| EntryJson {
            name: p.name,
            description: p.description,
            server: p.server,
        })
        .collect();
    ctx.emit(&prompts, || entries_text(&prompts, "No prompts."))
}

/// The parts of an MCP `Tool` definition `usage` shows. Schemas stay raw so their key
/// order (the author's) survives.
#[derive(Deserialize)]
struct ToolDefinition {
    #[serde(rename = "inputSchema")]
    input_schema: Option<Box<RawValue>>,
    #[serde(rename = "outputSchema")]
    output_schema: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct UsageJson<'a> {
    name: &'a str,
    server: &'a str,
    description: &'a str,
    input_schema: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_schema: Option<&'a RawValue>,
}

pub async fn usage(ctx: &Ctx, args: ToolArg) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let tool =
        a.at.call(a.rpc.get_tool(pb::GetToolRequest { name: args.tool }))
            .await?;
    let def: ToolDefinition = serde_json::from_str(&tool.definition_json).map_err(|e| {
        CliError::Other(format!(
            "the control plane returned an unreadable definition for '{}': {e}",
            tool.name
        ))
    })?;
    let json = UsageJson {
        name: &tool.name,
        server: &tool.server,
        description: &tool.description,
        input_schema: def.input_schema.as_deref(),
        output_schema: def.output_schema.as_deref(),
    };
    ctx.emit(&json, || usage_text(&tool, &def))
}

fn usage_text(tool: &pb::ToolInfo, def: &ToolDefinition) -> String {
    let mut t = format!("{}  (server: {})\n", tool.name, tool.server);
    if !tool.description.trim().is_empty() {
        t.push('\n');
        t.push_str(tool.description.trim());
        t.push('\n');
    }
    let schema = |raw: &RawValue| pretty_json(raw.get()).unwrap_or_else(|_| raw.get().to_owned());
    match &def.input_schema {
        Some(s) => t.push_str(&format!("\nInput schema:\n{}\n", schema(s))),
        None => t.push_str("\nInput schema: none (call it with no arguments)\n"),
    }
    if let Some(s) = &def.output_schema {
        t.push_str(&format!("\nOutput schema:\n{}\n", schema(s)));
    }
    t.push_str(&format!(
        "\nCall it with: canopy invoke {} --input '{{...}}'",
        tool.name
    ));
    t
}

/// The parts of a `CallToolResult` text output renders.
#[derive(Deserialize, Default)]
struct CallToolResult {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(rename = "structuredContent")]
    structured_content: Option<Value>,
    #[serde(rename = "isError", default)]
    is_error: bool,
}

pub async fn invoke(ctx: &Ctx, args: InvokeArgs) -> Result<(), CliError> {
    let arguments_json = match &args.input {
        None => String::new(),
        Some(raw) => {
            let text = read_arg_source(raw)?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("--input is not valid JSON: {e}")))?;
            if !v.is_object() {
                return Err(CliError::usage(
                    "--input must be a JSON object, e.g. '{\"query\": \"canopy\"}'",
                ));
            }
            text
        }
    };
    let mut a = ctx.admin()?;
    let req = pb::InvokeToolRequest {
        name: args.tool.clone(),
        arguments_json,
    };
    let resp =
        a.at.call_within(INVOKE_DEADLINE, a.rpc.invoke_tool(req))
            .await?;
    let parsed: Option<CallToolResult> = serde_json::from_str(&resp.result_json).ok();
    match ctx.format {
        // Exactly as received: scripts get the upstream's CallToolResult, unknown fields and all.
        Format::Json => output::print(resp.result_json.trim_end()),
        Format::Text => match &parsed {
            Some(r) => output::print(&render_result(r)),
            None => output::print(&resp.result_json),
        },
    }
    if parsed.is_some_and(|r| r.is_error) {
        return Err(CliError::ToolError(args.tool));
    }
    Ok(())
}

/// Text contents as they are; other content kinds as one descriptive line each.
fn render_result(r: &CallToolResult) -> String {
    let mut parts: Vec<String> = r.content.iter().map(render_content).collect();
    if parts.is_empty() {
        if let Some(s) = &r.structured_content {
            parts.push(serde_json::to_string_pretty(s).unwrap_or_default());
        }
    }
    parts.join("\n")
}

fn render_content(c: &Value) -> String {
    let s = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or("");
    let size = |key: &str| {
        c.get(key)
            .and_then(Value::as_str)
            .map_or(0, |b| b.len() / 4 * 3)
    };
    match s("type") {
        "text" => s("text").to_owned(),
        "image" => format!("[image: {}, about {} bytes]", s("mimeType"), size("data")),
        "audio" => format!("[audio: {}, about {} bytes]", s("mimeType"), size("data")),
        "resource_link" => format!("[resource link: {}]", s("uri")),
        "resource" => {
            let res = c.get("resource");
            let field = |k: &str| res.and_then(|r| r.get(k)).and_then(Value::as_str);
            match field("text") {
                Some(text) => text.to_owned(),
                None => format!("[resource: {}]", field("uri").unwrap_or("")),
            }
        }
        _ => c.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn renders_content_kinds() {
        let r: CallToolResult = serde_json::from_str(
            r#"{"content":[{"type":"text","text":"hello"},{"type":"image","mimeType":"image/png","data":"AAAA"},
               {"type":"resource","resource":{"uri":"file:///a","text":"body"}},
               {"type":"resource_link","uri":"file:///b","name":"b"}],"isError":false}"#,
        )
        .unwrap();
        assert_eq!(
            render_result(&r),
            "hello\n[image: image/png, about 3 bytes]\nbody\n[resource link: file:///b]"
        );
        let s: CallToolResult =
            serde_json::from_str(r#"{"content":[],"structuredContent":{"n":1}}"#).unwrap();
        assert_eq!(render_result(&s), "{\n  \"n\": 1\n}");
        let e: CallToolResult =
            serde_json::from_str(r#"{"content":[{"type":"text","text":"bad"}],"isError":true}"#)
                .unwrap();
        assert!(e.is_error);
    }

    #[test]
    fn usage_text_preserves_schema_order() {
        let tool = pb::ToolInfo {
            name: "gh__search".into(),
            server: "gh".into(),
            description: "Search things.".into(),
            definition_json:
                r#"{"name":"search","inputSchema":{"type":"object","properties":{"q":{},"a":{}}}}"#
                    .into(),
        };
        let def: ToolDefinition = serde_json::from_str(&tool.definition_json).unwrap();
        let t = usage_text(&tool, &def);
        assert!(
            t.starts_with("gh__search  (server: gh)\n\nSearch things.\n"),
            "{t}"
        );
        let q = t.find("\"q\"").unwrap();
        let a = t.find("\"a\"").unwrap();
        assert!(q < a, "{t}");
        let json = serde_json::to_value(UsageJson {
            name: &tool.name,
            server: &tool.server,
            description: &tool.description,
            input_schema: def.input_schema.as_deref(),
            output_schema: None,
        })
        .unwrap();
        assert_eq!(json["input_schema"]["type"], "object");
        assert!(json.get("output_schema").is_none());
    }
}
