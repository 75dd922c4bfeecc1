//! The fixture's MCP surface: a fixed set of tools and one prompt.
//!
//! Written as a hand-rolled `ServerHandler` rather than with the `#[tool]` macros because the tool
//! list is partly dynamic (`--extra-tools N`) and `auth_header` needs the raw HTTP request parts.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, JsonObject, ListPromptsResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, Prompt, PromptArgument,
    PromptMessage, Role, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};

/// Per-process configuration shared by every connection's handler.
#[derive(Debug, Clone)]
pub struct Fixture {
    name: String,
    extra_tools: usize,
    /// Whether `trace_context` is listed (`--trace-tool`).
    trace_tool: bool,
}

impl Fixture {
    pub fn new(name: String, extra_tools: usize) -> Self {
        Self {
            name,
            extra_tools,
            trace_tool: false,
        }
    }

    /// Adds the `trace_context` tool: what W3C trace context this call arrived with.
    pub fn with_trace_tool(mut self, on: bool) -> Self {
        self.trace_tool = on;
        self
    }

    fn tools(&self) -> Vec<Tool> {
        let mut tools = vec![
            tool(
                "echo",
                "Echo the message back as text",
                json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
            ),
            tool(
                "add",
                "Add two numbers",
                json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
            ),
            tool(
                "slow",
                "Sleep for `ms` milliseconds, then answer \"done\"",
                json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}),
            ),
            tool(
                "fail",
                "Always answers with isError: true",
                json!({"type": "object", "properties": {}}),
            ),
            tool(
                "progress",
                "Send `steps` progress notifications (when a progressToken is given), then answer \"done\"",
                json!({"type": "object", "properties": {"steps": {"type": "integer", "minimum": 0}}, "required": ["steps"]}),
            ),
            tool(
                "auth_header",
                "Return the Authorization header this server received on this HTTP request, or \"none\"",
                json!({"type": "object", "properties": {}}),
            ),
        ];
        if self.trace_tool {
            tools.push(tool(
                "trace_context",
                "Return, as JSON text, the traceparent HTTP header and params._meta.traceparent this call arrived with (\"none\" for each absent)",
                json!({"type": "object", "properties": {}}),
            ));
        }
        for i in 0..self.extra_tools {
            tools.push(tool(
                format!("tool_{i}"),
                format!("Extra tool number {i}; answers its own name"),
                json!({"type": "object", "properties": {}}),
            ));
        }
        tools
    }
}

fn tool(name: impl Into<String>, description: impl Into<String>, schema: Value) -> Tool {
    let schema: JsonObject = match schema {
        Value::Object(map) => map,
        // Every schema above is an object literal; an empty object is a safe fallback anyway.
        _ => JsonObject::new(),
    };
    Tool::new(name.into(), description.into(), Arc::new(schema))
}

fn text_result(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

/// Argument problems are tool errors (`isError: true`), not protocol errors, as the MCP spec says.
fn arg_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

fn arg<'a>(args: &'a Option<JsonObject>, key: &str) -> Option<&'a Value> {
    args.as_ref().and_then(|a| a.get(key))
}

/// The error is the message for `arg_error`.
fn arg_u64(args: &Option<JsonObject>, key: &str) -> Result<u64, String> {
    arg(args, key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("argument `{key}` must be a non-negative integer"))
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new(
            self.name.clone(),
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = &request.arguments;
        match request.name.as_ref() {
            "echo" => match arg(args, "message").and_then(Value::as_str) {
                Some(message) => Ok(text_result(message)),
                None => Ok(arg_error("argument `message` must be a string")),
            },
            "add" => {
                let a = arg(args, "a").and_then(Value::as_f64);
                let b = arg(args, "b").and_then(Value::as_f64);
                match (a, b) {
                    (Some(a), Some(b)) => Ok(text_result(format_number(a + b))),
                    _ => Ok(arg_error("arguments `a` and `b` must be numbers")),
                }
            }
            "slow" => {
                let ms = match arg_u64(args, "ms") {
                    Ok(ms) => ms,
                    Err(e) => return Ok(arg_error(e)),
                };
                // Stop sleeping when the client cancels, so cancelled calls don't pile up.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(text_result("done")),
                    _ = context.ct.cancelled() => Err(ErrorData::internal_error("cancelled", None)),
                }
            }
            "fail" => Ok(arg_error("this tool always fails")),
            "progress" => {
                let steps = match arg_u64(args, "steps") {
                    Ok(steps) => steps,
                    Err(e) => return Ok(arg_error(e)),
                };
                if let Some(token) = context.meta.get_progress_token() {
                    for step in 1..=steps {
                        let param = ProgressNotificationParam::new(token.clone(), step as f64)
                            .with_total(steps as f64)
                            .with_message(format!("step {step} of {steps}"));
                        if let Err(e) = context.peer.notify_progress(param).await {
                            // The client went away; the result can't be delivered either.
                            tracing::warn!(error = %e, "progress notification not delivered");
                            break;
                        }
                    }
                }
                Ok(text_result("done"))
            }
            "auth_header" => {
                // The streamable HTTP transport puts the request's HTTP parts in the extensions;
                // over stdio there are none.
                let value = context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.headers.get(http::header::AUTHORIZATION))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_else(|| "none".to_owned());
                Ok(text_result(value))
            }
            "trace_context" if self.trace_tool => {
                let header = context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.headers.get("traceparent"))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_else(|| "none".to_owned());
                let meta = context
                    .meta
                    .get("traceparent")
                    .and_then(Value::as_str)
                    .unwrap_or("none");
                Ok(text_result(
                    json!({"header": header, "meta": meta}).to_string(),
                ))
            }
            other => match other
                .strip_prefix("tool_")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) if n < self.extra_tools => Ok(text_result(other.to_owned())),
                _ => Err(ErrorData::invalid_params(
                    format!("unknown tool: {other}"),
                    None,
                )),
            },
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompt = Prompt::new(
            "greeting",
            Some("Greet someone by name"),
            Some(vec![PromptArgument::new("name")
                .with_description("who to greet")
                .with_required(true)]),
        );
        Ok(ListPromptsResult::with_all_items(vec![prompt]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greeting" {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt: {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("world");
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Hello, {name}!"),
        )])
        .into())
    }
}

/// `2 + 3` should read "5", not "5.0", so integral sums print without a fraction.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}
