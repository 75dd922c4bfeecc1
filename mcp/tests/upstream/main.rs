//! Integration tests of the upstream client against in-process servers: the official
//! Rust SDK (rmcp) over streamable HTTP, axum mocks for the cases an SDK will not
//! produce (modern-only checks, expiring sessions, garbage, hangs, legacy SSE), and a
//! python3 stdio server.
//!
//! Timeouts here are deadlines only; nothing asserts on elapsed time.

// Test code may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

mod failures;
mod handshake_mock;
mod legacy_sse;
mod modern_mock;
mod rmcp_http;
mod stdio;
