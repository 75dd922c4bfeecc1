#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
//! A request through the router with tracing and the audit trail on, exported to an
//! in-process receiver running opentelemetry-proto's generated collector `TraceService`:
//! the SERVER span and the audit event carry the same trace id and span id, the parent
//! taken from `params._meta.traceparent`.

use axum::body::Body;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;
use tower::ServiceExt;

use super::Telemetry;
use crate::app::{DataPlane, HttpSettings};
use crate::audit::{Audit, AuditSettings};
use crate::state::tests_support::{install, snapshot};
use canopy_proto::v1 as pb;

#[derive(Default, Clone)]
struct Received(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_server_span_and_the_audit_event_share_their_ids() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let tel = Telemetry::new(&format!("http://{addr}"), 1.0, "canopy-data-plane").unwrap();
    let (audit, mut events) = Audit::new(AuditSettings::new("dp-test"));
    let dp = DataPlane::with_observability(HttpSettings::default(), Some(audit), Some(tel.clone()));
    let mut snap = snapshot(1, vec![], vec![]);
    snap.mode = pb::Mode::Development as i32;
    install(&dp.state, snap);

    let parent = "00f067aa0ba902b7";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"p-1","method":"ping","params":{{"_meta":{{"traceparent":"00-{trace}-{parent}-01"}}}}}}"#
    );
    let req = http::Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = crate::http::router(dp.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let _ = resp.into_body().collect().await.unwrap();

    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    let Some(pb::audit_event::Kind::Request(ev)) = ev.kind else {
        panic!("not a request event: {ev:?}");
    };
    // Exports what is queued, then stops: the span is at the receiver after this.
    tokio::task::spawn_blocking(move || tel.shutdown())
        .await
        .unwrap();
    let spans = received.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(hex(&span.trace_id), trace);
    assert_eq!(hex(&span.parent_span_id), parent);
    assert_eq!(ev.trace_id, trace);
    assert_eq!(ev.span_id, hex(&span.span_id));
    assert_eq!(span.name, "ping");
    assert_eq!(span.kind, 2, "SERVER");
    server.abort();
}
