//! The tracer the request path starts spans with, exporting over OTLP/gRPC in batches.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::sync::Arc;
use std::time::Duration;

/// Spans waiting for export at most; past it new spans are dropped (the SDK counts them),
/// so a slow or absent collector costs memory up to this and never a request's time.
pub const DEFAULT_QUEUE_SIZE: usize = 8192;

/// How long one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--otlp-sampling must be between 0 and 1, got {0}")]
    Ratio(f64),
    #[error("--otlp-endpoint must be an http:// or https:// URL, got '{0}'")]
    Endpoint(String),
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
}

/// The tracer and its provider (kept to flush on shutdown).
pub struct Telemetry {
    pub(super) tracer: SdkTracer,
    /// The provider's sampler, asked by `span.rs` before any SDK span is built.
    pub(super) sampler: Sampler,
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Exports to the OTLP/gRPC collector at `endpoint`, keeping `ratio` of the traces this
    /// data plane starts (a caller's sampled flag is followed). Must run inside the tokio
    /// runtime: the gRPC channel lives on it.
    pub fn new(endpoint: &str, ratio: f64, service: &str) -> Result<Arc<Self>, TelemetryError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(TelemetryError::Ratio(ratio));
        }
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TelemetryError::Endpoint(endpoint.to_owned()));
        }
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT);
        if endpoint.starts_with("https://") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots());
        }
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        // Parent-based: a caller's decision is followed; a trace started here keeps `ratio`.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)));
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(DEFAULT_QUEUE_SIZE)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler.clone())
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("canopy-data-plane");
        Ok(Arc::new(Self {
            tracer,
            sampler,
            provider,
        }))
    }

    /// Exports what is queued and stops. Blocks up to the export timeout: call it from a
    /// blocking context.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "stopping the OTLP exporter");
        }
    }
}
