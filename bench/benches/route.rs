//! Routing one request through `canopy_data_plane::router` with `tower::ServiceExt::oneshot`
//! (no client socket): authenticated `ping`, `tools/list` (50 tools) and `tools/call echo`
//! (forwarded over loopback to the bench upstream served in-process). 1k clients. Each shape
//! also as `route_cpu/<shape>/audit_off|audit_on|audit_otlp_1|audit_otlp_0.01`: CPU time per
//! request with the audit trail off and on, and with OTLP tracing on top at sampling 1.0 and
//! 0.01 (spans exported to an in-process OTLP receiver: the collector's generated
//! `TraceService` from opentelemetry-proto).
#![allow(clippy::unwrap_used)] // benches: a panic is the failure report

use axum::body::Body;
use canopy_bench::fixture;
use canopy_bench::harness::inproc;
use canopy_data_plane::audit::{Audit, AuditSettings};
use canopy_data_plane::telemetry::Telemetry;
use canopy_data_plane::{router, DataPlane, HttpSettings};
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
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

/// Accepts every export and keeps nothing.
struct Sink;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
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
    // hands it to the queue; a task on the same (single) thread drains the queue every
    // 10 ms as the shipper does, so its cost is inside the measured time too (batching,
    // spooling and shipping are not).
    let (audit, mut events) = Audit::new(AuditSettings::new("bench"));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
        loop {
            tick.tick().await;
            while events.try_recv().is_ok() {}
        }
    });
    let dp_audited = DataPlane::with_audit(HttpSettings::default(), Some(audit));
    inproc::install(
        &dp_audited.state,
        1_000,
        vec![inproc::bench_server(&upstream_url).unwrap()],
    )
    .unwrap();
    let app_audited = router(dp_audited);
    // Audit on plus tracing at two sampling ratios. The batch processor's export runs on its
    // own thread (not in the measured CPU time); building, recording and queueing spans,
    // and the gRPC channel's task on this runtime, are.
    let otlp = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Sink))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        format!("http://{addr}")
    });
    let traced = |ratio: f64| {
        let telemetry = rt
            .block_on(async { Telemetry::new(&otlp, ratio, "bench") })
            .unwrap();
        let (audit, mut events) = Audit::new(AuditSettings::new("bench"));
        rt.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
            loop {
                tick.tick().await;
                while events.try_recv().is_ok() {}
            }
        });
        let dp =
            DataPlane::with_observability(HttpSettings::default(), Some(audit), Some(telemetry));
        inproc::install(
            &dp.state,
            1_000,
            vec![inproc::bench_server(&upstream_url).unwrap()],
        )
        .unwrap();
        router(dp)
    };
    let app_traced_1 = traced(1.0);
    let app_traced_001 = traced(0.01);
    let token = fixture::client_token(7);
    let list = fixture::request_body("tools/list", None);
    let ping = fixture::request_body("ping", None);
    let call = fixture::echo_call(&format!("{}__echo", fixture::SERVER));
    // Every shape must succeed (both sides) before it is timed.
    for app in [&app, &app_audited, &app_traced_1, &app_traced_001] {
        for body in [&list, &ping, &call] {
            let resp = rt
                .block_on(app.clone().oneshot(request(body, &token)))
                .unwrap();
            assert_eq!(resp.status(), 200, "{body}");
            let bytes = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
            fixture::result_of(&bytes).unwrap();
        }
    }
    let mut g = c.benchmark_group("route");
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
    // Audit off and on side by side, per shape, in CPU time of the bench thread (the
    // runtime is single-threaded: the upstream, the data plane and the queue's consumer all
    // run on it), which the machine's other load disturbs less than wall time does.
    for (name, body) in [
        ("ping", &ping),
        ("tools_list", &list),
        ("tools_call_echo", &call),
    ] {
        let mut g = c.benchmark_group(format!("route_cpu/{name}"));
        for (side, app) in [
            ("audit_off", &app),
            ("audit_on", &app_audited),
            ("audit_otlp_1", &app_traced_1),
            ("audit_otlp_0.01", &app_traced_001),
        ] {
            let token = &token;
            g.bench_function(side, |b| {
                b.to_async(&rt).iter_custom(|iters| async move {
                    let start = thread_cpu();
                    for _ in 0..iters {
                        let resp = app.clone().oneshot(request(body, token)).await.unwrap();
                        resp.into_body().collect().await.unwrap().to_bytes();
                    }
                    thread_cpu().saturating_sub(start)
                })
            });
        }
        g.finish();
    }
    if std::env::var_os("ROUTE_CPU_AB").is_some() {
        // A second data plane without audit: what instance alone (its own upstream
        // connections, its place in memory) makes of the difference.
        let control = DataPlane::new(HttpSettings::default());
        inproc::install(
            &control.state,
            1_000,
            vec![inproc::bench_server(&upstream_url).unwrap()],
        )
        .unwrap();
        let control = router(control);
        let sides = [
            ("audit_off", &app),
            ("audit_off_control", &control),
            ("audit_on", &app_audited),
            ("audit_otlp_1", &app_traced_1),
            ("audit_otlp_0.01", &app_traced_001),
        ];
        for (name, body) in [("ping", &ping), ("tools_call_echo", &call)] {
            println!("route_cpu_ab shape {name}");
            paired(&rt, &sides, body, &token);
        }
    }
}

/// `ROUTE_CPU_AB=1`: the four sides of `body` interleaved — rounds of `BLOCK` requests per
/// side, the order rotated each round — so that drift of the machine during the run hits
/// every side alike; prints each side's median CPU per request over the rounds and the
/// median of its per-round difference to `audit_off`.
fn paired(rt: &tokio::runtime::Runtime, sides: &[(&str, &axum::Router)], body: &str, token: &str) {
    const ROUNDS: usize = 60;
    const BLOCK: u32 = 300;
    let mut per: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); sides.len()];
    for round in 0..ROUNDS {
        for k in 0..sides.len() {
            let i = (round + k) % sides.len();
            let app = sides[i].1;
            let cpu = rt.block_on(async {
                let start = thread_cpu();
                for _ in 0..BLOCK {
                    let resp = app.clone().oneshot(request(body, token)).await.unwrap();
                    resp.into_body().collect().await.unwrap().to_bytes();
                }
                thread_cpu().saturating_sub(start)
            });
            per[i].push(cpu.as_secs_f64() * 1e6 / f64::from(BLOCK));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, (name, _)) in sides.iter().enumerate() {
        let diff: Vec<f64> = per[i].iter().zip(&per[0]).map(|(a, b)| a - b).collect();
        println!(
            "route_cpu_ab/{name}: {:.2} µs per request, {:+.2} µs vs {} (medians of {ROUNDS} rounds of {BLOCK})",
            median(per[i].clone()),
            median(diff),
            sides[0].0
        );
    }
}

/// CPU time of this thread so far.
fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(
        u64::try_from(t.tv_sec).unwrap(),
        u32::try_from(t.tv_nsec).unwrap(),
    )
}

criterion_group!(benches, bench);
criterion_main!(benches);
