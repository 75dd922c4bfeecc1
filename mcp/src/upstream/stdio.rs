//! stdio upstreams: one long-lived child process per `Upstream`, newline-delimited JSON
//! on stdin/stdout, requests multiplexed by id.
//!
//! Tasks per child: a writer (owns stdin, fed by a channel so callers never lock it), a
//! reader (stdout → [`Mux`]), a stderr forwarder (lines → `tracing`, target
//! `canopy_mcp::upstream::stderr`, field `server`), and a supervisor that waits for exit
//! or a stop request. When the child dies pending callers fail with an error naming the
//! server; the next request starts a new child after a backoff that grows with quick
//! successive deaths.

use arc_swap::ArcSwapOption;
use futures::StreamExt;
use serde_json::value::RawValue;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use super::budget::CallLimits;
use super::handshake::{self, ConnInfo};
use super::mux::{Action, Mux};
use super::rpc::{self, IdGen};
use super::{UpstreamConfig, UpstreamError, UpstreamResponse};

/// Largest stdout line (one JSON-RPC message) accepted.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Longer stderr lines are cut by the codec, not buffered.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// How long a child that closed stdout may take to exit before it is killed.
const STDOUT_CLOSED_GRACE: Duration = Duration::from_secs(2);
/// A child that lived this long resets the restart backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) struct StdioTransport {
    cfg: Arc<UpstreamConfig>,
    ids: IdGen,
    state: ArcSwapOption<Child>,
    /// Serializes (re)starts and keeps the backoff bookkeeping.
    restart: tokio::sync::Mutex<Restart>,
}

#[derive(Default)]
struct Restart {
    /// Consecutive children that died (or failed to start) quickly.
    failures: u32,
    last_start: Option<Instant>,
}

struct Child {
    mux: Arc<Mux>,
    stdin: mpsc::Sender<Vec<u8>>,
    info: ConnInfo,
    started: Instant,
    stop: CancellationToken,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A started child whose handshake is still under way.
struct Started {
    mux: Arc<Mux>,
    stdin: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
    supervisor: JoinHandle<()>,
}

impl StdioTransport {
    pub(crate) fn new(cfg: Arc<UpstreamConfig>) -> Self {
        Self {
            cfg,
            ids: IdGen::new(),
            state: ArcSwapOption::empty(),
            restart: tokio::sync::Mutex::new(Restart::default()),
        }
    }

    pub(crate) async fn connect(&self) -> Result<ConnInfo, UpstreamError> {
        Ok(self.child().await?.info.clone())
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        limits: CallLimits,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let child = self.child().await?;
        // stdio children are spoken to in the handshake era: drop a 2026-07-28 envelope.
        let stripped = super::modern::without_envelope(params);
        let params = stripped.as_deref().or(params);
        self.call(&child.mux, &child.stdin, method, params, limits)
            .await
    }

    pub(crate) async fn shutdown(&self) {
        let Some(child) = self.state.swap(None) else {
            return;
        };
        child.stop.cancel();
        let handle = child
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            // The supervisor kills and reaps the child; bounded so shutdown never hangs.
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }

    async fn child(&self) -> Result<Arc<Child>, UpstreamError> {
        if let Some(c) = self.state.load_full() {
            if !c.mux.is_closed() {
                return Ok(c);
            }
        }
        let mut restart = self.restart.lock().await;
        if let Some(c) = self.state.load_full() {
            if !c.mux.is_closed() {
                return Ok(c);
            }
            if c.started.elapsed() >= HEALTHY_AFTER {
                restart.failures = 0;
            } else {
                restart.failures = restart.failures.saturating_add(1);
            }
            self.state.store(None);
        }
        if let Some(last) = restart.last_start {
            if restart.failures > 0 {
                let backoff = BACKOFF_BASE
                    .saturating_mul(1 << restart.failures.min(7))
                    .min(BACKOFF_MAX);
                let wait = backoff.saturating_sub(last.elapsed());
                if !wait.is_zero() {
                    tracing::info!(server = %self.cfg.name, ?wait, "waiting before restarting the upstream process");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        restart.last_start = Some(Instant::now());
        let started = match self.spawn() {
            Ok(s) => s,
            Err(e) => {
                restart.failures = restart.failures.saturating_add(1);
                return Err(e);
            }
        };
        // Dropped before the child is stored (deadline) → the child is stopped.
        let guard = started.stop.clone().drop_guard();
        let info = match self.initialize(&started).await {
            Ok(i) => i,
            Err(e) => {
                restart.failures = restart.failures.saturating_add(1);
                started.stop.cancel();
                return Err(e);
            }
        };
        guard.disarm();
        let child = Arc::new(Child {
            mux: started.mux,
            stdin: started.stdin,
            info,
            started: Instant::now(),
            stop: started.stop,
            supervisor: Mutex::new(Some(started.supervisor)),
        });
        self.state.store(Some(Arc::clone(&child)));
        Ok(child)
    }

    fn spawn(&self) -> Result<Started, UpstreamError> {
        let cfg = &self.cfg;
        let mut cmd = tokio::process::Command::new(&cfg.command);
        cmd.args(&cfg.args)
            .envs(&cfg.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The error names the command only: args and env may hold secrets.
        let mut proc = cmd.spawn().map_err(|e| UpstreamError::Spawn {
            server: cfg.name.clone(),
            reason: format!("cannot run '{}': {e}", cfg.command),
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (proc.stdin.take(), proc.stdout.take(), proc.stderr.take())
        else {
            return Err(UpstreamError::Spawn {
                server: cfg.name.clone(),
                reason: "child has no stdio pipes".into(),
            });
        };
        let server: Arc<str> = cfg.name.as_str().into();
        let mux = Mux::new(Arc::clone(&server));
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        tokio::spawn(write_stdin(stdin, rx, stop.clone()));
        tokio::spawn(read_stdout(
            stdout,
            Arc::clone(&mux),
            tx.clone(),
            stop.clone(),
            Arc::clone(&server),
        ));
        tokio::spawn(forward_stderr(stderr, Arc::clone(&server)));
        let supervisor = tokio::spawn(supervise(proc, Arc::clone(&mux), stop.clone(), server));
        tracing::info!(server = %cfg.name, command = %cfg.command, "started upstream process");
        Ok(Started {
            mux,
            stdin: tx,
            stop,
            supervisor,
        })
    }

    async fn initialize(&self, s: &Started) -> Result<ConnInfo, UpstreamError> {
        let params = handshake::initialize_params(&self.cfg)?;
        let resp = self
            .call(
                &s.mux,
                &s.stdin,
                "initialize",
                Some(&params),
                CallLimits::default(),
            )
            .await?;
        let info = handshake::read_initialize(&self.cfg, resp.outcome)?;
        s.stdin
            .send(rpc::encode(None, "notifications/initialized", None))
            .await
            .map_err(|_| self.cfg.unreachable("process stdin closed".into()))?;
        Ok(info)
    }

    async fn call(
        &self,
        mux: &Arc<Mux>,
        stdin: &mpsc::Sender<Vec<u8>>,
        method: &str,
        params: Option<&RawValue>,
        limits: CallLimits,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let id = self.ids.next();
        let mut ticket = mux
            .register(id, rpc::request_progress_token(params), limits)
            .map_err(|r| self.cfg.unreachable(r))?;
        stdin
            .send(rpc::encode(Some(id), method, params.map(RawValue::get)))
            .await
            .map_err(|_| self.cfg.unreachable("process stdin closed".into()))?;
        ticket.wait().await.map_err(|f| f.into_error(&self.cfg))
    }
}

async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) {
    loop {
        let mut msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = stop.cancelled() => break,
        };
        // Raw params may be pretty-printed. Outside strings a newline is only whitespace,
        // and inside JSON strings it cannot appear unescaped, so blanking keeps framing.
        for b in msg.iter_mut() {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
        msg.push(b'\n');
        if stdin.write_all(&msg).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    mux: Arc<Mux>,
    stdin: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
    server: Arc<str>,
) {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => {
                if let Action::Reply(body) = mux.deliver(&line) {
                    let _ = stdin.send(body).await;
                }
            }
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "unreadable output from upstream process; stopping it");
                stop.cancel();
                return;
            }
        }
    }
    // stdout closed: usually the process is exiting, and the supervisor should report
    // its exit status. One that keeps running without stdout is useless: stop it.
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(STDOUT_CLOSED_GRACE) => stop.cancel(),
    }
}

async fn forward_stderr(stderr: tokio::process::ChildStderr, server: Arc<str>) {
    let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_STDERR_LINE));
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => {
                tracing::info!(target: "canopy_mcp::upstream::stderr", server = %server, "{line}")
            }
            Err(_) => break,
        }
    }
}

async fn supervise(
    mut proc: tokio::process::Child,
    mux: Arc<Mux>,
    stop: CancellationToken,
    server: Arc<str>,
) {
    let reason = tokio::select! {
        status = proc.wait() => match status {
            Ok(s) => format!("process exited ({s})"),
            Err(e) => format!("process lost ({e})"),
        },
        _ = stop.cancelled() => {
            let _ = proc.kill().await;
            "process stopped".to_owned()
        }
    };
    tracing::info!(server = %server, %reason, "upstream process ended");
    stop.cancel();
    mux.close(reason);
}
