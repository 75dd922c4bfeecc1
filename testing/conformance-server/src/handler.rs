//! The conformance fixture's MCP surface: the tools, prompts and resources that the official
//! conformance suite's content scenarios call, with the names and results of the suite's reference
//! "everything" server (`examples/servers/typescript/everything-server.ts` in the suite's
//! repository).
//!
//! Results are written as JSON literals and deserialized into rmcp's types, so they read like the
//! reference server's and nothing in them depends on rmcp's constructors.

// rmcp marks logging deprecated (SEP-2577), but the handshake-era scenarios still exercise
// `logging/setLevel` and log notifications, so this fixture must serve them.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ProgressToken, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// A 1×1 PNG, the reference server's `TEST_IMAGE_BASE64`.
pub const TEST_IMAGE_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file, the reference server's `TEST_AUDIO_BASE64`.
pub const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

#[derive(Debug, Clone)]
pub struct Conformance {
    name: String,
}

impl Conformance {
    pub fn new(name: String) -> Self {
        Self { name }
    }
}

/// Our own literals always match rmcp's types; a mismatch is a bug in this file, reported to the
/// client as an internal error rather than a panic.
fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| {
        ErrorData::internal_error(format!("fixture literal does not parse: {e}"), None)
    })
}

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

fn tools() -> Value {
    json!([
        {"name": "test_simple_text", "description": "Tests simple text content response", "inputSchema": empty_schema()},
        {"name": "test_image_content", "description": "Tests image content response", "inputSchema": empty_schema()},
        {"name": "test_audio_content", "description": "Tests audio content response", "inputSchema": empty_schema()},
        {"name": "test_embedded_resource", "description": "Tests embedded resource content response", "inputSchema": empty_schema()},
        {"name": "test_multiple_content_types", "description": "Tests response with multiple content types (text, image, resource)", "inputSchema": empty_schema()},
        {"name": "test_tool_with_logging", "description": "Tests tool that emits log messages during execution", "inputSchema": empty_schema()},
        {"name": "test_tool_with_progress", "description": "Tests tool that reports progress notifications", "inputSchema": empty_schema()},
        {"name": "test_error_handling", "description": "Tests error response handling", "inputSchema": empty_schema()},
        {"name": "test_structured_content", "description": "Returns structuredContent with an outputSchema",
         "inputSchema": empty_schema(),
         "outputSchema": {"type": "object", "properties": {"value": {"type": "integer"}, "label": {"type": "string"}}, "required": ["value", "label"]}},
        {"name": "json_schema_2020_12_tool",
         "description": "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
         "inputSchema": {
             "$schema": "https://json-schema.org/draft/2020-12/schema",
             "type": "object",
             "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
             "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
             "additionalProperties": false
         }}
    ])
}

fn text_content(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn image_content() -> Value {
    json!({"type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png"})
}

fn prompts() -> Value {
    json!([
        {"name": "test_simple_prompt", "title": "Simple Test Prompt", "description": "A simple prompt without arguments"},
        {"name": "test_prompt_with_arguments", "title": "Prompt With Arguments", "description": "A prompt with required arguments",
         "arguments": [
             {"name": "arg1", "description": "First test argument", "required": true},
             {"name": "arg2", "description": "Second test argument", "required": true}
         ]},
        {"name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource", "description": "A prompt that includes an embedded resource",
         "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
        {"name": "test_prompt_with_image", "title": "Prompt With Image", "description": "A prompt that includes image content"}
    ])
}

fn resources() -> Value {
    json!([
        {"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource",
         "description": "A static text resource for testing", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "title": "Static Binary Resource",
         "description": "A static binary resource (image) for testing", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "title": "Watched Resource",
         "description": "A resource that auto-updates every 3 seconds", "mimeType": "text/plain"}
    ])
}

fn str_arg<'a>(args: &'a Option<rmcp::model::JsonObject>, key: &str) -> &'a str {
    args.as_ref()
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl ServerHandler for Conformance {
    fn get_info(&self) -> ServerConfig {
        // Built from JSON: the builder marks `logging` deprecated (SEP-2577), yet the handshake-era
        // scenarios still call `logging/setLevel`.
        let capabilities: ServerCapabilities = serde_json::from_value(json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "logging": {},
            "completions": {}
        }))
        .unwrap_or_default();
        ServerConfig::new(capabilities).with_server_info(Implementation::new(
            self.name.clone(),
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        from_json(json!({"tools": tools()}))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let result = match request.name.as_ref() {
            "test_simple_text" => {
                json!({"content": [text_content("This is a simple text response for testing.")]})
            }
            "test_image_content" => json!({"content": [image_content()]}),
            "test_audio_content" => json!({"content": [
                {"type": "audio", "data": TEST_AUDIO_BASE64, "mimeType": "audio/wav"}
            ]}),
            "test_embedded_resource" => json!({"content": [{"type": "resource", "resource": {
                "uri": "test://embedded-resource", "mimeType": "text/plain",
                "text": "This is an embedded resource content."
            }}]}),
            "test_multiple_content_types" => json!({"content": [
                text_content("Multiple content types test:"),
                image_content(),
                {"type": "resource", "resource": {
                    "uri": "test://mixed-content-resource", "mimeType": "application/json",
                    "text": "{\"test\":\"data\",\"value\":123}"
                }}
            ]}),
            "test_tool_with_logging" => {
                for (i, message) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let param: LoggingMessageNotificationParam =
                        from_json(json!({"level": "info", "data": message}))?;
                    if let Err(e) = context.peer.notify_logging_message(param).await {
                        tracing::warn!(error = %e, "log notification not delivered");
                    }
                }
                json!({"content": [text_content("Tool with logging executed successfully")]})
            }
            "test_tool_with_progress" => {
                let token = context.meta.get_progress_token();
                let echoed = match &token {
                    Some(t) => serde_json::to_value(t).unwrap_or(Value::Null),
                    None => json!(0),
                };
                if let Some(token) = token {
                    for (i, step) in [0u32, 50, 100].into_iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        let param = ProgressNotificationParam::new(
                            ProgressToken::clone(&token),
                            f64::from(step),
                        )
                        .with_total(100.0)
                        .with_message(format!("Completed step {step} of 100"));
                        if let Err(e) = context.peer.notify_progress(param).await {
                            tracing::warn!(error = %e, "progress notification not delivered");
                            break;
                        }
                    }
                }
                let text = match echoed {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                json!({"content": [text_content(&text)]})
            }
            "test_error_handling" => json!({
                "content": [text_content("This tool intentionally returns an error for testing")],
                "isError": true
            }),
            "test_structured_content" => json!({
                "content": [text_content("{\"value\":42,\"label\":\"answer\"}")],
                "structuredContent": {"value": 42, "label": "answer"}
            }),
            "json_schema_2020_12_tool" => {
                let args = Value::Object(request.arguments.clone().unwrap_or_default());
                json!({"content": [text_content(&format!(
                    "JSON Schema 2020-12 tool called with: {args}"
                ))]})
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Tool {other} not found"),
                    None,
                ))
            }
        };
        Ok(from_json::<CallToolResult>(result)?.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        from_json(json!({"prompts": prompts()}))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = &request.arguments;
        let messages = match request.name.as_str() {
            "test_simple_prompt" => json!([
                {"role": "user", "content": text_content("This is a simple prompt for testing.")}
            ]),
            "test_prompt_with_arguments" => json!([
                {"role": "user", "content": text_content(&format!(
                    "Prompt with arguments: arg1='{}', arg2='{}'",
                    str_arg(args, "arg1"),
                    str_arg(args, "arg2")
                ))}
            ]),
            "test_prompt_with_embedded_resource" => json!([
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": str_arg(args, "resourceUri"), "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."
                }}},
                {"role": "user", "content": text_content("Please process the embedded resource above.")}
            ]),
            "test_prompt_with_image" => json!([
                {"role": "user", "content": image_content()},
                {"role": "user", "content": text_content("Please analyze the image above.")}
            ]),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Prompt {other} not found"),
                    None,
                ))
            }
        };
        Ok(from_json::<GetPromptResult>(json!({"messages": messages}))?.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        from_json(json!({"resources": resources()}))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from_json(json!({"resourceTemplates": [{
            "uriTemplate": "test://template/{id}/data", "name": "template",
            "title": "Resource Template",
            "description": "A resource template with parameter substitution",
            "mimeType": "application/json"
        }]}))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => json!([{"uri": uri, "mimeType": "text/plain",
                "text": "This is the content of the static text resource."}]),
            "test://static-binary" => {
                json!([{"uri": uri, "mimeType": "image/png", "blob": TEST_IMAGE_BASE64}])
            }
            "test://watched-resource" => json!([{"uri": uri, "mimeType": "text/plain",
                "text": "Watched resource content"}]),
            _ => match uri
                .strip_prefix(TEMPLATE_PREFIX)
                .and_then(|rest| rest.strip_suffix(TEMPLATE_SUFFIX))
                .filter(|id| !id.is_empty() && !id.contains('/'))
            {
                Some(id) => {
                    let text = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                    json!([{"uri": uri, "mimeType": "application/json", "text": text.to_string()}])
                }
                // SEP-2164: an unknown resource is Invalid Params, not an empty `contents`.
                None => {
                    return Err(ErrorData::invalid_params(
                        format!("Resource {uri} not found"),
                        Some(json!({"uri": uri})),
                    ))
                }
            },
        };
        Ok(from_json::<ReadResourceResult>(json!({"contents": contents}))?.into())
    }

    async fn subscribe(
        &self,
        _request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn unsubscribe(
        &self,
        _request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        from_json(json!({"completion": {"values": [], "total": 0, "hasMore": false}}))
    }
}
