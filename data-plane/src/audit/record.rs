//! The per-request recorder: the handler tells it what it learns (who, which method, which
//! target, how it ended) and the event is built and queued in one place — when the
//! recorder is dropped, i.e. when the response has left (or, for a relayed SSE stream,
//! when the stream ends). With OTLP tracing on the recorder also carries the request's
//! SERVER span (`telemetry/`), ended in the same place from the same fields. With the audit
//! trail and tracing off the recorder is empty and every call is a branch on `None`.

use axum::response::Response;
use canopy_mcp::jsonrpc::ErrorObject;
use canopy_proto::v1::{self as pb, AuditOutcome, AuditPayload};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{payload, trace, Audit};
use crate::identity::SignedIn;
use crate::metrics::Metrics;
use crate::telemetry::{Parent, RequestFields, ServerSpan, Telemetry, UpstreamSpan};

/// The most bytes of a client-chosen text (method, tool name, URI, request id, …) an event
/// keeps: a 3 MB method name must not become a 3 MB event in a queue of thousands.
const FIELD_MAX_BYTES: usize = 512;

/// `s` cut to [`FIELD_MAX_BYTES`] on a character boundary, `…` marking the cut.
fn clip(s: &str) -> String {
    if s.len() <= FIELD_MAX_BYTES {
        return s.to_owned();
    }
    let mut end = FIELD_MAX_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(&s[..end]);
    out.push('…');
    out
}

/// Who made the request, as the auth step found it.
pub(crate) enum Principal {
    Client(Arc<str>),
    SignedIn(Arc<SignedIn>),
    Anonymous,
}

/// How a request ended when it did not end well, as the failure mapping classifies it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    pub outcome: AuditOutcome,
    /// `error.type`: a short stable word.
    pub error_type: &'static str,
    pub jsonrpc_code: i64,
}

/// Empty when the audit trail is off.
#[derive(Default)]
pub(crate) struct Recorder(Option<Box<Pending>>);

struct Pending {
    /// `None` when only tracing is on.
    audit: Option<Arc<Audit>>,
    /// `None` when only the audit trail is on.
    telemetry: Option<Arc<Telemetry>>,
    /// The caller's trace context (read only with tracing on).
    parent: Option<Parent>,
    /// Started once the caller's trace context is known (after `_meta` is read).
    span: Option<ServerSpan>,
    started: Instant,
    started_at: SystemTime,
    ev: pb::McpRequestEvent,
    payload: AuditPayload,
    /// Set once the outcome is known from a failure or a result (else the status decides).
    outcome: Option<AuditOutcome>,
    /// Counted by a relayed stream as it goes.
    bytes_out: u64,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    traceparent: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Arguments<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Recorder {
    /// Starts recording a request to `/mcp` (`target` `None`) or `/servers/<target>/mcp`,
    /// or nothing without `audit`.
    pub(crate) fn start(
        audit: Option<&Arc<Audit>>,
        telemetry: Option<&Arc<Telemetry>>,
        target: Option<&str>,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Self {
        if audit.is_none() && telemetry.is_none() {
            return Self(None);
        }
        let version = headers
            .get(canopy_mcp::protocol::HEADER_PROTOCOL_VERSION)
            .and_then(|v| v.to_str().ok())
            .map(|v| clip(v.trim()))
            .unwrap_or_default();
        let header = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(trace::parse);
        let trace_id = header
            .map(|(trace, _, _)| trace.to_owned())
            .unwrap_or_default();
        let parent = header
            .filter(|_| telemetry.is_some())
            .and_then(|(t, s, f)| Parent::from_hex(t, s, f));
        // `data_plane` is filled by the shipper, off the request path.
        let ev = pb::McpRequestEvent {
            client_address: peer.map(|p| p.to_string()).unwrap_or_default(),
            endpoint: match target {
                None => "/mcp".to_owned(),
                Some(name) => clip(&format!("/servers/{name}/mcp")),
            },
            protocol_version: version,
            trace_id,
            ..Default::default()
        };
        Self(Some(Box::new(Pending {
            audit: audit.cloned(),
            telemetry: telemetry.cloned(),
            parent,
            span: None,
            started: Instant::now(),
            started_at: SystemTime::now(),
            ev,
            payload: AuditPayload::Off,
            outcome: None,
            bytes_out: 0,
        })))
    }

    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn principal(&mut self, who: impl FnOnce() -> Principal) {
        if let Some(p) = &mut self.0 {
            p.ev.principal = Some(pb::AuditPrincipal {
                kind: Some(match who() {
                    Principal::Client(name) => {
                        pb::audit_principal::Kind::McpClient(name.to_string())
                    }
                    Principal::SignedIn(s) => pb::audit_principal::Kind::Sso(pb::SsoPrincipal {
                        idp: s.idp.to_string(),
                        subject: clip(&s.subject),
                    }),
                    Principal::Anonymous => pb::audit_principal::Kind::Anonymous(true),
                }),
            });
        }
    }

    /// The version `initialize` settled on, when no header named one.
    pub(crate) fn negotiated(&mut self, version: &str) {
        if let Some(p) = &mut self.0 {
            if p.ev.protocol_version.is_empty() {
                p.ev.protocol_version = version.to_owned();
            }
        }
    }

    pub(crate) fn bytes_in(&mut self, n: usize) {
        if let Some(p) = &mut self.0 {
            p.ev.bytes_in = n as u64;
        }
    }

    /// A request (`id` set) or a notification (`id` `None`) with its method.
    pub(crate) fn message(&mut self, id: Option<&RawValue>, method: Option<&str>) {
        if let Some(p) = &mut self.0 {
            if let Some(id) = id {
                p.ev.request_id = clip(id.get());
            }
            if let Some(m) = method {
                p.ev.method = clip(m);
            }
        }
    }

    /// The SEP-414 `params._meta.traceparent`, used when no header carried one.
    /// With tracing on, the SERVER span starts here: its parent is known now.
    pub(crate) fn meta(&mut self, meta: Option<&RawValue>) {
        let Some(p) = &mut self.0 else { return };
        if let (Some(meta), true) = (meta, p.ev.trace_id.is_empty()) {
            if let Ok(m) = serde_json::from_str::<Meta<'_>>(meta.get()) {
                if let Some((t, s, f)) = m.traceparent.as_deref().and_then(trace::parse) {
                    p.ev.trace_id = t.to_owned();
                    if p.telemetry.is_some() {
                        p.parent = Parent::from_hex(t, s, f);
                    }
                }
            }
        }
        p.start_span();
    }

    /// The CLIENT span of a call to `server` at `url` (child of the request's span), with
    /// the trace context the call carries; `None` with tracing off.
    pub(crate) fn upstream_span(
        &mut self,
        method: &str,
        server: &str,
        url: &str,
    ) -> Option<UpstreamSpan> {
        let p = self.0.as_mut()?;
        p.start_span();
        let target = [&p.ev.tool, &p.ev.prompt, &p.ev.resource_uri]
            .into_iter()
            .find(|t| !t.is_empty())
            .map_or("", |t| t.as_str());
        let span = p.span.as_ref()?;
        Some(span.upstream(method, target, server, url))
    }

    /// The tool or prompt called (`tool` true for a tool), with the server it belongs to
    /// and that server's payload setting.
    pub(crate) fn target(&mut self, server: &str, tool: bool, name: &str, payload: AuditPayload) {
        if let Some(p) = &mut self.0 {
            p.ev.server = server.to_owned();
            if tool {
                p.ev.tool = clip(name);
            } else {
                p.ev.prompt = clip(name);
            }
            p.payload = p.payload_setting(payload);
        }
    }

    /// A request passed through to one server (resources, completions).
    pub(crate) fn server(&mut self, server: &str, uri: Option<&str>, payload: AuditPayload) {
        if let Some(p) = &mut self.0 {
            p.ev.server = server.to_owned();
            if let Some(u) = uri {
                p.ev.resource_uri = clip(u);
            }
            p.payload = p.payload_setting(payload);
        }
    }

    /// The call's arguments (`params.arguments`), kept per the server's setting.
    pub(crate) fn arguments(&mut self, params: Option<&RawValue>) {
        let Some(p) = &mut self.0 else { return };
        if p.payload == AuditPayload::Off {
            return;
        }
        let Some(args) = params
            .and_then(|raw| serde_json::from_str::<Arguments<'_>>(raw.get()).ok())
            .and_then(|a| a.arguments)
        else {
            return;
        };
        if let Some(kept) = payload::keep(p.payload, args.get(), p.max_payload_bytes()) {
            p.ev.arguments = kept;
            p.ev.payload = p.payload as i32;
        }
    }

    /// A call outside the caller's scope (answered like an unknown one, recorded as denied).
    pub(crate) fn out_of_scope(&mut self) {
        if let Some(p) = &mut self.0 {
            p.outcome = Some(AuditOutcome::Denied);
        }
    }

    /// A failure the data plane answered with.
    pub(crate) fn refused(&mut self, r: Refusal) {
        if let Some(p) = &mut self.0 {
            // A denial found earlier (out of scope) stays a denial.
            if p.outcome != Some(AuditOutcome::Denied) {
                p.outcome = Some(r.outcome);
            }
            p.ev.error_type = r.error_type.to_owned();
            p.ev.jsonrpc_error_code = i32::try_from(r.jsonrpc_code).unwrap_or(i32::MIN);
        }
    }

    /// What the upstream answered: a result (`isError` read for tool calls) or its error.
    pub(crate) fn upstream(&mut self, outcome: &Result<Box<RawValue>, ErrorObject>) {
        let Some(p) = &mut self.0 else { return };
        match outcome {
            Ok(result) => {
                let text = result.get();
                // Only a result where `"isError"` is followed by `true` is parsed (its top
                // level only): the usual `false` or absent costs a byte scan.
                if !p.ev.tool.is_empty() && may_be_error(text) && is_error(text) {
                    p.outcome = Some(AuditOutcome::ToolError);
                    p.ev.error_type = "tool_error".to_owned();
                } else {
                    p.outcome = Some(AuditOutcome::Ok);
                }
                if let Some(kept) = payload::keep(p.payload, text, p.max_payload_bytes()) {
                    p.ev.result = kept;
                    p.ev.payload = p.payload as i32;
                }
            }
            Err(e) => {
                p.outcome = Some(AuditOutcome::Error);
                p.ev.jsonrpc_error_code = i32::try_from(e.code).unwrap_or(i32::MIN);
                p.ev.error_type = e.code.to_string();
            }
        }
    }

    /// Whether the upstream's answer was recorded as a tool error (`isError: true`).
    pub(crate) fn tool_error(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|p| p.outcome == Some(AuditOutcome::ToolError))
    }

    /// Bytes of a relayed stream as they go out.
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some(p) = &mut self.0 {
            p.bytes_out += n as u64;
        }
    }

    /// The recorder of a response whose body is still to be produced (a relayed stream):
    /// it goes with the body and records when that ends.
    pub(crate) fn take(&mut self) -> Recorder {
        Recorder(self.0.take())
    }

    /// The response is built: its status and size finish the event, which is queued now —
    /// unless the body was handed a recorder of its own ([`Recorder::take`]).
    pub(crate) fn finish(mut self, resp: &Response) {
        if let Some(p) = &mut self.0 {
            p.ev.http_status = u32::from(resp.status().as_u16());
            if let Some(n) = http_body::Body::size_hint(resp.body()).exact() {
                p.bytes_out = n;
            }
        }
    }

    /// The status of a relayed stream (its head is sent before the body runs).
    pub(crate) fn status(&mut self, status: u16) {
        if let Some(p) = &mut self.0 {
            p.ev.http_status = u32::from(status);
        }
    }
}

/// Whether `"isError"` appears followed by `: true` anywhere (necessary for a top-level
/// `isError: true`, not sufficient).
fn may_be_error(result: &str) -> bool {
    const KEY: &str = "\"isError\"";
    let mut rest = result;
    while let Some(i) = rest.find(KEY) {
        rest = &rest[i + KEY.len()..];
        let after = rest.trim_start();
        if let Some(v) = after.strip_prefix(':') {
            if v.trim_start().starts_with('t') {
                return true;
            }
        }
    }
    false
}

fn is_error(result: &str) -> bool {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(rename = "isError", borrow, default)]
        is_error: Option<&'a RawValue>,
    }
    serde_json::from_str::<Top<'_>>(result)
        .ok()
        .and_then(|t| t.is_error)
        .is_some_and(|v| v.get().trim() == "true")
}

/// The outcome a status implies when nothing more specific was recorded.
fn outcome_of(status: u32) -> AuditOutcome {
    match status {
        200..=299 => AuditOutcome::Ok,
        401 | 403 => AuditOutcome::Denied,
        429 => AuditOutcome::Limited,
        _ => AuditOutcome::Error,
    }
}

/// The per-principal and per-tool series of one request.
fn observe(m: &Metrics, ev: &pb::McpRequestEvent, outcome: AuditOutcome, elapsed: Duration) {
    // `OUTCOMES` follows the enum from 1; unspecified counts as an error.
    let i = (outcome as usize).checked_sub(1).unwrap_or(2);
    match ev.principal.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(pb::audit_principal::Kind::McpClient(c)) => m.principals.observe(c, i, elapsed),
        Some(pb::audit_principal::Kind::Sso(s)) => {
            let key = format!("{}:{}", s.idp, s.subject);
            m.principals.observe(&key, i, elapsed);
        }
        _ => m.principals.observe("anonymous", i, elapsed),
    }
    // Only tools of the catalogue: names a client makes up must not take the cap's places.
    if !ev.tool.is_empty() && !ev.server.is_empty() && ev.error_type != "unknown_tool" {
        // The key on the stack when it fits (names are short): no allocation per call.
        let mut stack = [0u8; 256];
        let n = ev.server.len() + 1 + ev.tool.len();
        if let Some(buf) = stack.get_mut(..n) {
            buf[..ev.server.len()].copy_from_slice(ev.server.as_bytes());
            buf[ev.server.len()] = 1;
            buf[ev.server.len() + 1..].copy_from_slice(ev.tool.as_bytes());
            if let Ok(key) = std::str::from_utf8(buf) {
                m.tools.observe(key, i, elapsed);
            }
        } else {
            m.tools
                .observe(&format!("{}\u{1}{}", ev.server, ev.tool), i, elapsed);
        }
    }
}

impl Pending {
    /// Starts the SERVER span (once; with tracing on): the audit event takes its ids.
    fn start_span(&mut self) {
        let Some(tel) = &self.telemetry else { return };
        if self.span.is_some() {
            return;
        }
        let span = ServerSpan::start(tel, self.parent, self.started_at);
        let (trace_id, span_id) = span.ids();
        self.ev.trace_id = trace_id;
        self.ev.span_id = span_id;
        self.span = Some(span);
    }

    /// Payloads are kept for the audit trail only, never put on spans.
    fn payload_setting(&self, payload: AuditPayload) -> AuditPayload {
        if self.audit.is_some() {
            payload
        } else {
            AuditPayload::Off
        }
    }

    fn max_payload_bytes(&self) -> usize {
        self.audit
            .as_ref()
            .map_or(0, |a| a.settings.max_payload_bytes)
    }

    fn end_span(&mut self, ev: &pb::McpRequestEvent, outcome: AuditOutcome) {
        let Some(span) = self.span.take() else { return };
        if !span.is_recording() {
            // Unsampled: nothing to name or attribute (no field is copied for it).
            return;
        }
        // A failure the status alone decided is named by the status on the span.
        let status_word;
        let error_type = if ev.error_type.is_empty() && outcome != AuditOutcome::Ok {
            status_word = ev.http_status.to_string();
            &status_word
        } else {
            &ev.error_type
        };
        let principal = ev
            .principal
            .as_ref()
            .and_then(|p| p.kind.as_ref())
            .map(|k| match k {
                pb::audit_principal::Kind::McpClient(c) => c.clone(),
                pb::audit_principal::Kind::Sso(s) => format!("sso:{}:{}", s.idp, s.subject),
                pb::audit_principal::Kind::Anonymous(_) => "anonymous".to_owned(),
                pb::audit_principal::Kind::User(u) => format!("user:{u}"),
                pb::audit_principal::Kind::System(_) => "system".to_owned(),
            });
        span.end(&RequestFields {
            method: &ev.method,
            tool: &ev.tool,
            prompt: &ev.prompt,
            resource_uri: &ev.resource_uri,
            request_id: &ev.request_id,
            protocol_version: &ev.protocol_version,
            error_type,
            client_address: &ev.client_address,
            principal,
            http_status: ev.http_status,
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A request refused before its body was read still gets its span.
        self.start_span();
        let mut ev = std::mem::take(&mut self.ev);
        let outcome = self.outcome.unwrap_or_else(|| outcome_of(ev.http_status));
        ev.outcome = outcome as i32;
        self.end_span(&ev, outcome);
        let Some(audit) = self.audit.take() else {
            return;
        };
        let elapsed = self.started.elapsed();
        ev.duration_ms = elapsed.as_secs_f64() * 1e3;
        if let Some(m) = audit.metrics.get() {
            observe(m, &ev, outcome, elapsed);
        }
        ev.bytes_out = self.bytes_out;
        let ids = trace::Ids::new();
        if ev.span_id.is_empty() {
            ev.span_id = ids.span();
        }
        if ev.trace_id.is_empty() {
            ev.trace_id = ids.trace();
        }
        audit.submit(pb::AuditEvent {
            id: ids.event(),
            time_unix_nanos: unix_nanos(self.started_at),
            kind: Some(pb::audit_event::Kind::Request(ev)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_error_only_for_a_top_level_true() {
        for (text, want) in [
            (r#"{"content":[],"isError":true}"#, true),
            (r#"{"content":[], "isError" :  true }"#, true),
            (r#"{"content":[],"isError":false}"#, false),
            (r#"{"content":[]}"#, false),
            (
                r#"{"structuredContent":{"isError":true},"content":[]}"#,
                false,
            ),
            (
                r#"{"content":[{"type":"text","text":"\"isError\":true"}]}"#,
                false,
            ),
            (r#"{"isError":"true"}"#, false),
        ] {
            assert_eq!(may_be_error(text) && is_error(text), want, "{text}");
        }
    }

    #[test]
    fn status_decides_when_nothing_else_did() {
        assert_eq!(outcome_of(200), AuditOutcome::Ok);
        assert_eq!(outcome_of(202), AuditOutcome::Ok);
        assert_eq!(outcome_of(401), AuditOutcome::Denied);
        assert_eq!(outcome_of(403), AuditOutcome::Denied);
        assert_eq!(outcome_of(429), AuditOutcome::Limited);
        assert_eq!(outcome_of(413), AuditOutcome::Error);
        assert_eq!(outcome_of(503), AuditOutcome::Error);
    }

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(FIELD_MAX_BYTES);
        let c = clip(&long);
        assert!(c.len() <= FIELD_MAX_BYTES + '…'.len_utf8());
        assert!(c.ends_with('…'));
    }
}
