//! The rmcp fixture upstream (`canopy-fixture-server`): spawned over HTTP, or described as a stdio
//! command line for registration.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::control_plane::clear_canopy_env;
use crate::paths::bin_path;
use crate::process::ChildProcess;
use crate::START_DEADLINE;

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
    process: ChildProcess,
    addr: SocketAddr,
    logs: TempDir,
}

impl FixtureServer {
    /// Stateful (session) streamable HTTP, default name, no auth.
    pub fn http() -> Self {
        Self::http_with(FixtureOptions::default())
    }

    pub fn http_with(options: FixtureOptions) -> Self {
        let logs = tempfile::Builder::new()
            .prefix("canopy-fixture-")
            .tempdir()
            .expect("cannot create a temp dir for fixture logs");
        let mut cmd = Command::new(bin_path("canopy-fixture-server"));
        cmd.args(["--transport", "http", "--listen", "127.0.0.1:0"])
            .args(options.args());
        clear_canopy_env(&mut cmd);
        let stderr_path = logs.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("cannot create fixture log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut process = ChildProcess::spawn("canopy-fixture-server", cmd);
        let addr = read_listening_line(&mut process, &logs.path().join("stdout.log"), &stderr_path);
        Self {
            process,
            addr,
            logs,
        }
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
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

/// Wait (bounded) for the child's `listening on <addr>` line; keep draining stdout into
/// `stdout_log` afterwards so the child never blocks on a full pipe.
pub(crate) fn read_listening_line(
    process: &mut ChildProcess,
    stdout_log: &Path,
    stderr_log: &Path,
) -> SocketAddr {
    let stdout = process
        .child_mut()
        .stdout
        .take()
        .expect("child stdout must be piped");
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    let log_path: PathBuf = stdout_log.to_path_buf();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(&log_path).ok();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut sent = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(log) = log.as_mut() {
                let _ = log.write_all(line.as_bytes());
            }
            if !sent {
                if let Some(addr) = line
                    .trim()
                    .strip_prefix("listening on ")
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
        // Drain anything left (non-UTF-8 output) so the child is never blocked.
        let _ = std::io::copy(
            &mut reader.into_inner().take(u64::MAX),
            &mut std::io::sink(),
        );
    });
    match rx.recv_timeout(START_DEADLINE) {
        Ok(addr) => addr,
        Err(_) => {
            let status = process.try_exit_status();
            panic!(
                "{} did not print `listening on <addr>` within {START_DEADLINE:?} (exit status: \
                 {status:?});\nstdout:\n{}\nstderr:\n{}",
                process.name(),
                std::fs::read_to_string(stdout_log).unwrap_or_default(),
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            )
        }
    }
}
