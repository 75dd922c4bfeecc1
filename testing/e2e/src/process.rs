//! A spawned child that is always killed: on drop, its whole process group gets SIGKILL, so
//! grandchildren (e.g. stdio upstreams started by a control plane) never outlive the test.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
}

impl ChildProcess {
    /// Spawn `cmd` in its own process group. Panics (naming `name`) when it cannot start.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        // Own group: kill-on-drop reaches its children too, and a Ctrl-C in the terminal running
        // the tests is not delivered twice.
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child,
            exited: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Direct access, e.g. to take its stdout pipe.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the process has exited (reaps it), None while it runs.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// `kill -9` the process itself (not its group: that is what a crash looks like) and reap it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        if let Some(pid) = self.pid_t() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        self.wait_forever()
    }

    /// SIGTERM, then wait up to `deadline` for a clean exit; SIGKILL after that. Returns the exit
    /// status and whether the process stopped by itself within the deadline.
    pub fn terminate(&mut self, deadline: Duration) -> (ExitStatus, bool) {
        if let Some(status) = self.try_exit_status() {
            return (status, true);
        }
        if let Some(pid) = self.pid_t() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        match self.wait_timeout(deadline) {
            Some(status) => (status, true),
            None => (self.kill9(), false),
        }
    }

    /// Wait for the process to exit by itself, up to `deadline`.
    pub fn wait_timeout(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_forever(&mut self) -> ExitStatus {
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name));
        self.exited = Some(status);
        status
    }

    /// None for an id that is not a positive i32: signalling pid 0 or -1 would hit the test
    /// runner's own group or every process, so such an id is never signalled.
    fn pid_t(&self) -> Option<Pid> {
        i32::try_from(self.child.id())
            .ok()
            .filter(|p| *p > 0)
            .map(Pid::from_raw)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(pgid) = self.pid_t() {
            // The group outlives its leader, so this also reaches grandchildren after a kill9().
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        if self.exited.is_none() {
            let _ = self.child.wait();
        }
    }
}
