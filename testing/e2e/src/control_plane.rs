//! A `canopy-control-plane` process on a loopback port with its own data dir and log files.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::net::{free_port, wait_for_port};
use crate::paths::bin_path;
use crate::process::ChildProcess;
use crate::START_DEADLINE;

/// How a control plane is started. Kept across `restart()`.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    pub enterprise: bool,
    /// Appended after the standard flags (e.g. `["--init-token-file", "..."]`).
    pub extra_args: Vec<String>,
    /// Extra environment for the child (after the `CANOPY_*` variables of the test runner have
    /// been removed, so the developer's own settings never leak into a test).
    pub env: Vec<(String, String)>,
}

/// What happened when a control plane was started and expected to maybe fail.
#[derive(Debug)]
pub enum StartOutcome {
    /// It accepted TCP connections (it has been stopped again); what it logged meanwhile.
    Listening { output: String },
    /// It exited before listening: status and everything it logged during this attempt.
    Exited { status: ExitStatus, output: String },
}

#[derive(Debug)]
pub struct ControlPlane {
    // Field order matters: the process must be killed before the temp dir is removed.
    process: Option<ChildProcess>,
    root: TempDir,
    data_dir: PathBuf,
    addr: SocketAddr,
    options: ControlPlaneOptions,
    data_plane_token: String,
    starts: u32,
}

impl ControlPlane {
    pub fn start_enterprise() -> Self {
        Self::start(ControlPlaneOptions {
            enterprise: true,
            ..Default::default()
        })
    }

    pub fn start_development() -> Self {
        Self::start(ControlPlaneOptions::default())
    }

    /// Start on a fresh data dir and wait until the gRPC port accepts TCP.
    pub fn start(options: ControlPlaneOptions) -> Self {
        let root = tempfile::Builder::new()
            .prefix("canopy-cp-")
            .tempdir()
            .expect("cannot create a temp dir for the control plane");
        let data_dir = root.path().join("data");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        // A fixed token (not one the control plane generates) so data planes started by the
        // testkit can authenticate without reading the data dir.
        let data_plane_token = format!("dp-test-token-{}-{}", std::process::id(), addr.port());
        let token_file = root.path().join("data-plane.token");
        write_private(&token_file, &data_plane_token);
        let mut cp = Self {
            process: None,
            root,
            data_dir,
            addr,
            options,
            data_plane_token,
            starts: 0,
        };
        cp.spawn_and_wait();
        cp
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with `--tls-cert` in `extra_args`),
    /// the value for `--registry` / `CANOPY_REGISTRY` and data planes' `--control-plane`.
    pub fn url(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether it serves gRPC over TLS (started with `--tls-cert`).
    pub fn tls(&self) -> bool {
        self.options.extra_args.iter().any(|a| a == "--tls-cert")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temp dir holding the data dir, the logs and the data-plane token file.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn options(&self) -> &ControlPlaneOptions {
        &self.options
    }

    pub fn data_plane_token(&self) -> &str {
        &self.data_plane_token
    }

    /// File holding the data-plane token (mode 0600), for `--data-plane-token-file`.
    pub fn data_plane_token_file(&self) -> PathBuf {
        self.root.path().join("data-plane.token")
    }

    pub fn stdout_log(&self) -> PathBuf {
        self.root.path().join("control-plane.stdout.log")
    }

    pub fn stderr_log(&self) -> PathBuf {
        self.root.path().join("control-plane.stderr.log")
    }

    /// Everything the control plane printed, over all its starts.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for path in [self.stdout_log(), self.stderr_log()] {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
        out
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ChildProcess::is_running)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    /// Crash it: SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill9();
        }
    }

    /// SIGTERM and wait (bounded) for it to exit; returns its exit status. Panics if it had to be
    /// killed because it did not stop within the deadline.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(START_DEADLINE)
    }

    /// [`ControlPlane::terminate`] with another failure deadline.
    pub fn terminate_within(&mut self, deadline: Duration) -> ExitStatus {
        let Some(p) = self.process.as_mut() else {
            panic!("control plane was never started");
        };
        let (status, clean) = p.terminate(deadline);
        if !clean {
            panic!(
                "control plane did not exit within {deadline:?} after SIGTERM; logs:\n{}",
                self.logs()
            );
        }
        status
    }

    /// Start again on the same data dir and port (stopping it first with SIGTERM if it runs).
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.spawn_and_wait();
    }

    /// Stop it if it runs, then start it on the same data dir with other options, expecting that
    /// it refuses to start (e.g. an enterprise data dir started in development mode). The control
    /// plane is left stopped. Does not change the options used by `restart()`.
    ///
    /// A program may bind its port before it validates the data dir, so an accepted connection
    /// proves nothing: this waits for the process to exit, and only one still running after
    /// `REFUSAL_DEADLINE` counts as `Listening` (a failure deadline, reached only when the
    /// program wrongly starts).
    pub fn try_start_with(&mut self, options: ControlPlaneOptions) -> StartOutcome {
        const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);
        if self.is_running() {
            self.terminate();
        }
        let before = self.log_lengths();
        let mut process = self.spawn(&options);
        let exited = process.wait_timeout(REFUSAL_DEADLINE);
        match exited {
            Some(status) => StartOutcome::Exited {
                status,
                output: self.logs_since(before),
            },
            None => {
                process.terminate(START_DEADLINE);
                StartOutcome::Listening {
                    output: self.logs_since(before),
                }
            }
        }
    }

    fn log_lengths(&self) -> (usize, usize) {
        let len = |p: PathBuf| std::fs::metadata(p).map(|m| m.len() as usize).unwrap_or(0);
        (len(self.stdout_log()), len(self.stderr_log()))
    }

    /// What was logged after `log_lengths()` returned `before`.
    fn logs_since(&self, before: (usize, usize)) -> String {
        let tail = |p: PathBuf, from: usize| {
            let bytes = std::fs::read(p).unwrap_or_default();
            String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
        };
        tail(self.stdout_log(), before.0) + &tail(self.stderr_log(), before.1)
    }

    fn spawn_and_wait(&mut self) {
        let options = self.options.clone();
        let mut process = self.spawn(&options);
        let listening = wait_for_port(self.addr, START_DEADLINE, || process.is_running());
        if !listening {
            let status = process.try_exit_status();
            drop(process);
            panic!(
                "control plane did not listen on {} within {START_DEADLINE:?} (exit status: \
                 {status:?}); logs:\n{}",
                self.addr,
                self.logs()
            );
        }
        self.process = Some(process);
    }

    fn spawn(&mut self, options: &ControlPlaneOptions) -> ChildProcess {
        self.starts += 1;
        let mut cmd = Command::new(bin_path("canopy-control-plane"));
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string());
        if options.enterprise {
            cmd.arg("--enterprise");
        }
        cmd.args(&options.extra_args);
        clear_canopy_env(&mut cmd);
        cmd.env("CANOPY_DATA_PLANE_TOKEN", &self.data_plane_token);
        cmd.env("RUST_BACKTRACE", "1");
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let marker = format!(
            "----- testkit: control plane start #{} -----\n",
            self.starts
        );
        cmd.stdin(Stdio::null())
            .stdout(append_log(&self.stdout_log(), &marker))
            .stderr(append_log(&self.stderr_log(), &marker));
        ChildProcess::spawn("canopy-control-plane", cmd)
    }
}

/// Remove every `CANOPY_*` variable of the test runner from a child's environment, so a
/// developer's shell settings (registry, config, tokens) never change what a test sees.
pub(crate) fn clear_canopy_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CANOPY_") {
            cmd.env_remove(key);
        }
    }
}

/// Open `path` for appending (logs survive restarts) after writing a start marker.
pub(crate) fn append_log(path: &Path, marker: &str) -> File {
    use std::io::Write;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display()));
    let _ = file.write_all(marker.as_bytes());
    file
}

/// Write a secret file with mode 0600.
pub(crate) fn write_private(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    file.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
