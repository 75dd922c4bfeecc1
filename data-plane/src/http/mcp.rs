//! `POST /mcp` and `POST /servers/<name>/mcp`: one stateless request → one response.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use canopy_mcp::jsonrpc::ErrorObject;
use canopy_mcp::protocol::{
    is_handshake_version, HANDSHAKE_VERSIONS, HEADER_PROTOCOL_VERSION, LATEST_HANDSHAKE_VERSION,
};
use canopy_mcp::upstream::{Call, CallLimits, Streamed, UpstreamError, UpstreamResponse};
use canopy_proto::v1::AuditPayload;
use http::header::ALLOW;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::value::RawValue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::auth;
use super::body;
use super::checks;
use super::envelope::{Envelope, Message, Params};
use super::modern;
use super::reply::{self, Echoed, Failure};
use super::stamp::{write_identified, write_stamped};
use super::stream;
use crate::app::DataPlane;
use crate::audit::{Principal, Recorder, Refusal};
use crate::json;
use crate::metrics::MethodLabel;
use crate::state::{Kind, Mode, Scope, Server, View};
use crate::telemetry::{self, UpstreamSpan};

enum Era<'h> {
    Handshake,
    /// The raw `MCP-Protocol-Version` value (`Err` when it is not valid text).
    Modern(Result<&'h str, ()>),
}

/// What the checks before the body establish.
struct Ctx<'h> {
    view: Arc<View>,
    /// `None` in development mode: everything is visible.
    /// The caller's scope (enterprise); `None` in development mode.
    scope: Option<Arc<Scope>>,
    /// Set on `/servers/<name>/mcp`.
    server: Option<Arc<Server>>,
    era: Era<'h>,
    accepts_sse: bool,
}

impl Ctx<'_> {
    fn modern(&self) -> bool {
        matches!(self.era, Era::Modern(_))
    }
}

/// Every response to `POST /mcp` and `POST /servers/<name>/mcp` leaves here, so the
/// request metrics and the audit event are recorded here, once.
pub(crate) async fn serve(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    peer: Option<SocketAddr>,
) -> Response {
    let mut rec = Recorder::start(
        dp.audit.as_ref(),
        dp.telemetry.as_ref(),
        target,
        headers,
        peer,
    );
    let (label, resp) = serve_inner(dp, target, headers, body, &mut rec).await;
    dp.state
        .metrics
        .record_request(label, resp.status().as_u16());
    rec.finish(&resp);
    resp
}

/// GET and DELETE on an MCP endpoint: stateless, so no stream to GET and no session to
/// DELETE (405, recorded like every answer on the endpoint).
pub(crate) fn not_allowed(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Response {
    let mut rec = Recorder::start(
        dp.audit.as_ref(),
        dp.telemetry.as_ref(),
        target,
        headers,
        peer,
    );
    let mut body = Vec::new();
    reply::write_error(
        &mut body,
        None,
        canopy_mcp::jsonrpc::code::INVALID_REQUEST,
        "Method Not Allowed: use POST",
        None,
    );
    let mut r = reply::json(StatusCode::METHOD_NOT_ALLOWED, body);
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    rec.refused(Refusal {
        outcome: canopy_proto::v1::AuditOutcome::Error,
        error_type: "method_not_allowed",
        jsonrpc_code: canopy_mcp::jsonrpc::code::INVALID_REQUEST,
    });
    rec.finish(&r);
    r
}

/// `f` as the client gets it, recorded for the audit trail.
fn fail(rec: &mut Recorder, f: Failure, id: Option<&RawValue>) -> Response {
    if rec.is_on() {
        rec.refused(f.refusal());
    }
    f.into_response(id)
}

async fn serve_inner(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    rec: &mut Recorder,
) -> (MethodLabel, Response) {
    let settings = &dp.settings;
    let ctx = match precheck(dp, target, headers, rec) {
        Ok(c) => c,
        Err(f) => {
            let resp = fail(rec, f, None);
            let resp = body::reject_unread(resp, body, settings.body_read_timeout).await;
            return (MethodLabel::Other, resp);
        }
    };
    let read = body::read(
        body,
        headers,
        settings.max_body_bytes,
        settings.body_read_timeout,
    );
    let bytes = match read.await {
        Ok(b) => b,
        Err(f) => {
            // The rest of the body (if any) is still on the connection.
            let mut resp = fail(rec, f, None);
            body::close(&mut resp);
            return (MethodLabel::Other, resp);
        }
    };
    rec.bytes_in(bytes.len());
    let msg = match Envelope::parse(&bytes).and_then(Envelope::classify) {
        Ok(m) => m,
        Err(f) => return (MethodLabel::Other, fail(rec, f, None)),
    };
    match msg {
        Message::NoReply { method } => {
            rec.message(None, method.as_deref());
            (
                method
                    .as_deref()
                    .map_or(MethodLabel::Notification, MethodLabel::of),
                reply::accepted(),
            )
        }
        Message::Request { id, method, params } => {
            let label = MethodLabel::of(&method);
            rec.message(Some(id), Some(&method));
            let resp = match request(dp, &ctx, headers, id, &method, params, rec).await {
                Ok(r) => r,
                Err(f) => fail(rec, f, Some(id)),
            };
            (label, resp)
        }
    }
}

fn precheck<'h>(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &'h HeaderMap,
    rec: &mut Recorder,
) -> Result<Ctx<'h>, Failure> {
    checks::origin(headers, &dp.settings.allowed_origins)?;
    checks::content_type(headers)?;
    let accepts_sse = checks::accept(headers)?;
    let view = dp.state.load_view().ok_or(Failure::NotReady)?;
    if let Some(max) = dp.settings.max_staleness {
        if dp.state.status.staleness() > max {
            return Err(Failure::Stale);
        }
    }
    let scope = match view.mode {
        Mode::Development => {
            rec.principal(|| Principal::Anonymous);
            None
        }
        Mode::Enterprise => Some(auth::authorize(dp, &view, headers, target, rec)?),
    };
    // Fail closed: no request is served whose audit event could not be kept.
    if dp.audit.as_ref().is_some_and(|a| a.refusing()) {
        return Err(Failure::AuditUnavailable);
    }
    let server = match target {
        None => None,
        Some(name) => {
            // A server outside the client's scope is as unknown as a missing one.
            let visible = view.catalog.server(name).filter(|s| {
                scope
                    .as_ref()
                    .is_none_or(|c| c.allow().touches_server(&s.name))
            });
            Some(
                visible
                    .ok_or_else(|| Failure::UnknownServer(Echoed::new(name)))?
                    .clone(),
            )
        }
    };
    let era = match headers.get(HEADER_PROTOCOL_VERSION) {
        None => Era::Handshake,
        Some(v) => match v.to_str() {
            Ok(s) if is_handshake_version(s.trim()) => Era::Handshake,
            Ok(s) => Era::Modern(Ok(s)),
            Err(_) => Era::Modern(Err(())),
        },
    };
    Ok(Ctx {
        view,
        scope,
        server,
        era,
        accepts_sse,
    })
}

async fn request(
    dp: &DataPlane,
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    id: &RawValue,
    method: &str,
    params: Option<&RawValue>,
    rec: &mut Recorder,
) -> Result<Response, Failure> {
    let parsed = Params::parse(params);
    rec.meta(parsed.as_ref().and_then(|p| p.meta));
    if let Era::Modern(hv) = ctx.era {
        modern::validate(headers, hv, method, parsed.as_ref())?;
    }
    match method {
        "initialize" if !ctx.modern() => Ok(initialize(dp, id, parsed.as_ref(), rec)),
        "ping" if !ctx.modern() => Ok(result(id, b"{}")),
        "server/discover" if ctx.modern() => Ok(result(id, &dp.wire.discover)),
        "tools/list" => Ok(list(dp, ctx, id, Kind::Tool)),
        "prompts/list" => Ok(list(dp, ctx, id, Kind::Prompt)),
        "tools/call" => forward(dp, ctx, id, Kind::Tool, params, parsed.as_ref(), rec).await,
        "prompts/get" => forward(dp, ctx, id, Kind::Prompt, params, parsed.as_ref(), rec).await,
        // Resources and completions are not in the catalogue: on one server's own endpoint they
        // pass through to it, for clients allowed the whole server.
        "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "completion/complete" => match &ctx.server {
            Some(server) if whole_server_allowed(ctx, server) => {
                if rec.is_on() {
                    let uri = parsed.as_ref().and_then(|p| p.uri).and_then(json::as_str);
                    rec.server(&server.name, uri.as_deref(), server.audit_payload());
                    rec.arguments(params);
                }
                relay(dp, ctx, id, server, method, params, rec).await
            }
            _ => Err(Failure::MethodNotFound {
                method: Echoed::new(method),
                modern: ctx.modern(),
            }),
        },
        _ => Err(Failure::MethodNotFound {
            method: Echoed::new(method),
            modern: ctx.modern(),
        }),
    }
}

fn result(id: &RawValue, result: &[u8]) -> Response {
    let mut out = Vec::with_capacity(40 + result.len());
    reply::open_result(&mut out, id);
    out.extend_from_slice(result);
    out.push(b'}');
    reply::json(StatusCode::OK, out)
}

fn initialize(
    dp: &DataPlane,
    id: &RawValue,
    params: Option<&Params<'_>>,
    rec: &mut Recorder,
) -> Response {
    let asked = params
        .and_then(|p| p.protocol_version)
        .and_then(json::as_str);
    let version = asked
        .as_deref()
        .and_then(|v| HANDSHAKE_VERSIONS.iter().find(|h| **h == v))
        .copied()
        .unwrap_or(LATEST_HANDSHAKE_VERSION);
    rec.negotiated(version);
    let mut out = Vec::with_capacity(256);
    reply::open_result(&mut out, id);
    out.extend_from_slice(b"{\"protocolVersion\":\"");
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\",\"capabilities\":");
    out.extend_from_slice(dp.wire.capabilities().as_bytes());
    out.extend_from_slice(b",\"serverInfo\":");
    out.extend_from_slice(&dp.wire.server_info);
    out.extend_from_slice(b"}}");
    reply::json(StatusCode::OK, out)
}

fn list(dp: &DataPlane, ctx: &Ctx<'_>, id: &RawValue, kind: Kind) -> Response {
    let scope = ctx.scope.as_deref();
    let items = match &ctx.server {
        Some(s) => s.list(kind, scope),
        None => ctx.view.catalog.list(kind, scope),
    };
    // The (cached, shared) list itself is not copied: head, list and tail go out as three
    // chunks of one body.
    let mut head = Vec::with_capacity(64 + id.get().len());
    reply::open_result(&mut head, id);
    head.extend_from_slice(if kind == Kind::Tool {
        b"{\"tools\":"
    } else {
        b"{\"prompts\":"
    });
    let tail = if ctx.modern() {
        // Filtered per client (enterprise) = private; development lists are the same for all.
        let tail = if scope.is_some() {
            &dp.wire.list_tail_private
        } else {
            &dp.wire.list_tail_public
        };
        let mut t = Vec::with_capacity(tail.len() + 1);
        t.extend_from_slice(tail);
        t.push(b'}');
        Bytes::from(t)
    } else {
        Bytes::from_static(b"}}")
    };
    reply::json_parts(head, items, tail)
}

async fn forward(
    dp: &DataPlane,
    ctx: &Ctx<'_>,
    id: &RawValue,
    kind: Kind,
    params: Option<&RawValue>,
    parsed: Option<&Params<'_>>,
    rec: &mut Recorder,
) -> Result<Response, Failure> {
    let name_raw = parsed
        .and_then(|p| p.name)
        .ok_or(Failure::InvalidParams("params.name is required"))?;
    let name =
        json::as_str(name_raw).ok_or(Failure::InvalidParams("params.name must be a string"))?;
    // Someone whose token is valid but grants nothing (no access rule matches them) is
    // told so, rather than that the tool does not exist.
    if ctx.scope.as_ref().is_some_and(|s| s.allow().is_empty()) {
        return Err(Failure::NoAccess);
    }
    let unknown = || match kind {
        Kind::Tool => Failure::UnknownTool(Echoed::new(&name)),
        Kind::Prompt => Failure::UnknownPrompt(Echoed::new(&name)),
    };
    let found = match &ctx.server {
        Some(s) => s.get(kind, &name).map(|d| (s, d)),
        None => ctx.view.catalog.get(kind, &name),
    };
    let Some((server, def)) = found else {
        let on = ctx.server.as_ref().map_or("", |s| &s.name);
        rec.target(on, kind == Kind::Tool, &name, AuditPayload::Off);
        return Err(unknown());
    };
    if let Some(scope) = &ctx.scope {
        if !def.allowed(&server.name, scope) {
            // Nothing of an out-of-scope call's arguments is kept.
            rec.target(&server.name, kind == Kind::Tool, &name, AuditPayload::Off);
            rec.out_of_scope();
            return Err(unknown());
        }
    }
    rec.target(
        &server.name,
        kind == Kind::Tool,
        &name,
        server.audit_payload(),
    );
    rec.arguments(params);
    // The aggregate endpoint renames; the upstream must see its own name. Only the
    // `name` member is replaced, the rest of params is copied byte for byte.
    let renamed;
    let upstream_params = match (&ctx.server, params) {
        (None, Some(p)) => {
            renamed =
                rename(p, name_raw, &def.name).ok_or(Failure::InvalidParams("params.name"))?;
            Some(&*renamed)
        }
        _ => params,
    };
    let method = if kind == Kind::Tool {
        "tools/call"
    } else {
        "prompts/get"
    };
    relay(dp, ctx, id, server, method, upstream_params, rec).await
}

/// Development mode, or a client whose allow list covers all of `server` (a list of single
/// tools does not reach the server's resources).
fn whole_server_allowed(ctx: &Ctx<'_>, server: &Server) -> bool {
    ctx.scope
        .as_ref()
        .is_none_or(|s| s.allow().allows_server(&server.name))
}

/// Sends one request to `server` and relays its answer: the result byte for byte (stamped for
/// 2026-07-28 clients; an upstream's serverInfo replaced by ours for the others, see
/// `stamp`), or the upstream's JSON-RPC error. Notifications the upstream sends first are
/// streamed to a client that takes SSE, and dropped for one that does not.
async fn relay(
    dp: &DataPlane,
    ctx: &Ctx<'_>,
    id: &RawValue,
    server: &Server,
    method: &str,
    upstream_params: Option<&RawValue>,
    rec: &mut Recorder,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let limits = CallLimits {
        // A JSON-only client cannot receive notifications: none is kept for it.
        keep_notifications: ctx.accepts_sse,
        ..dp.settings.call_limits
    };
    // With tracing on: a CLIENT span (sampled requests), and the context the call carries
    // in its `traceparent` header and in `params._meta.traceparent` (SEP-414), if any.
    let span = rec.upstream_span(method, &server.name, &server.upstream.config().url);
    let traceparent = span.as_ref().and_then(UpstreamSpan::traceparent);
    let traced;
    let upstream_params = match traceparent {
        Some(tp) => {
            traced = telemetry::with_meta_traceparent(upstream_params, tp);
            traced.as_deref().or(upstream_params)
        }
        None => upstream_params,
    };
    let outcome = canopy_mcp::upstream::with_traceparent(
        traceparent,
        server.upstream.call(method, upstream_params, None, limits),
    )
    .await;
    let resp = match outcome {
        Ok(Call::Done(resp)) => resp,
        Ok(Call::Streaming(stream)) if ctx.accepts_sse => {
            if let Some(s) = span {
                s.end(Ok(false));
            }
            // Latency up to the first notification: the rest is paced by the client.
            server.metrics.observe(started.elapsed(), false);
            let info = dp.wire.server_info_member.clone();
            // The event is recorded when the stream ends, with what it sent.
            let mut tail = rec.take();
            tail.status(StatusCode::OK.as_u16());
            return Ok(stream::sse(stream, id, ctx.modern(), info, tail));
        }
        Ok(Call::Streaming(mut stream)) => loop {
            // Nothing can carry notifications to a JSON-only client: drop each as it comes.
            match stream.next().await {
                Ok(Streamed::Notification(_)) => {}
                Ok(Streamed::Response(outcome)) => {
                    break UpstreamResponse {
                        notifications: Vec::new(),
                        outcome,
                    }
                }
                Err(e) => return Err(failed(server, started, e, span)),
            }
        },
        Err(e) => return Err(failed(server, started, e, span)),
    };
    server.metrics.observe(started.elapsed(), false);
    rec.upstream(&resp.outcome);
    if let Some(s) = span {
        match &resp.outcome {
            Ok(_) => s.end(Ok(rec.tool_error())),
            Err(e) => s.end(Err(&e.code.to_string())),
        }
    }

    let mut out = Vec::with_capacity(64 + resp.outcome.as_ref().map_or(64, |r| r.get().len()));
    write_outcome(
        &mut out,
        id,
        &resp.outcome,
        ctx.modern(),
        &dp.wire.server_info_member,
    );
    if ctx.accepts_sse && !resp.notifications.is_empty() {
        return Ok(reply::sse(&resp.notifications, &out));
    }
    Ok(reply::json(StatusCode::OK, out))
}

/// Records a failed call and turns it into the client's error.
fn failed(
    server: &Server,
    started: Instant,
    e: UpstreamError,
    span: Option<UpstreamSpan>,
) -> Failure {
    server.metrics.observe(started.elapsed(), true);
    tracing::warn!(server = %server.name, error = %e, "upstream call failed");
    let f = Failure::Upstream(e);
    if let Some(s) = span {
        s.end(Err(f.refusal().error_type));
    }
    f
}

/// The client's response to an upstream outcome; `stamp` (the serverInfo member) for
/// 2026-07-28 clients.
pub(super) fn write_outcome(
    out: &mut Vec<u8>,
    id: &RawValue,
    outcome: &Result<Box<RawValue>, ErrorObject>,
    modern: bool,
    server_info: &[u8],
) {
    match outcome {
        Ok(result) => {
            reply::open_result(out, id);
            if modern {
                write_stamped(out, result.get(), server_info);
            } else {
                write_identified(out, result.get(), server_info);
            }
            out.push(b'}');
        }
        Err(e) => reply::write_upstream_error(out, id, e),
    }
}

fn rename(params: &RawValue, name_raw: &RawValue, upstream_name: &str) -> Option<Box<RawValue>> {
    let text = params.get();
    let r = json::span_in(text, name_raw.get())?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..r.start]);
    let mut q = Vec::with_capacity(upstream_name.len() + 2);
    json::push_str(&mut q, upstream_name);
    out.push_str(std::str::from_utf8(&q).ok()?);
    out.push_str(&text[r.end..]);
    RawValue::from_string(out).ok()
}
