use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::Deserialize;

use crate::process::Supervised;
use crate::{
    Babysat, Error, ExecOptions, KubeScheduler, KubeSchedulerOptions, Result, TestNamespace,
};

const READY_MARKER: &str = "KSCHED_TESTENV_READY ";

/// Options for [`ControlPlane::start`]. `Default` gives what the shared control plane uses.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// Directory with the binaries; default: [`crate::bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// Working directory (certificates, etcd data, logs, kubeconfig); default: a new temporary
    /// directory. It is removed on stop unless `keep_dir` is set.
    pub dir: Option<PathBuf>,
    /// Keep the working directory (etcd data, logs) after stopping.
    pub keep_dir: bool,
    /// Disable API priority-and-fairness and the in-flight request limits (for benchmarks).
    pub no_api_limits: bool,
    /// Per-component readiness timeout (default 120 s).
    pub ready_timeout: Option<Duration>,
    /// kube-apiserver port for the first attempt (default: a free port).
    pub apiserver_port: Option<u16>,
    /// etcd client port for the first attempt (default: a free port).
    pub etcd_port: Option<u16>,
    /// How many times to try on fresh ports when a port is taken (default 3).
    pub port_attempts: Option<u32>,
    /// Extra kube-apiserver flags, e.g. `--feature-gates=...`.
    pub apiserver_args: Vec<String>,
    /// Extra etcd flags.
    pub etcd_args: Vec<String>,
}

/// What the supervisor reports once the control plane is ready (also written to `DIR/ready`).
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct ReadyInfo {
    /// Path of the kubeconfig (admin client certificate, `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub apiserver_url: String,
    /// `http://127.0.0.1:PORT`.
    pub etcd_url: String,
    /// The working directory.
    pub dir: PathBuf,
    /// CA certificate that signed the serving and client certificates.
    pub ca_file: PathBuf,
    /// Admin client certificate (`CN=ksched-admin, O=system:masters`).
    pub client_cert_file: PathBuf,
    /// Admin client key.
    pub client_key_file: PathBuf,
    /// PID of the `ksched-testenv up` supervisor.
    pub supervisor_pid: u32,
    /// PID of etcd.
    pub etcd_pid: u32,
    /// PID of kube-apiserver.
    pub apiserver_pid: u32,
    /// etcd log file.
    pub etcd_log: PathBuf,
    /// kube-apiserver log file.
    pub apiserver_log: PathBuf,
    /// Directory holding the binaries.
    pub bin_dir: PathBuf,
    /// Seconds from supervisor start to readiness.
    pub startup_seconds: f64,
    /// How many times kube-apiserver has been restarted in place
    /// ([`ControlPlane::restart_apiserver`]); `None` from a supervisor built before in-place
    /// restarts existed (rebuild it with `testenv/build.sh`).
    #[serde(default)]
    pub apiserver_restarts: Option<u32>,
}

/// How [`ControlPlane::restart_apiserver_with`] restarts kube-apiserver.
///
/// `Default` is a graceful restart: SIGTERM, wait for it to exit, start again at once.
#[derive(Clone, Debug, Default)]
pub struct ApiserverRestart {
    /// SIGKILL instead of SIGTERM: a crash, no graceful shutdown (open watches and in-flight
    /// requests are cut, nothing is drained).
    pub kill: bool,
    /// How long a graceful stop may take before SIGKILL (default: the supervisor's 15 s).
    /// kube-apiserver stops listening at once on SIGTERM, but keeps open watches until its HTTP
    /// server's 60 s shutdown timeout, so with any watcher connected (a scheduler, a
    /// kube-runtime watcher) the stop lasts this whole period. A few seconds keep tests fast.
    pub grace: Option<Duration>,
    /// Keep the port closed this long before starting again (clients see "connection refused").
    pub down_for: Duration,
    /// How long to wait for the restarted kube-apiserver to be ready (default: the stop
    /// timeout, `down_for`, the readiness timeout and a margin).
    pub timeout: Option<Duration>,
}

/// A running etcd + kube-apiserver, supervised by `ksched-testenv up`.
///
/// Dropping it (or [`ControlPlane::stop`]) stops both and removes the working directory. The
/// [shared](ControlPlane::shared) instance is never dropped; it stops when the test process exits
/// because the supervisor watches its stdin, which this process holds.
#[derive(Debug)]
pub struct ControlPlane {
    info: ReadyInfo,
    supervisor: Supervised,
    sequence: AtomicU32,
    /// Ready lines after the first (one per in-place kube-apiserver restart).
    ready: Mutex<Receiver<String>>,
    /// One restart at a time.
    restarting: tokio::sync::Mutex<()>,
    apiserver_pid: AtomicU32,
    ready_timeout: Duration,
}

impl ControlPlane {
    /// The control plane shared by all tests of this test binary, started on first use.
    ///
    /// If it fails to start, every later call returns the same error without retrying.
    pub async fn shared() -> Result<&'static ControlPlane> {
        static SHARED: tokio::sync::OnceCell<std::result::Result<ControlPlane, String>> =
            tokio::sync::OnceCell::const_new();
        let cp = SHARED
            .get_or_init(|| async {
                ControlPlane::start(ControlPlaneOptions::default())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        match cp {
            Ok(cp) => {
                cp.ensure_running()?;
                Ok(cp)
            }
            Err(e) => Err(Error::SharedStartup(e.clone())),
        }
    }

    /// Starts a new private control plane (builds the binaries first if needed).
    ///
    /// Fails with the tail of the failing component's log if a component exits or is not ready
    /// within the readiness timeout; never waits longer than that (per port attempt) plus a margin.
    pub async fn start(options: ControlPlaneOptions) -> Result<ControlPlane> {
        tokio::task::spawn_blocking(move || Self::start_blocking(options))
            .await
            .map_err(|e| Error::Startup {
                message: format!("start-up task failed: {e}"),
                output: String::new(),
            })?
    }

    fn start_blocking(o: ControlPlaneOptions) -> Result<ControlPlane> {
        let bin_dir = match o.bin_dir {
            Some(dir) => dir,
            None => crate::bin_dir()?,
        };
        let ready_timeout = o.ready_timeout.unwrap_or(Duration::from_secs(120));
        let attempts = o.port_attempts.unwrap_or(3).max(1);
        let supervisor = bin_dir.join("ksched-testenv");
        let mut cmd = Command::new(&supervisor);
        cmd.arg("up")
            .arg("--watch-stdin")
            .arg(format!("--bin-dir={}", bin_dir.display()))
            .arg(format!("--ready-timeout={}ms", ready_timeout.as_millis()))
            .arg(format!("--port-attempts={attempts}"));
        if let Some(dir) = &o.dir {
            cmd.arg(format!("--dir={}", dir.display()));
        }
        if o.keep_dir {
            cmd.arg("--keep-dir");
        }
        if o.no_api_limits {
            cmd.arg("--no-api-limits");
        }
        if let Some(port) = o.apiserver_port {
            cmd.arg(format!("--apiserver-port={port}"));
        }
        if let Some(port) = o.etcd_port {
            cmd.arg(format!("--etcd-port={port}"));
        }
        for a in &o.apiserver_args {
            cmd.arg(format!("--apiserver-arg={a}"));
        }
        for a in &o.etcd_args {
            cmd.arg(format!("--etcd-arg={a}"));
        }
        let (supervisor, ready) = Supervised::spawn("ksched-testenv up", cmd, READY_MARKER)?;
        // etcd and kube-apiserver each get `ready_timeout` per attempt; add a margin for
        // certificate generation and teardown between attempts.
        let limit = (ready_timeout * 2 + Duration::from_secs(30)) * attempts;
        let line = match ready.recv_timeout(limit) {
            Ok(line) => line,
            Err(RecvTimeoutError::Disconnected) => {
                let status = supervisor
                    .stop(Duration::from_secs(30))?
                    .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
                return Err(Error::Startup {
                    message: format!(
                        "the control plane failed to start (ksched-testenv up exited: {status})"
                    ),
                    output: supervisor.output().last(60),
                });
            }
            Err(RecvTimeoutError::Timeout) => {
                supervisor.kill();
                return Err(Error::Startup {
                    message: format!("the control plane was not ready after {limit:?}; killed it"),
                    output: supervisor.output().last(60),
                });
            }
        };
        let info: ReadyInfo = serde_json::from_str(&line).map_err(|e| Error::Startup {
            message: format!("cannot parse the ready line {line:?}: {e}"),
            output: supervisor.output().last(60),
        })?;
        tracing::info!(
            "control plane ready in {:.1}s: {} (kubeconfig {})",
            info.startup_seconds,
            info.apiserver_url,
            info.kubeconfig.display()
        );
        Ok(ControlPlane {
            apiserver_pid: AtomicU32::new(info.apiserver_pid),
            info,
            supervisor,
            sequence: AtomicU32::new(0),
            ready: Mutex::new(ready),
            restarting: tokio::sync::Mutex::new(()),
            ready_timeout,
        })
    }

    /// Stops kube-apiserver and etcd and removes the working directory (unless kept).
    pub async fn stop(self) -> Result<()> {
        self.supervisor.stop_async(Duration::from_secs(60)).await
    }

    /// An error with the supervisor's last output if the control plane is no longer running.
    pub fn ensure_running(&self) -> Result<()> {
        self.supervisor.ensure_running()
    }

    /// The readiness report at start-up: URLs, PIDs, certificate and log paths. After
    /// [`ControlPlane::restart_apiserver`], [`ControlPlane::apiserver_pid`] has the new PID.
    pub fn info(&self) -> &ReadyInfo {
        &self.info
    }

    /// PID of the current kube-apiserver (changes with [`ControlPlane::restart_apiserver`]).
    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver_pid.load(Ordering::Relaxed)
    }

    /// Restarts kube-apiserver in place — same port, same certificates, same etcd (so every
    /// object survives), same flags — and waits until its `/readyz` answers again. Graceful:
    /// SIGTERM, wait for the exit (SIGKILL after 15 s: see [`ApiserverRestart::grace`]), start.
    /// Returns the supervisor's new readiness report.
    ///
    /// Clients keep working across the restart (same URL, same CA); open watches end and must be
    /// re-established. On the shared control plane this disturbs every test of the binary: put a
    /// test that restarts the apiserver in a test binary (`tests/*.rs`) of its own.
    ///
    /// Fails if the control plane is not running, if the supervisor is too old to restart in
    /// place, or if kube-apiserver does not come back (the supervisor then stops everything and
    /// the error carries its last output).
    pub async fn restart_apiserver(&self) -> Result<ReadyInfo> {
        self.restart_apiserver_with(ApiserverRestart::default())
            .await
    }

    /// [`ControlPlane::restart_apiserver`] with options: a crash (`kill`) and/or down time.
    pub async fn restart_apiserver_with(&self, how: ApiserverRestart) -> Result<ReadyInfo> {
        let _one_at_a_time = self.restarting.lock().await;
        self.ensure_running()?;
        if self.info.apiserver_restarts.is_none() {
            return Err(Error::Startup {
                message: format!(
                    "{} predates in-place kube-apiserver restarts; rebuild it with testenv/build.sh",
                    self.info.bin_dir.join("ksched-testenv").display()
                ),
                output: String::new(),
            });
        }
        // Forget ready lines nobody waited for (e.g. a restart by SIGUSR1).
        while self.lock_ready().try_recv().is_ok() {}
        let mut command = String::from("restart-apiserver");
        if how.kill {
            command.push_str(" kill");
        } else if let Some(grace) = how.grace {
            command.push_str(&format!(" grace={}ms", grace.as_millis().max(1)));
        }
        if !how.down_for.is_zero() {
            command.push_str(&format!(" down={}ms", how.down_for.as_millis()));
        }
        let started = Instant::now();
        self.supervisor.send_line(&command)?;
        // The supervisor's stop timeout is 15 s.
        let limit = how.timeout.unwrap_or(
            how.grace.unwrap_or(Duration::from_secs(15))
                + how.down_for
                + self.ready_timeout
                + Duration::from_secs(10),
        );
        let line = loop {
            let next = self.lock_ready().try_recv();
            match next {
                Ok(line) => break line,
                Err(TryRecvError::Empty) if started.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(TryRecvError::Empty) => {
                    return Err(Error::Timeout {
                        what: "kube-apiserver to be ready again after a restart".into(),
                        timeout: limit,
                        details: format!(
                            "\n--- last output of ksched-testenv ---\n{}",
                            self.supervisor_output(60)
                        ),
                    });
                }
                Err(TryRecvError::Disconnected) => {
                    self.supervisor.join_readers();
                    return Err(Error::NotRunning {
                        message: "kube-apiserver did not come back after a restart; the control plane stopped".into(),
                        output: self.supervisor_output(60),
                    });
                }
            }
        };
        let info: ReadyInfo = serde_json::from_str(&line).map_err(|e| Error::Startup {
            message: format!("cannot parse the ready line {line:?}: {e}"),
            output: self.supervisor_output(60),
        })?;
        self.apiserver_pid
            .store(info.apiserver_pid, Ordering::Relaxed);
        tracing::info!(
            "kube-apiserver restarted in {:.1?} (pid {})",
            started.elapsed(),
            info.apiserver_pid
        );
        Ok(info)
    }

    fn lock_ready(&self) -> std::sync::MutexGuard<'_, Receiver<String>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Path of the kubeconfig for the admin identity (`system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// `https://127.0.0.1:PORT` of kube-apiserver.
    pub fn apiserver_url(&self) -> &str {
        &self.info.apiserver_url
    }

    /// `http://127.0.0.1:PORT` of etcd.
    pub fn etcd_url(&self) -> &str {
        &self.info.etcd_url
    }

    /// Directory holding the binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.info.bin_dir
    }

    /// The last `lines` lines of the supervisor's output (stderr).
    pub fn supervisor_output(&self, lines: usize) -> String {
        self.supervisor.output().last(lines)
    }

    /// PID of the supervisor process, if it is still running.
    pub fn supervisor_pid(&self) -> Option<u32> {
        self.supervisor.pid()
    }

    /// A `kube::Config` from the generated kubeconfig (TLS verified against the generated CA).
    pub async fn config(&self) -> Result<Config> {
        self.ensure_running()?;
        let kubeconfig = Kubeconfig::read_from(&self.info.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }

    /// A new client for the admin identity. Create one per test (a client's connections belong to
    /// the tokio runtime it was first used on, and each `#[tokio::test]` has its own runtime).
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// Creates a fresh namespace named `<prefix>-<unique suffix>` for one test.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.client().await?;
        let name = self.unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("ksched.io/testenv".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(TestNamespace::new(name, client))
    }

    /// A DNS-1123 label `<prefix>-<n><salt>` unique within this control plane.
    pub fn unique_name(&self, prefix: &str) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % 0x1000)
            .unwrap_or(0);
        let mut prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        prefix.truncate(40);
        let prefix = prefix.trim_matches('-');
        let prefix = if prefix.is_empty() { "t" } else { prefix };
        format!("{prefix}-{n}{salt:03x}")
    }

    /// Runs any program (a scheduler under test, say) under `ksched-testenv exec --watch-stdin`:
    /// it is stopped (SIGTERM, then SIGKILL) when the returned handle is dropped or stopped, and
    /// dies with this process even if this process is SIGKILLed.
    pub fn exec(&self, options: ExecOptions) -> Result<Babysat> {
        self.ensure_running()?;
        Babysat::start(&self.info.bin_dir, options)
    }

    /// Starts the upstream kube-scheduler (built by `testenv/build.sh`) against this control plane.
    pub async fn start_kube_scheduler(
        &self,
        options: KubeSchedulerOptions,
    ) -> Result<KubeScheduler> {
        self.ensure_running()?;
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let dir = self.info.dir.join("kube-scheduler").join(n.to_string());
        let kubeconfig = self.info.kubeconfig.clone();
        let bin_dir = self.info.bin_dir.clone();
        tokio::task::spawn_blocking(move || {
            KubeScheduler::start(&bin_dir, &dir, &kubeconfig, options)
        })
        .await
        .map_err(|e| Error::Startup {
            message: format!("kube-scheduler start task failed: {e}"),
            output: String::new(),
        })?
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released: another process may take it before it
/// is used, which is unlikely on a test machine).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(Error::io("binding 127.0.0.1:0".to_owned()))?;
    Ok(l.local_addr()
        .map_err(Error::io("reading the bound address".to_owned()))?
        .port())
}
