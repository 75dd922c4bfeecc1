//! The spans of one MCP request: the SERVER span (the request as the data plane answered
//! it) and a CLIENT span per upstream call, its child. Attribute names follow the
//! OpenTelemetry MCP semantic conventions; attributes are only built for a sampled span.
//!
//! The sampling decision is taken here, before the SDK sees the request: an unsampled
//! request (99 in 100 at `--otlp-sampling 0.01`) builds no SDK span, context or attribute
//! at all — its ids are drawn here, and the context the upstream receives is written from
//! them on the stack. Only a sampled request starts SDK spans, with those same ids and the
//! decision handed over, so the SDK does not sample again.

use opentelemetry::trace::{
    SamplingDecision, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{ShouldSample as _, Span as SdkSpan};
use rand::RngCore;
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

/// The request's SERVER span: its ids always, the SDK's span only when sampled.
pub(crate) struct ServerSpan {
    trace_id: TraceId,
    span_id: SpanId,
    /// Whether the caller sent a trace context (header or `_meta`).
    has_parent: bool,
    /// `Some` when sampled: the SDK span inside its context (the CLIENT span's parent).
    recording: Option<(Arc<Telemetry>, Context)>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    put_hex(out, bytes);
    // Only ASCII hex digits were written.
    String::from_utf8_lossy(out).into_owned()
}

/// A `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`) built on the stack.
#[derive(Clone, Copy)]
pub(crate) struct TraceParent([u8; 55]);

impl TraceParent {
    fn new(trace_id: TraceId, span_id: SpanId, sampled: bool) -> Self {
        let mut b = *b"00-00000000000000000000000000000000-0000000000000000-00";
        put_hex(&mut b[3..35], &trace_id.to_bytes());
        put_hex(&mut b[36..52], &span_id.to_bytes());
        if sampled {
            b[54] = b'1';
        }
        Self(b)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII: digits, hex and dashes written above.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// New random ids (never all zeros, which W3C reserves for "invalid").
fn new_ids() -> (TraceId, SpanId) {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    trace.copy_from_slice(&raw[..16]);
    span.copy_from_slice(&raw[16..]);
    if trace == [0; 16] {
        trace[15] = 1;
    }
    if span == [0; 8] {
        span[7] = 1;
    }
    (TraceId::from_bytes(trace), SpanId::from_bytes(span))
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
    /// Starts the span at `start`, a child of `parent` (else the root of a new trace):
    /// decides sampling with the tracer's sampler, and starts an SDK span only when sampled.
    pub(crate) fn start(tel: &Arc<Telemetry>, parent: Option<Parent>, start: SystemTime) -> Self {
        let (new_trace, span_id) = new_ids();
        // A remote parent's context is built only when there is one (the sampler reads it).
        let parent_cx = parent.map(|p| {
            Context::new().with_remote_span_context(SpanContext::new(
                p.trace_id,
                p.span_id,
                if p.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            ))
        });
        let trace_id = parent.map_or(new_trace, |p| p.trace_id);
        let decision = tel.sampler.should_sample(
            parent_cx.as_ref(),
            trace_id,
            "mcp",
            &SpanKind::Server,
            &[],
            &[],
        );
        let recording = if decision.decision == SamplingDecision::Drop {
            None
        } else {
            let parent_cx = parent_cx.unwrap_or_default();
            let mut builder = tel
                .tracer
                .span_builder("mcp")
                .with_kind(SpanKind::Server)
                .with_start_time(start)
                .with_trace_id(trace_id)
                .with_span_id(span_id);
            // Decided above: the SDK must not draw again (the same ratio, the same answer,
            // but twice the work).
            builder.sampling_result = Some(decision);
            let span = builder.start_with_context(&tel.tracer, &parent_cx);
            Some((tel.clone(), parent_cx.with_span(span)))
        };
        Self {
            trace_id,
            span_id,
            has_parent: parent.is_some(),
            recording,
        }
    }

    /// Whether the request is sampled (an SDK span records it).
    pub(crate) fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// The span's trace id and span id (hex), for the audit event.
    pub(crate) fn ids(&self) -> (String, String) {
        (
            hex(&self.trace_id.to_bytes()),
            hex(&self.span_id.to_bytes()),
        )
    }

    /// Starts the CLIENT span of a call to `server` at `url` (only its host and port are
    /// recorded: a URL may carry credentials in its query). Unsampled, no span is built:
    /// the call carries this SERVER span's context, not sampled — or nothing at all when
    /// the trace is this data plane's own (see [`UpstreamSpan::traceparent`]).
    pub(crate) fn upstream(
        &self,
        method: &str,
        target: &str,
        server: &str,
        url: &str,
    ) -> UpstreamSpan {
        let Some((tel, cx)) = &self.recording else {
            return UpstreamSpan {
                span: None,
                traceparent: self
                    .has_parent
                    .then(|| TraceParent::new(self.trace_id, self.span_id, false)),
            };
        };
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
        let span = tel
            .tracer
            .span_builder(span_name(method, target))
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(&tel.tracer, cx);
        let sc = opentelemetry::trace::Span::span_context(&span);
        let traceparent = TraceParent::new(sc.trace_id(), sc.span_id(), sc.is_sampled());
        UpstreamSpan {
            span: Some(span),
            traceparent: Some(traceparent),
        }
    }

    /// Names, attributes and ends the span with what the request turned out to be.
    pub(crate) fn end(self, f: &RequestFields<'_>) {
        let Some((_, cx)) = self.recording else {
            return;
        };
        let span = cx.span();
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

/// The CLIENT span of one upstream call (sampled requests only), and the context the call
/// carries.
pub(crate) struct UpstreamSpan {
    span: Option<SdkSpan>,
    traceparent: Option<TraceParent>,
}

impl UpstreamSpan {
    /// `00-<trace>-<span>-<flags>`, for the `traceparent` header and `_meta`: the CLIENT
    /// span's when sampled; the SERVER span's with flags `00` when the caller sent a context
    /// that is not sampled (W3C: a received context is passed on); `None` when the trace is
    /// this data plane's own and not sampled. Nothing recorded it, so there is no span for
    /// an upstream to join; an upstream that traces starts its own root (as it would for a
    /// caller without tracing), and the call's params and headers go out as the client sent
    /// them — no `_meta` rewrite, no extra header for 99% of calls at sampling 0.01.
    pub(crate) fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_ref().map(TraceParent::as_str)
    }

    /// Ends the span: `Ok` with whether the result was a tool error, or the failure's
    /// short stable word.
    pub(crate) fn end(self, outcome: Result<bool, &str>) {
        use opentelemetry::trace::Span as _;
        let Some(mut span) = self.span else { return };
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
    fn traceparent_is_written_like_w3c_says() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID);
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID);
        assert_eq!(
            TraceParent::new(t, s, true).as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            TraceParent::new(t, s, false).as_str(),
            format!("00-{t}-{s}-00")
        );
        let (t, s) = new_ids();
        assert_ne!((t, s), (TraceId::INVALID, SpanId::INVALID));
        assert_eq!(hex(&t.to_bytes()), t.to_string());
        assert_eq!(hex(&s.to_bytes()), s.to_string());
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
