//! Fixtures built on the official Python SDK (`mcp` from PyPI, in the test venv):
//! `testing/python/server.py` as an upstream and `testing/python/client.py` as an MCP client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::control_plane::clear_canopy_env;
use crate::fixture::StdioCommand;
use crate::listening::ListeningServer;
use crate::paths::{venv_python, workspace_root};
use crate::process::ChildProcess;
use crate::CLI_DEADLINE;

fn script(name: &str) -> PathBuf {
    workspace_root().join("testing").join("python").join(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyTransport {
    /// Streamable HTTP at `/mcp`; `stateless` = no sessions, JSON responses.
    StreamableHttp { stateless: bool },
    /// Legacy HTTP+SSE at `/sse` (+ `/messages/`).
    Sse,
}

/// A running `server.py` upstream.
#[derive(Debug)]
pub struct PythonServer {
    server: ListeningServer,
    transport: PyTransport,
}

impl PythonServer {
    pub fn start(transport: PyTransport) -> Self {
        Self::start_named(transport, "canopy-python-fixture")
    }

    pub fn start_named(transport: PyTransport, name: &str) -> Self {
        let mut cmd = Command::new(venv_python());
        cmd.arg(script("server.py"));
        match transport {
            PyTransport::StreamableHttp { stateless } => {
                cmd.args(["--transport", "streamable-http"]);
                if stateless {
                    cmd.arg("--stateless");
                }
            }
            PyTransport::Sse => {
                cmd.args(["--transport", "sse"]);
            }
        }
        cmd.args(["--port", "0", "--name", name]);
        cmd.env("PYTHONUNBUFFERED", "1");
        Self {
            server: ListeningServer::start(
                "python server.py",
                cmd,
                "canopy-pyfixture-",
                "python fixture",
            ),
            transport,
        }
    }

    /// `http://127.0.0.1:PORT/mcp` (streamable HTTP) or `http://127.0.0.1:PORT/sse` (SSE).
    pub fn url(&self) -> String {
        match self.transport {
            PyTransport::StreamableHttp { .. } => format!("http://{}/mcp", self.addr()),
            PyTransport::Sse => format!("http://{}/sse", self.addr()),
        }
    }

    /// The `transport` value for `register -c`.
    pub fn transport_name(&self) -> &'static str {
        match self.transport {
            PyTransport::StreamableHttp { .. } => "streamable_http",
            PyTransport::Sse => "sse",
        }
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

    /// `server.py --transport stdio` as a command line, for registration.
    pub fn stdio_command() -> StdioCommand {
        StdioCommand {
            command: venv_python().display().to_string(),
            args: vec![
                script("server.py").display().to_string(),
                "--transport".to_owned(),
                "stdio".to_owned(),
            ],
        }
    }
}

/// Run `client.py <url> [--token T] --mode <mode> <extra>` and return its JSON document:
/// `{"ok", "protocol_version", "server_info", "tools", "prompts", "call", "prompt", "error",
/// "http_statuses"}` (see the script's docstring). `mode` is `legacy`, `auto` or a modern version.
/// Extra args, e.g. `["--call", "echo", "--args", r#"{"message":"hi"}"#]`.
pub fn python_client(url: &str, token: Option<&str>, mode: &str, extra: &[&str]) -> Value {
    let mut args = vec![url, "--mode", mode];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    args.extend(extra);
    run_script("client.py", &args)
}

/// Run `oauth_client.py <url> --login <account> <extra>`: the SDK's `OAuthClientProvider` signs
/// in at the identity provider of [`crate::IdentityProvider`] given only the URL. Returns its
/// JSON document `{"ok", "tools", "call", "error", "http", "token_claims"}` (see the script).
pub fn python_oauth_client(url: &str, login: &str, extra: &[&str]) -> Value {
    let mut args = vec![url, "--login", login];
    args.extend(extra);
    run_script("oauth_client.py", &args)
}

/// Runs a script of testing/python with the venv's python; its stdout is one JSON document.
fn run_script(name: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(script(name)).args(args);
    run_json_program(name, cmd)
}

/// Runs `cmd` (named `name` in failures) to its end within [`CLI_DEADLINE`]; its stdout is one
/// JSON document.
pub(crate) fn run_json_program(name: &str, mut cmd: Command) -> Value {
    clear_canopy_env(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = ChildProcess::spawn(&format!("python {name}"), cmd);
    let stdout = process.child_mut().stdout.take();
    let stderr = process.child_mut().stderr.take();
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let err = read(stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    if process.wait_timeout(CLI_DEADLINE).is_none() {
        process.kill9();
        panic!("{name} did not finish within {CLI_DEADLINE:?}");
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{name} printed no JSON document ({e});\nstdout:\n{stdout}\nstderr:\n{stderr}")
    })
}
