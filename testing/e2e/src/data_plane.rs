//! A `canopy-data-plane` process synced from a testkit `ControlPlane`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::control_plane::{append_log, clear_canopy_env, ControlPlane};
use crate::net::{free_port, http_get};
use crate::paths::bin_path;
use crate::process::ChildProcess;
use crate::START_DEADLINE;

#[derive(Debug)]
pub struct DataPlane {
    // Field order matters: the process must be killed before the temp dir is removed.
    process: Option<ChildProcess>,
    root: TempDir,
    addr: SocketAddr,
    control_plane_url: String,
    token_file: PathBuf,
    extra_args: Vec<String>,
    starts: u32,
}

impl DataPlane {
    /// Start one against `cp` (authenticated with its data-plane token file) and wait until
    /// `/healthz` answers 200.
    pub fn start(cp: &ControlPlane) -> Self {
        Self::start_with(cp, &[])
    }

    /// Same, with extra flags (e.g. `["--node-id", "dp-a"]`). `--cache-file` should point into
    /// `root()` so a restart finds it.
    pub fn start_with(cp: &ControlPlane, extra_args: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("canopy-dp-")
            .tempdir()
            .expect("cannot create a temp dir for the data plane");
        let mut dp = Self {
            process: None,
            root,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            control_plane_url: cp.url(),
            token_file: cp.data_plane_token_file(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        dp.spawn_and_wait();
        dp
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The process id while it runs (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["data-plane.stdout.log", "data-plane.stderr.log"] {
            out.push_str(&std::fs::read_to_string(self.root.path().join(name)).unwrap_or_default());
        }
        out
    }

    /// `GET path` on this data plane: status and body (None if the connection failed).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.addr, path)
    }

    /// Poll `/readyz` until 200 (true) or the deadline passes (false). A failure deadline.
    pub fn wait_ready(&self, deadline: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if matches!(self.get("/readyz"), Some((200, _))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill9();
        }
    }

    /// SIGTERM and wait (bounded); panics if it had to be killed.
    pub fn terminate(&mut self) -> ExitStatus {
        let Some(p) = self.process.as_mut() else {
            panic!("data plane was never started");
        };
        let (status, clean) = p.terminate(START_DEADLINE);
        if !clean {
            panic!(
                "data plane did not exit within {START_DEADLINE:?} after SIGTERM; logs:\n{}",
                self.logs()
            );
        }
        status
    }

    /// Start again on the same port and root dir.
    pub fn restart(&mut self) {
        if self.process.as_mut().is_some_and(ChildProcess::is_running) {
            self.terminate();
        }
        self.spawn_and_wait();
    }

    fn spawn_and_wait(&mut self) {
        self.starts += 1;
        let mut cmd = Command::new(bin_path("canopy-data-plane"));
        cmd.arg("--control-plane")
            .arg(&self.control_plane_url)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-plane-token-file")
            .arg(&self.token_file)
            .args(&self.extra_args);
        clear_canopy_env(&mut cmd);
        cmd.env("RUST_BACKTRACE", "1");
        let marker = format!("----- testkit: data plane start #{} -----\n", self.starts);
        cmd.stdin(Stdio::null())
            .stdout(append_log(
                &self.root.path().join("data-plane.stdout.log"),
                &marker,
            ))
            .stderr(append_log(
                &self.root.path().join("data-plane.stderr.log"),
                &marker,
            ));
        let mut process = ChildProcess::spawn("canopy-data-plane", cmd);
        let start = Instant::now();
        loop {
            if matches!(http_get(self.addr, "/healthz"), Some((200, _))) {
                break;
            }
            if !process.is_running() || start.elapsed() >= START_DEADLINE {
                let status = process.try_exit_status();
                drop(process);
                panic!(
                    "data plane did not answer /healthz on {} within {START_DEADLINE:?} (exit \
                     status: {status:?}); logs:\n{}",
                    self.addr,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
    }
}
