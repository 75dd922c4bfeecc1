//! The spans of one MCP request: the SERVER span (the request as the data plane answered
//! it) and a CLIENT span per upstream call, its child. Attribute names follow the
//! OpenTelemetry MCP semantic conventions; attributes are only built for a sampled span.

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::Telemetry;

/// The caller's trace context, as the audit recorder read it from `traceparent`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parent {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
}

impl Parent {
    /// From a valid `traceparent`'s parts (lowercase hex, checked by the caller).
    pub(crate) fn from_hex(trace_id: &str, span_id: &str, flags: &str) -> Option<Self> {
        Some(Self {
            trace_id: TraceId::from_hex(trace_id).ok()?,
            span_id: SpanId::from_hex(span_id).ok()?,
            sampled: u8::from_str_radix(flags, 16).ok()? & 1 == 1,
        })
    }
}

/// What the finished request was, as the audit event has it.
pub(crate) struct RequestFields<'a> {
    pub method: &'a str,
    pub tool: &'a str,
    pub prompt: &'a str,
    pub resource_uri: &'a str,
    pub request_id: &'a str,
    pub protocol_version: &'a str,
    pub error_type: &'a str,
    pub client_address: &'a str,
    pub principal: Option<String>,
    pub http_status: u32,
}

/// The request's SERVER span.
pub(crate) struct ServerSpan {
    tel: Arc<Telemetry>,
    cx: Context,
}

fn traceparent(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// `"{method} {target}"`, or the method alone when there is no target.
fn span_name(method: &str, target: &str) -> String {
    let method = if method.is_empty() { "mcp" } else { method };
    if target.is_empty() {
        method.to_owned()
    } else {
        format!("{method} {target}")
    }
}

impl ServerSpan {
    /// Starts the span at `start`, a child of `parent` (else the root of a new trace).
    pub(crate) fn start(tel: &Arc<Telemetry>, parent: Option<Parent>, start: SystemTime) -> Self {
        let parent_cx = match parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                p.trace_id,
                p.span_id,
                if p.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let span = tel
            .tracer
            .span_builder("mcp")
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .start_with_context(&tel.tracer, &parent_cx);
        Self {
            tel: tel.clone(),
            cx: parent_cx.with_span(span),
        }
    }

    /// The span's trace id and span id (hex), for the audit event.
    pub(crate) fn ids(&self) -> (String, String) {
        let span = self.cx.span();
        let sc = span.span_context();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    /// Starts the CLIENT span of a call to `server` at `url` (only its host and port are
    /// recorded: a URL may carry credentials in its query).
    pub(crate) fn upstream(
        &self,
        method: &str,
        target: &str,
        server: &str,
        url: &str,
    ) -> UpstreamSpan {
        let name = span_name(method, target);
        let sampled = self.cx.span().span_context().is_sampled();
        let mut builder = self
            .tel
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client);
        if sampled {
            let mut attrs = vec![
                KeyValue::new("mcp.method.name", method.to_owned()),
                KeyValue::new("canopy.server", server.to_owned()),
            ];
            if !target.is_empty() {
                let key = match method {
                    "tools/call" => "gen_ai.tool.name",
                    "prompts/get" => "gen_ai.prompt.name",
                    _ => "mcp.resource.uri",
                };
                attrs.push(KeyValue::new(key, target.to_owned()));
            }
            if let Ok(uri) = url.parse::<http::Uri>() {
                if let Some(host) = uri.host() {
                    attrs.push(KeyValue::new("server.address", host.to_owned()));
                    if let Some(port) = uri.port_u16() {
                        attrs.push(KeyValue::new("server.port", i64::from(port)));
                    }
                }
            }
            builder = builder.with_attributes(attrs);
        }
        let span = builder.start_with_context(&self.tel.tracer, &self.cx);
        let traceparent = traceparent(opentelemetry::trace::Span::span_context(&span));
        UpstreamSpan {
            cx: Context::new().with_span(span),
            traceparent,
        }
    }

    /// Names, attributes and ends the span with what the request turned out to be.
    pub(crate) fn end(self, f: &RequestFields<'_>) {
        let span = self.cx.span();
        if span.is_recording() {
            let (target_key, target) = if !f.tool.is_empty() {
                ("gen_ai.tool.name", f.tool)
            } else if !f.prompt.is_empty() {
                ("gen_ai.prompt.name", f.prompt)
            } else {
                ("mcp.resource.uri", f.resource_uri)
            };
            span.update_name(span_name(f.method, target));
            let mut attrs = Vec::with_capacity(12);
            let put = |attrs: &mut Vec<KeyValue>, k: &'static str, v: &str| {
                if !v.is_empty() {
                    attrs.push(KeyValue::new(k, v.to_owned()));
                }
            };
            put(&mut attrs, "mcp.method.name", f.method);
            put(&mut attrs, target_key, target);
            put(&mut attrs, "jsonrpc.request.id", f.request_id);
            put(&mut attrs, "mcp.protocol.version", f.protocol_version);
            put(&mut attrs, "error.type", f.error_type);
            put(&mut attrs, "network.transport", "tcp");
            match f.client_address.parse::<SocketAddr>() {
                Ok(peer) => {
                    put(&mut attrs, "client.address", &peer.ip().to_string());
                    attrs.push(KeyValue::new("client.port", i64::from(peer.port())));
                }
                Err(_) => put(&mut attrs, "client.address", f.client_address),
            }
            if let Some(p) = &f.principal {
                put(&mut attrs, "canopy.principal", p);
            }
            if f.http_status != 0 {
                attrs.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(f.http_status),
                ));
            }
            span.set_attributes(attrs);
            if !f.error_type.is_empty() {
                span.set_status(Status::error(f.error_type.to_owned()));
            }
        }
        span.end();
    }
}

/// The CLIENT span of one upstream call, and the context the call carries.
pub(crate) struct UpstreamSpan {
    cx: Context,
    traceparent: String,
}

impl UpstreamSpan {
    /// `00-<trace>-<this span>-<flags>`: for the `traceparent` header and `_meta`.
    pub(crate) fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// Ends the span: `Ok` with whether the result was a tool error, or the failure's
    /// short stable word.
    pub(crate) fn end(self, outcome: Result<bool, &str>) {
        let span = self.cx.span();
        if span.is_recording() {
            let (word, error) = match outcome {
                Ok(false) => ("ok", None),
                Ok(true) => ("tool_error", Some("tool_error")),
                Err(e) => ("error", Some(e)),
            };
            span.set_attribute(KeyValue::new("canopy.upstream.outcome", word));
            if let Some(e) = error {
                span.set_attribute(KeyValue::new("error.type", e.to_owned()));
                span.set_status(Status::error(e.to_owned()));
            }
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        assert_eq!(span_name("tools/call", "echo"), "tools/call echo");
        assert_eq!(span_name("tools/list", ""), "tools/list");
        assert_eq!(span_name("", ""), "mcp");
    }

    #[test]
    fn parent_reads_the_sampled_flag() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        let s = "00f067aa0ba902b7";
        assert!(Parent::from_hex(t, s, "01").is_some_and(|p| p.sampled));
        assert!(Parent::from_hex(t, s, "00").is_some_and(|p| !p.sampled));
        assert!(Parent::from_hex(t, s, "zz").is_none());
    }
}
