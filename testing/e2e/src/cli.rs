//! Runs the real `canopy` binary with an isolated config: `HOME` and `CANOPY_CONFIG` point into a
//! temp dir of its own, `CANOPY_REGISTRY` at the control plane. One `Cli` = one person's machine.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::control_plane::{clear_canopy_env, ControlPlane};
use crate::paths::bin_path;
use crate::process::ChildProcess;
use crate::CLI_DEADLINE;

#[derive(Debug)]
pub struct Cli {
    home: TempDir,
    registry: String,
    env: Vec<(String, String)>,
}

/// The result of one CLI run.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub args: Vec<String>,
    /// Exit code; None if killed by a signal (a crash).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    /// A CLI user pointed at `cp`, with an empty config.
    pub fn new(cp: &ControlPlane) -> Self {
        Self::with_registry(&cp.url())
    }

    pub fn with_registry(url: &str) -> Self {
        let home = tempfile::Builder::new()
            .prefix("canopy-cli-")
            .tempdir()
            .expect("cannot create a temp HOME for the CLI");
        Self {
            home,
            registry: url.to_owned(),
            env: Vec::new(),
        }
    }

    /// The `CANOPY_CONFIG` file of this CLI (may not exist yet).
    pub fn config_path(&self) -> PathBuf {
        self.home.path().join("canopy.conf")
    }

    /// Its `HOME`; also a good place for config files a test writes.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// An environment variable set on every later run of this CLI.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Write `contents` to `<home>/<name>` and return the path (for `--conf` / `-c` files).
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Run `canopy <args>`; never panics on a non-zero exit (see `ok`/`fail`/`json`).
    pub fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_env(args, &[])
    }

    /// Run with extra environment variables for this run only.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_to_end(cmd, args)
    }

    /// Run and require exit code 0.
    pub fn ok(&self, args: &[&str]) -> CliOutput {
        let out = self.run(args);
        out.assert_success();
        out
    }

    /// Run and require a clean failure: non-zero exit code, not a signal, no panic.
    pub fn fail(&self, args: &[&str]) -> CliOutput {
        let out = self.run(args);
        out.assert_failure();
        out
    }

    /// Run `canopy -o json <args>`, require success and parse stdout as one JSON document.
    pub fn json(&self, args: &[&str]) -> Value {
        self.json_with_env(args, &[])
    }

    pub fn json_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let out = self.run_with_env(&json_args(args), env);
        out.assert_success();
        out.json()
    }

    /// Run `canopy -o json <args>` without requiring success (for commands whose exit code the
    /// test checks itself).
    pub fn run_json(&self, args: &[&str]) -> CliOutput {
        self.run(&json_args(args))
    }

    /// The command with the isolated environment, for tests that need more control.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin_path("canopy"));
        clear_canopy_env(&mut cmd);
        cmd.env("HOME", self.home.path())
            .env("CANOPY_CONFIG", self.config_path())
            .env("CANOPY_REGISTRY", &self.registry)
            // Tests assert that errors are one clean line; no colours in the way.
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

fn json_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    // Global flags go before the subcommand, where clap accepts them whether or not they are
    // declared `global`.
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    full
}

fn run_to_end(mut cmd: Command, args: &[&str]) -> CliOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = ChildProcess::spawn("canopy", cmd);
    // Read both pipes on threads so a chatty child can't block on a full pipe while we wait.
    let stdout = process.child_mut().stdout.take().map(drain);
    let stderr = process.child_mut().stderr.take().map(drain);
    let Some(status) = process.wait_timeout(CLI_DEADLINE) else {
        process.kill9();
        panic!(
            "`canopy {}` did not finish within {CLI_DEADLINE:?}",
            args.join(" ")
        );
    };
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    CliOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together, lower-cased, for "mentions X" checks.
    pub fn text_lower(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr).to_lowercase()
    }

    pub fn assert_success(&self) -> &Self {
        if !self.success() {
            panic!("expected success:\n{self}");
        }
        self
    }

    /// Non-zero exit, no signal, no panic or backtrace, and something on stderr.
    pub fn assert_failure(&self) -> &Self {
        match self.code {
            Some(0) => panic!("expected failure:\n{self}"),
            None => panic!("killed by a signal (crash):\n{self}"),
            Some(_) => {}
        }
        self.assert_no_panic();
        if self.stderr.trim().is_empty() {
            panic!("failure without a message on stderr:\n{self}");
        }
        self
    }

    pub fn assert_no_panic(&self) -> &Self {
        if self.stderr.contains("panicked at") || self.stderr.contains("stack backtrace") {
            panic!("the CLI panicked:\n{self}");
        }
        self
    }

    /// The error is exactly one non-empty line on stderr.
    pub fn assert_one_line_error(&self) -> &Self {
        self.assert_failure();
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() != 1 {
            panic!(
                "expected a one-line error, got {} lines:\n{self}",
                lines.len()
            );
        }
        self
    }

    /// stderr mentions `needle` (case-insensitive).
    pub fn assert_stderr_mentions(&self, needle: &str) -> &Self {
        if !self.stderr.to_lowercase().contains(&needle.to_lowercase()) {
            panic!("expected stderr to mention {needle:?}:\n{self}");
        }
        self
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ canopy {}", self.args.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}
