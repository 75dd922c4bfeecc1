//! Routing one request through `canopy_data_plane::router` with `tower::ServiceExt::oneshot`
//! (no client socket): authenticated `ping`, `tools/list` (50 tools) and `tools/call echo`
//! (forwarded over loopback to the bench upstream served in-process). 1k clients. Each shape
//! twice: `route/…` with the audit trail off, `route_audit/…` with it on.
#![allow(clippy::unwrap_used)] // benches: a panic is the failure report

use axum::body::Body;
use canopy_bench::fixture;
use canopy_bench::harness::inproc;
use canopy_data_plane::audit::{Audit, AuditSettings};
use canopy_data_plane::{router, DataPlane, HttpSettings};
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn request(body: &str, token: &str) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream_url = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, canopy_bench::upstream::router(false)).await;
        });
        format!("http://{addr}/mcp")
    });
    let dp = DataPlane::new(HttpSettings::default());
    inproc::install(
        &dp.state,
        1_000,
        vec![inproc::bench_server(&upstream_url).unwrap()],
    )
    .unwrap();
    let app = router(dp);
    // The same data plane with the audit trail on: every request builds its event and
    // hands it to the queue; a task on the same (single) thread drains the queue, so its
    // cost is inside the measured time too (the shipping itself is not).
    let (audit, mut events) = Audit::new(AuditSettings::new("bench"));
    rt.spawn(async move { while events.recv().await.is_some() {} });
    let dp_audited = DataPlane::with_audit(HttpSettings::default(), Some(audit));
    inproc::install(
        &dp_audited.state,
        1_000,
        vec![inproc::bench_server(&upstream_url).unwrap()],
    )
    .unwrap();
    let app_audited = router(dp_audited);
    let token = fixture::client_token(7);
    let list = fixture::request_body("tools/list", None);
    let ping = fixture::request_body("ping", None);
    let call = fixture::echo_call(&format!("{}__echo", fixture::SERVER));
    // Every shape must succeed before it is timed.
    for app in [&app, &app_audited] {
        for body in [&list, &ping, &call] {
            let resp = rt
                .block_on(app.clone().oneshot(request(body, &token)))
                .unwrap();
            assert_eq!(resp.status(), 200, "{body}");
            let bytes = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
            fixture::result_of(&bytes).unwrap();
        }
    }
    // Audit off and on, side by side in one run.
    for (group, audited) in [("route", false), ("route_audit", true)] {
        let app = if audited { &app_audited } else { &app };
        let mut g = c.benchmark_group(group);
        for (name, body) in [
            ("ping", &ping),
            ("tools_list", &list),
            ("tools_call_echo", &call),
        ] {
            g.bench_function(name, |b| {
                b.to_async(&rt).iter(|| async {
                    let resp = app.clone().oneshot(request(body, &token)).await.unwrap();
                    resp.into_body().collect().await.unwrap().to_bytes()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
