//! A spawned server that announces its address with one `listening on <addr>` line on stdout
//! (the rmcp fixture, `server.py`): started with its logs in a temp dir of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use tempfile::TempDir;

use crate::control_plane::clear_canopy_env;
use crate::process::ChildProcess;
use crate::START_DEADLINE;

#[derive(Debug)]
pub(crate) struct ListeningServer {
    process: ChildProcess,
    addr: SocketAddr,
    logs: TempDir,
}

impl ListeningServer {
    /// Spawns `cmd` as `name` (`CANOPY_*` env cleared, stdin closed, stderr into `stderr.log`
    /// of a new temp dir prefixed `log_prefix`) and waits for its `listening on` line. `what`
    /// names the server in failure messages.
    pub(crate) fn start(name: &str, mut cmd: Command, log_prefix: &str, what: &str) -> Self {
        let logs = tempfile::Builder::new()
            .prefix(log_prefix)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for {what} logs: {e:?}"));
        clear_canopy_env(&mut cmd);
        let stderr_path = logs.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("cannot create {what} log: {e:?}"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut process = ChildProcess::spawn(name, cmd);
        let addr = read_listening_line(&mut process, &logs.path().join("stdout.log"), &stderr_path);
        Self {
            process,
            addr,
            logs,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server printed on stdout so far (after its `listening on` line too).
    pub(crate) fn stdout_log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout.log")).unwrap_or_default()
    }

    pub(crate) fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    pub(crate) fn kill9(&mut self) {
        self.process.kill9();
    }
}

/// Wait (bounded) for the child's `listening on <addr>` line; keep draining stdout into
/// `stdout_log` afterwards so the child never blocks on a full pipe.
fn read_listening_line(
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
