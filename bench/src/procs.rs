//! Child processes pinned with `taskset`, their RSS and CPU time, per-core CPU time,
//! readiness polls.

use anyhow::{bail, Context};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Resolves on SIGTERM or SIGINT (for the bench servers' graceful shutdown).
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// How processes are placed on cores.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// `None`: `taskset` missing or fewer than 2 CPUs; nothing is pinned.
    pub taskset: Option<PathBuf>,
}

impl Pinning {
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = which("taskset").filter(|_| cpus >= 2);
        Self { taskset }
    }

    pub fn describe(&self) -> &'static str {
        if self.taskset.is_some() {
            "core 0 = server side under test, core 1 = load generator (taskset)"
        } else {
            "NOT pinned (taskset missing or < 2 CPUs)"
        }
    }

    /// A command for `program` running on `core` (unpinned when pinning is unavailable).
    pub fn command(&self, core: usize, program: &Path) -> Command {
        match &self.taskset {
            Some(ts) => {
                let mut c = Command::new(ts);
                c.arg("-c").arg(core.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// The first `name` on `PATH` (and `~/.cargo/bin`).
pub fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A spawned server; killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails (with the log's tail) if the process already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Resident set size in bytes (VmRSS of /proc/<pid>/status).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?;
    Ok(kb * 1024)
}

/// CPU time of process `pid` (all its threads), user + system, in clock ticks: fields 14
/// (`utime`) and 15 (`stime`) of `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// `utime + stime` of one `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces or parentheses, so fields are counted after the last `)`.
fn parse_stat_ticks(stat: &str) -> io::Result<u64> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {stat:?}"));
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| bad("no `)` in /proc/<pid>/stat"))?;
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad(&format!("field {n} missing or not a number")))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`, asked once; 100 when that fails).
pub fn clock_ticks_per_sec() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

/// CPU time of process `pid` (user + system, all threads) in seconds.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    Ok(cpu_ticks(pid)? as f64 / clock_ticks_per_sec() as f64)
}

/// The last `n` lines of a file (for error reports).
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Jiffies (busy, total) per CPU from /proc/stat.
#[derive(Debug, Clone, Default)]
pub struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    pub fn read() -> Self {
        let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut v = Vec::new();
        for l in s.lines() {
            let mut it = l.split_whitespace();
            let Some(label) = it.next() else { continue };
            if !label.starts_with("cpu") || label == "cpu" {
                continue;
            }
            let f: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
            if f.len() < 5 {
                continue;
            }
            let total: u64 = f.iter().take(8).sum();
            let idle = f[3] + f[4];
            v.push((total - idle, total));
        }
        Self(v)
    }

    /// Busy percentage of `cpu` between `self` (earlier) and `later`.
    pub fn busy_pct(&self, later: &CpuTimes, cpu: usize) -> f64 {
        match (self.0.get(cpu), later.0.get(cpu)) {
            (Some(a), Some(b)) if b.1 > a.1 => 100.0 * (b.0 - a.0) as f64 / (b.1 - a.1) as f64,
            _ => f64::NAN,
        }
    }
}

/// Polls `url` (GET) until it answers 200; returns the time it took.
pub async fn wait_ok(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    interval: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > timeout {
            bail!("{url} not ready after {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// A free loopback port (bound once, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn own_cpu_ticks_grow() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).unwrap();
        // Burn CPU until a tick is charged (10 ms at the usual CLK_TCK = 100; bounded, in
        // case a shared machine barely schedules this thread).
        let start = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after == before && start.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_ticks(pid).unwrap();
        }
        assert!(after > before, "ticks {before} → {after}");
        assert!(clock_ticks_per_sec() > 0);
        assert!(cpu_seconds(pid).unwrap() >= after as f64 / clock_ticks_per_sec() as f64);
        assert!(cpu_ticks(u32::MAX).is_err());
    }

    #[test]
    fn stat_line_with_odd_command_name() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_stat_ticks(line).unwrap(), 12);
        assert!(parse_stat_ticks("42 (x) S 1").is_err());
        assert!(parse_stat_ticks("garbage").is_err());
    }
}
