//! End-to-end tests: the real `canopy`, `canopy-control-plane` (and later `canopy-data-plane`)
//! binaries against real upstream MCP servers (the rmcp fixture and the official Python SDK).
//! One test binary (one link step); each module is one area. Needs `cargo build --workspace
//! --bins` and `scripts/setup-test-env.sh` first — `scripts/test.sh` does both.

mod common;
mod dataplane_support;

mod audit_data_plane;
mod audit_fleet;
mod audit_trail;
mod conformance;
mod dataplane_clients;
mod dataplane_fleet;
mod dataplane_http;
mod dataplane_limits;
mod deploy_local;
mod durability;
mod enterprise_errors;
mod enterprise_workflow;
mod faults;
mod faults_fleet;
mod faults_outage;
mod faults_upstream;
mod first_hour;
mod fixtures;
mod identity_metrics;
mod identity_providers;
mod interop_upstreams;
mod modes;
mod oauth;
mod otlp;
mod quick_start;
mod secrets_at_rest;
mod sso_login;
mod tls;
mod token_leak;
mod user_scope;
