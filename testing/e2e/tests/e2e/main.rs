//! End-to-end tests: the real `canopy`, `canopy-control-plane` (and later `canopy-data-plane`)
//! binaries against real upstream MCP servers (the rmcp fixture and the official Python SDK).
//! One test binary (one link step); each module is one area. Needs `cargo build --workspace
//! --bins` and `scripts/setup-test-env.sh` first — `scripts/test.sh` does both.

mod common;

mod durability;
mod enterprise_errors;
mod enterprise_workflow;
mod fixtures;
mod modes;
mod token_leak;
