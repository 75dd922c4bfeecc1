//! Relaying an upstream's notifications to an SSE client as they arrive.
//!
//! The response body pulls the upstream one message at a time: hyper asks for the next
//! frame only when the client's connection has taken the previous ones, so a slow client
//! slows the upstream down instead of growing a buffer here (backpressure). The stream ends
//! with the response, or with a JSON-RPC error naming the server (per-call limit, deadline,
//! broken upstream) since the status line is already sent by then.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use canopy_mcp::upstream::{ResponseStream, Streamed};
use serde_json::value::RawValue;

use super::mcp::write_outcome;
use super::reply::{self, Failure};
use crate::audit::Recorder;

struct Relay {
    upstream: ResponseStream,
    /// The client's request id (copied: the request body is gone by the time events flow).
    id: Box<RawValue>,
    /// Whether the client speaks 2026-07-28 (see `write_outcome`).
    modern: bool,
    /// Canopy's serverInfo member, stamped on the result.
    server_info: Bytes,
    /// The request's audit event, recorded when the relay is dropped (stream ended, or the
    /// client went away).
    rec: Recorder,
}

pub(super) fn sse(
    upstream: ResponseStream,
    id: &RawValue,
    modern: bool,
    server_info: Bytes,
    rec: Recorder,
) -> Response {
    let relay = Relay {
        upstream,
        id: id.to_owned(),
        modern,
        server_info,
        rec,
    };
    let events = futures::stream::unfold(Some(relay), |relay| async move {
        let mut relay = relay?;
        let mut out = Vec::new();
        let more = match relay.upstream.next().await {
            Ok(Streamed::Notification(n)) => {
                reply::push_event(&mut out, n.get().as_bytes());
                true
            }
            Ok(Streamed::Response(outcome)) => {
                relay.rec.upstream(&outcome);
                let mut msg =
                    Vec::with_capacity(64 + outcome.as_ref().map_or(64, |r| r.get().len()));
                write_outcome(
                    &mut msg,
                    &relay.id,
                    &outcome,
                    relay.modern,
                    &relay.server_info,
                );
                reply::push_event(&mut out, &msg);
                false
            }
            Err(e) => {
                tracing::warn!(server = %relay.upstream.server(), error = %e, "upstream call failed");
                let mut msg = Vec::with_capacity(128);
                let f = Failure::Upstream(e);
                if relay.rec.is_on() {
                    relay.rec.refused(f.refusal());
                }
                f.write(&mut msg, Some(&relay.id));
                reply::push_event(&mut out, &msg);
                false
            }
        };
        relay.rec.sent(out.len());
        let next = more.then_some(relay);
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(out)), next))
    });
    reply::sse_body(Body::from_stream(events))
}
