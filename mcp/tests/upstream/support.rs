use canopy_mcp::upstream::{UpstreamConfig, UpstreamResponse};
use serde_json::value::RawValue;
use std::time::Duration;

/// Serves `router` on an ephemeral loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

pub fn http_cfg(name: &str, url: String) -> UpstreamConfig {
    let mut c = UpstreamConfig::streamable_http(name, url);
    c.timeout = Duration::from_secs(20);
    c
}

pub fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

pub fn result_json(r: &UpstreamResponse) -> serde_json::Value {
    match &r.outcome {
        Ok(v) => serde_json::from_str(v.get()).unwrap(),
        Err(e) => panic!("upstream error {} {}", e.code, e.message),
    }
}

/// Names of the discovered definitions.
pub fn names(defs: &[Box<RawValue>]) -> Vec<String> {
    let mut v: Vec<String> = defs
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d.get()).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    v.sort();
    v
}
