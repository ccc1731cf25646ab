//! Any program run under `ksched-testenv exec --watch-stdin` (a scheduler under test, say): it
//! dies with this process, even a SIGKILLed one, and is stopped when its handle is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Supervised;
use crate::{Error, Result};

/// What to run with [`crate::ControlPlane::exec`].
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// A short name for messages (e.g. `networktraffic-scheduler`).
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
    /// Environment variables to remove (e.g. `RUST_LOG`).
    pub env_remove: Vec<String>,
    /// File receiving its stdout and stderr.
    pub log: PathBuf,
    /// How long a stop waits after SIGTERM before SIGKILL (default 10 s).
    pub stop_timeout: Option<Duration>,
}

impl ExecOptions {
    /// Runs `program` with no arguments, logging to `log`.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Self {
        ExecOptions {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            log: log.into(),
            stop_timeout: None,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// A program babysat by `ksched-testenv exec` (see [`crate::ControlPlane::exec`]).
#[derive(Debug)]
pub struct Babysat {
    name: String,
    process: Supervised,
    log: PathBuf,
    stop_timeout: Duration,
}

impl Babysat {
    pub(crate) fn start(bin_dir: &Path, o: ExecOptions) -> Result<Self> {
        let stop_timeout = o.stop_timeout.unwrap_or(Duration::from_secs(10));
        let mut cmd = Command::new(bin_dir.join("ksched-testenv"));
        cmd.arg("exec")
            .arg("--watch-stdin")
            .arg(format!("--log={}", o.log.display()))
            .arg(format!("--stop-timeout={}ms", stop_timeout.as_millis()))
            .arg("--")
            .arg(&o.program)
            .args(&o.args);
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        for k in &o.env_remove {
            cmd.env_remove(k);
        }
        let (process, _) = Supervised::spawn(&o.name, cmd, "\u{0}never\u{0}")?;
        Ok(Babysat {
            name: o.name,
            process,
            log: o.log,
            stop_timeout,
        })
    }

    pub(crate) fn from_supervised(name: &str, process: Supervised, log: PathBuf) -> Self {
        Babysat {
            name: name.to_owned(),
            process,
            log,
            stop_timeout: Duration::from_secs(10),
        }
    }

    /// PID of the program itself (not of its babysitter), once it has started; waits up to
    /// 10 s for the babysitter to start it.
    pub fn pid(&self) -> Result<u32> {
        let exec = self.process.pid().ok_or_else(|| Error::NotRunning {
            message: format!("{} is not running (stopped)", self.name),
            output: String::new(),
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = program_pid(exec) {
                return Ok(pid);
            }
            self.ensure_running()?;
            if Instant::now() >= deadline {
                return Err(Error::NotRunning {
                    message: format!(
                        "{} was not started by its babysitter within 10 s",
                        self.name
                    ),
                    output: self.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Path of the program's log (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the program's log.
    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// An error with the log tail if the program has exited.
    pub fn ensure_running(&self) -> Result<()> {
        self.process.ensure_running().map_err(|e| match e {
            Error::NotRunning { message, output } => Error::NotRunning {
                message,
                output: format!(
                    "{output}\n--- last lines of {} ---\n{}",
                    self.log.display(),
                    self.log_tail(30)
                ),
            },
            other => other,
        })
    }

    /// Stops the program (SIGTERM, SIGKILL after the stop timeout) and waits for it.
    pub async fn stop(self) -> Result<()> {
        let timeout = self.stop_timeout + Duration::from_secs(20);
        self.process.stop_async(timeout).await
    }
}

/// The child of the babysitter `pid` (a `ksched-testenv exec`) that runs the program, once it
/// has exec'd (any of the babysitter's threads may have forked it); public for tests that start
/// the babysitter themselves.
///
/// Not simply its first child: before starting a program, Go (1.23+) probes `clone(CLONE_PIDFD)`
/// with a child that exits at once, and taking that probe for the program sent every later signal
/// to a dead (or reused) PID. A freshly forked child also still runs the babysitter's binary until
/// its exec. So the child must run another executable than the babysitter itself.
pub fn program_pid(pid: u32) -> Option<u32> {
    let babysitter = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|child| {
            std::fs::read_link(format!("/proc/{child}/exe")).is_ok_and(|exe| exe != babysitter)
        })
}
