//! `canopy-otlp-receiver`: an OTLP/gRPC trace receiver built on opentelemetry-proto's
//! generated collector service; the spans it received, as JSON objects.

use std::process::Command;

use serde_json::Value;

use crate::listening::ListeningServer;
use crate::paths::bin_path;

#[derive(Debug)]
pub struct OtlpReceiver {
    server: ListeningServer,
}

impl OtlpReceiver {
    pub fn start() -> Self {
        let cmd = Command::new(bin_path("canopy-otlp-receiver"));
        Self {
            server: ListeningServer::start(
                "canopy-otlp-receiver",
                cmd,
                "canopy-otlp-",
                "OTLP receiver",
            ),
        }
    }

    /// `http://127.0.0.1:PORT`, for `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every span received so far (`trace_id`, `span_id`, `parent_span_id`, `name`, `kind`,
    /// `status_code`, `service`, `attributes`).
    pub fn spans(&self) -> Vec<Value> {
        self.server
            .stdout_log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn stderr_log(&self) -> String {
        self.server.stderr_log()
    }
}
