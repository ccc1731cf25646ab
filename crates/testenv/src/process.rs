//! A child process whose stdin we hold (its EOF tells it to stop) and whose output we keep a tail of.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Set to anything to echo the supervisors' output to this process's stderr.
pub(crate) const VERBOSE_ENV: &str = "KSCHED_TESTENV_VERBOSE";

/// The last lines a process printed.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    const CAPACITY: usize = 300;

    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == Self::CAPACITY {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines, newline-separated.
    pub(crate) fn last(&self, n: usize) -> String {
        let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = lines.len().saturating_sub(n);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A `ksched-testenv` supervisor process (`up` or `exec`) started with `--watch-stdin`.
#[derive(Debug)]
pub(crate) struct Supervised {
    name: String,
    child: Mutex<Option<Child>>,
    output: OutputTail,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl Supervised {
    /// Spawns `cmd` with piped stdio. Lines on stdout starting with `marker` are sent to the
    /// returned receiver (without the marker); every other line goes to the output tail.
    pub(crate) fn spawn(
        name: &str,
        mut cmd: Command,
        marker: &'static str,
    ) -> Result<(Self, Receiver<String>)> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::Startup {
            message: format!("cannot run {name} ({:?}): {e}", cmd.get_program()),
            output: String::new(),
        })?;
        let output = OutputTail::default();
        let verbose = std::env::var_os(VERBOSE_ENV).is_some();
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            let output = output.clone();
            let name = name.to_owned();
            readers.push(std::thread::spawn(move || {
                for_each_line(stderr, |line| {
                    if verbose {
                        eprintln!("[{name}] {line}");
                    }
                    tracing::debug!(target: "ksched_testenv", "[{name}] {line}");
                    output.push(line);
                });
            }));
        }
        if let Some(stdout) = child.stdout.take() {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                for_each_line(stdout, |line| match line.strip_prefix(marker) {
                    Some(rest) => {
                        let _ = tx.send(rest.to_owned());
                    }
                    None => output.push(line),
                });
            }));
        }
        let this = Supervised {
            name: name.to_owned(),
            child: Mutex::new(Some(child)),
            output,
            readers: Mutex::new(readers),
        };
        Ok((this, rx))
    }

    pub(crate) fn output(&self) -> &OutputTail {
        &self.output
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(status)` if the process has exited (or was stopped).
    pub(crate) fn exit_status(&self) -> Option<String> {
        match self.lock().as_mut() {
            None => Some("stopped".to_owned()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("unknown ({e})")),
            },
        }
    }

    /// An error if the process is no longer running.
    pub(crate) fn ensure_running(&self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => {
                self.join_readers();
                Err(Error::NotRunning {
                    message: format!("{} is not running ({status})", self.name),
                    output: self.output.last(60),
                })
            }
        }
    }

    /// Waits for the output readers to finish (they do once the process and every child holding
    /// its pipes has exited), so the output tail is complete.
    pub(crate) fn join_readers(&self) {
        let readers =
            std::mem::take(&mut *self.readers.lock().unwrap_or_else(PoisonError::into_inner));
        for r in readers {
            let _ = r.join();
        }
    }

    /// Writes one line (a control command) to the process's stdin.
    pub(crate) fn send_line(&self, line: &str) -> Result<()> {
        let mut guard = self.lock();
        let stdin = guard
            .as_mut()
            .and_then(|child| child.stdin.as_mut())
            .ok_or_else(|| Error::NotRunning {
                message: format!("{} is not running (stopped)", self.name),
                output: self.output.last(60),
            })?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(Error::io(format!("writing {line:?} to {}", self.name)))
    }

    /// Closes stdin (the supervisor then stops its children in order) and waits up to `timeout`
    /// for it to exit; kills it (its children die with it through Pdeathsig) after that.
    pub(crate) fn stop(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.lock().take() else {
            return Ok(None);
        };
        drop(child.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            match child
                .try_wait()
                .map_err(Error::io(format!("waiting for {}", self.name)))?
            {
                Some(status) => {
                    self.join_readers();
                    return Ok(Some(status));
                }
                None if Instant::now() >= deadline => {
                    tracing::warn!("{} did not stop within {timeout:?}; killing it", self.name);
                    let _ = child.kill();
                    let status = child
                        .wait()
                        .map_err(Error::io(format!("waiting for {}", self.name)))?;
                    self.join_readers();
                    return Ok(Some(status));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// [`Supervised::stop`] on a blocking thread, for async callers.
    pub(crate) async fn stop_async(self, timeout: Duration) -> Result<()> {
        tokio::task::spawn_blocking(move || self.stop(timeout).map(drop))
            .await
            .map_err(|e| Error::NotRunning {
                message: format!("stop task failed: {e}"),
                output: String::new(),
            })?
    }

    /// Kills the process immediately (its children die through Pdeathsig) and reaps it.
    pub(crate) fn kill(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(60));
    }
}

fn for_each_line(r: impl Read, mut f: impl FnMut(String)) {
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                f(line.trim_end_matches(['\n', '\r']).to_owned());
            }
        }
    }
}
