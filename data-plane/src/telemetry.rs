//! OpenTelemetry traces over OTLP/gRPC (`--otlp-endpoint`): a SERVER span per MCP request
//! and a CLIENT span per upstream call, named and attributed per the OpenTelemetry MCP
//! semantic conventions, children of the caller's W3C trace context; the upstream gets the
//! context as a `traceparent` header and in `params._meta.traceparent` (SEP-414).
//!
//! - `exporter.rs`: the tracer: OTLP/gRPC exporter, batch processor with a bounded queue
//!   (a full queue drops spans, a request never waits), parent-based ratio sampling.
//! - `span.rs`: the request's SERVER span and the upstream CLIENT span.
//! - `propagate.rs`: `traceparent` values and `_meta.traceparent` in upstream params.
//!
//! The caller's trace context is read once, by the audit recorder (`audit/trace.rs`); the
//! span's trace id and span id are the audit event's. With the endpoint off nothing here is
//! built: the recorder stays empty (when the audit trail is off too).
//!
//! Does not: export metrics or logs (audit events go to the control plane).

mod exporter;
mod propagate;
mod span;
#[cfg(test)]
mod tests;

pub use exporter::{Telemetry, TelemetryError, DEFAULT_QUEUE_SIZE};
pub(crate) use propagate::with_meta_traceparent;
pub(crate) use span::{Parent, RequestFields, ServerSpan, UpstreamSpan};
