//! `POST /mcp` and `POST /servers/<name>/mcp`: one stateless request → one response.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use canopy_mcp::protocol::{
    is_handshake_version, HANDSHAKE_VERSIONS, HEADER_PROTOCOL_VERSION, LATEST_HANDSHAKE_VERSION,
};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Instant;

use super::checks;
use super::envelope::{Envelope, Message, Params};
use super::modern;
use super::reply::{self, Failure};
use super::stamp::{write_identified, write_stamped};
use crate::app::DataPlane;
use crate::json;
use crate::metrics::MethodLabel;
use crate::state::{Kind, Mode, Scope, Server, View};
use crate::status::now_ms;

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

pub(crate) async fn serve(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let (label, resp) = serve_inner(dp, target, headers, body).await;
    dp.state
        .metrics
        .record_request(label, resp.status().as_u16());
    resp
}

async fn serve_inner(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> (MethodLabel, Response) {
    let ctx = match precheck(dp, target, headers) {
        Ok(c) => c,
        Err(f) => return (MethodLabel::Other, f.into_response(None)),
    };
    let bytes = match read_body(body, headers, dp.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(f) => return (MethodLabel::Other, f.into_response(None)),
    };
    let msg = match Envelope::parse(&bytes).and_then(Envelope::classify) {
        Ok(m) => m,
        Err(f) => return (MethodLabel::Other, f.into_response(None)),
    };
    match msg {
        Message::NoReply { method } => (
            method
                .as_deref()
                .map_or(MethodLabel::Notification, MethodLabel::of),
            reply::accepted(),
        ),
        Message::Request { id, method, params } => {
            let label = MethodLabel::of(&method);
            let resp = match request(dp, &ctx, headers, id, &method, params).await {
                Ok(r) => r,
                Err(f) => f.into_response(Some(id)),
            };
            (label, resp)
        }
    }
}

fn precheck<'h>(
    dp: &DataPlane,
    target: Option<&str>,
    headers: &'h HeaderMap,
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
        Mode::Development => None,
        Mode::Enterprise => {
            // Memory only: a keyed hash and one map lookup. The token is never logged.
            let found = checks::bearer(headers)
                .and_then(|t| view.tokens.lookup(&view.hasher.hash(t), now_ms()));
            match found {
                Some(c) => Some(c),
                None => {
                    dp.state
                        .metrics
                        .auth_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(Failure::Unauthorized);
                }
            }
        }
    };
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
                    .ok_or_else(|| Failure::UnknownServer(name.to_owned()))?
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

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<bytes::Bytes, Failure> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Failure::BodyTooLarge);
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` reports the limit as an error whose source is `LengthLimitError`.
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return Failure::BodyTooLarge;
            }
            src = s.source();
        }
        Failure::BodyUnreadable
    })
}

async fn request(
    dp: &DataPlane,
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    id: &RawValue,
    method: &str,
    params: Option<&RawValue>,
) -> Result<Response, Failure> {
    let parsed = Params::parse(params);
    if let Era::Modern(hv) = ctx.era {
        modern::validate(headers, hv, method, parsed.as_ref())?;
    }
    match method {
        "initialize" if !ctx.modern() => Ok(initialize(dp, id, parsed.as_ref())),
        "ping" if !ctx.modern() => Ok(result(id, b"{}")),
        "server/discover" if ctx.modern() => Ok(result(id, &dp.wire.discover)),
        "tools/list" => Ok(list(dp, ctx, id, Kind::Tool)),
        "prompts/list" => Ok(list(dp, ctx, id, Kind::Prompt)),
        "tools/call" => forward(dp, ctx, id, Kind::Tool, params, parsed.as_ref()).await,
        "prompts/get" => forward(dp, ctx, id, Kind::Prompt, params, parsed.as_ref()).await,
        // Resources and completions are not in the catalogue: on one server's own endpoint they
        // pass through to it, for clients allowed the whole server.
        "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "completion/complete" => match &ctx.server {
            Some(server) if whole_server_allowed(ctx, server) => {
                relay(dp, ctx, id, server, method, params).await
            }
            _ => Err(Failure::MethodNotFound {
                method: method.to_owned(),
                modern: ctx.modern(),
            }),
        },
        _ => Err(Failure::MethodNotFound {
            method: method.to_owned(),
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

fn initialize(dp: &DataPlane, id: &RawValue, params: Option<&Params<'_>>) -> Response {
    let asked = params
        .and_then(|p| p.protocol_version)
        .and_then(json::as_str);
    let version = asked
        .as_deref()
        .and_then(|v| HANDSHAKE_VERSIONS.iter().find(|h| **h == v))
        .copied()
        .unwrap_or(LATEST_HANDSHAKE_VERSION);
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
) -> Result<Response, Failure> {
    let name_raw = parsed
        .and_then(|p| p.name)
        .ok_or(Failure::InvalidParams("params.name is required"))?;
    let name =
        json::as_str(name_raw).ok_or(Failure::InvalidParams("params.name must be a string"))?;
    let unknown = || match kind {
        Kind::Tool => Failure::UnknownTool(name.to_string()),
        Kind::Prompt => Failure::UnknownPrompt(name.to_string()),
    };
    let (server, def) = match &ctx.server {
        Some(s) => (s, s.get(kind, &name).ok_or_else(unknown)?),
        None => ctx.view.catalog.get(kind, &name).ok_or_else(unknown)?,
    };
    if let Some(scope) = &ctx.scope {
        if !def.allowed(&server.name, scope) {
            return Err(unknown());
        }
    }
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
    relay(dp, ctx, id, server, method, upstream_params).await
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
/// `stamp`), or the upstream's JSON-RPC error.
async fn relay(
    dp: &DataPlane,
    ctx: &Ctx<'_>,
    id: &RawValue,
    server: &Server,
    method: &str,
    upstream_params: Option<&RawValue>,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let outcome = server.upstream.request(method, upstream_params, None).await;
    server.metrics.observe(started.elapsed(), outcome.is_err());
    let resp = outcome.map_err(|e| {
        tracing::warn!(server = %server.name, error = %e, "upstream call failed");
        Failure::Upstream(e)
    })?;

    let mut out = Vec::with_capacity(64 + resp.outcome.as_ref().map_or(64, |r| r.get().len()));
    match &resp.outcome {
        Ok(result) => {
            reply::open_result(&mut out, id);
            if ctx.modern() {
                write_stamped(&mut out, result.get(), &dp.wire.server_info_member);
            } else {
                write_identified(&mut out, result.get(), &dp.wire.server_info_member);
            }
            out.push(b'}');
        }
        Err(e) => reply::write_upstream_error(&mut out, id, e),
    }
    if ctx.accepts_sse && !resp.notifications.is_empty() {
        return Ok(reply::sse(&resp.notifications, &out));
    }
    Ok(reply::json(StatusCode::OK, out))
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
