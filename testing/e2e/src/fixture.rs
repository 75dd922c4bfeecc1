//! The rmcp fixture upstream (`canopy-fixture-server`): spawned over HTTP, or described as a stdio
//! command line for registration.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::{json, Value};

use crate::listening::ListeningServer;
use crate::paths::bin_path;

#[derive(Debug, Clone, Default)]
pub struct FixtureOptions {
    /// Stateless streamable HTTP with JSON responses.
    pub stateless: bool,
    /// serverInfo name (default `canopy-fixture`).
    pub name: Option<String>,
    /// HTTP: 401 unless `Authorization: Bearer <token>`.
    pub require_bearer: Option<String>,
    /// Adds `tool_0..tool_N-1`.
    pub extra_tools: usize,
    /// Adds `trace_context` (the traceparent header and `_meta.traceparent` it received).
    pub trace_tool: bool,
}

impl FixtureOptions {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.stateless {
            args.push("--stateless".to_owned());
        }
        if let Some(name) = &self.name {
            args.extend(["--name".to_owned(), name.clone()]);
        }
        if let Some(token) = &self.require_bearer {
            args.extend(["--require-bearer".to_owned(), token.clone()]);
        }
        if self.extra_tools > 0 {
            args.extend(["--extra-tools".to_owned(), self.extra_tools.to_string()]);
        }
        if self.trace_tool {
            args.push("--trace-tool".to_owned());
        }
        args
    }
}

/// A command line that starts an upstream over stdio (for `register -c` with `"transport": "stdio"`).
#[derive(Debug, Clone)]
pub struct StdioCommand {
    pub command: String,
    pub args: Vec<String>,
}

impl StdioCommand {
    /// The `register -c FILE` JSON for this command under `name`.
    pub fn register_json(&self, name: &str) -> Value {
        json!({
            "name": name,
            "transport": "stdio",
            "description": format!("{name} over stdio"),
            "command": self.command,
            "args": self.args,
        })
    }
}

/// A running `canopy-fixture-server --transport http`.
#[derive(Debug)]
pub struct FixtureServer {
    server: ListeningServer,
}

impl FixtureServer {
    /// Stateful (session) streamable HTTP, default name, no auth.
    pub fn http() -> Self {
        Self::http_with(FixtureOptions::default())
    }

    pub fn http_with(options: FixtureOptions) -> Self {
        let mut cmd = Command::new(bin_path("canopy-fixture-server"));
        cmd.args(["--transport", "http", "--listen", "127.0.0.1:0"])
            .args(options.args());
        Self {
            server: ListeningServer::start(
                "canopy-fixture-server",
                cmd,
                "canopy-fixture-",
                "fixture",
            ),
        }
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn stderr_log(&self) -> String {
        self.server.stderr_log()
    }

    pub fn kill9(&mut self) {
        self.server.kill9();
    }

    /// The stdio variant's command line, for registration.
    pub fn stdio_command(options: &FixtureOptions) -> StdioCommand {
        let mut args = vec!["--transport".to_owned(), "stdio".to_owned()];
        args.extend(options.args());
        StdioCommand {
            command: bin_path("canopy-fixture-server").display().to_string(),
            args,
        }
    }
}
