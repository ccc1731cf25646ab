use crate::exec::Babysat;
use crate::process::Supervised;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options for [`crate::ControlPlane::start_kube_scheduler`].
#[derive(Clone, Debug)]
pub struct KubeSchedulerOptions {
    /// `profiles[0].schedulerName`; pods with this `spec.schedulerName` are scheduled.
    /// Use a unique name on a shared control plane so other tests' pods are left alone.
    pub scheduler_name: String,
    /// `clientConnection.qps` (default 5000, like scheduler_perf).
    pub qps: u32,
    /// `clientConnection.burst` (default 5000).
    pub burst: u32,
    /// klog verbosity `--v` (default 2: logs every binding).
    pub verbosity: u8,
    /// A complete `KubeSchedulerConfiguration` YAML used instead of the generated one.
    /// It must point `clientConnection.kubeconfig` at the control plane's kubeconfig.
    pub config_yaml: Option<String>,
    /// Extra command-line flags.
    pub extra_args: Vec<String>,
    /// Serve `/healthz`, `/readyz`, `/livez` and `/metrics` over HTTPS (self-signed) on
    /// `127.0.0.1:<port>`, open to anonymous requests; `None` (default): `--secure-port=0`, no
    /// serving. See [`KubeScheduler::https_url`] and [`crate::free_port`].
    pub secure_port: Option<u16>,
}

impl Default for KubeSchedulerOptions {
    fn default() -> Self {
        KubeSchedulerOptions {
            scheduler_name: "default-scheduler".to_owned(),
            qps: 5000,
            burst: 5000,
            verbosity: 2,
            config_yaml: None,
            extra_args: Vec::new(),
            secure_port: None,
        }
    }
}

impl KubeSchedulerOptions {
    /// Default options with the given scheduler name.
    pub fn named(scheduler_name: impl Into<String>) -> Self {
        KubeSchedulerOptions {
            scheduler_name: scheduler_name.into(),
            ..Self::default()
        }
    }
}

/// A running upstream kube-scheduler (leader election off, no serving port unless
/// [`KubeSchedulerOptions::secure_port`]), babysat by `ksched-testenv exec`: it is stopped when
/// this handle is dropped or the test process exits.
#[derive(Debug)]
pub struct KubeScheduler {
    process: Babysat,
    config: PathBuf,
    secure_port: Option<u16>,
}

impl KubeScheduler {
    pub(crate) fn start(
        bin_dir: &Path,
        dir: &Path,
        kubeconfig: &Path,
        o: KubeSchedulerOptions,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let config = dir.join("config.yaml");
        let log = dir.join("kube-scheduler.log");
        let yaml = o.config_yaml.clone().unwrap_or_else(|| {
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\n\
                 kind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {kubeconfig:?}\n  qps: {qps}\n  burst: {burst}\n\
                 leaderElection:\n  leaderElect: false\n\
                 profiles:\n- schedulerName: {name:?}\n",
                kubeconfig = kubeconfig.display().to_string(),
                qps = o.qps,
                burst = o.burst,
                name = o.scheduler_name,
            )
        });
        std::fs::write(&config, yaml)
            .map_err(Error::io(format!("writing {}", config.display())))?;
        let mut cmd = Command::new(bin_dir.join("ksched-testenv"));
        cmd.arg("exec")
            .arg("--watch-stdin")
            .arg(format!("--log={}", log.display()))
            .arg("--")
            .arg(bin_dir.join("kube-scheduler"))
            .arg(format!("--config={}", config.display()));
        match o.secure_port {
            None => {
                cmd.arg("--secure-port=0");
            }
            Some(port) => {
                cmd.arg(format!("--secure-port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--cert-dir={}", dir.join("serving").display()))
                    .arg("--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics");
            }
        }
        cmd.arg(format!("--v={}", o.verbosity)).args(&o.extra_args);
        let (process, _) = Supervised::spawn("kube-scheduler", cmd, "\u{0}never\u{0}")?;
        Ok(KubeScheduler {
            process: Babysat::from_supervised("kube-scheduler", process, log),
            config,
            secure_port: o.secure_port,
        })
    }

    /// Path of kube-scheduler's log (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// PID of the kube-scheduler process itself (not of its `ksched-testenv exec` babysitter),
    /// e.g. to read its peak RSS from `/proc/<pid>/status`.
    pub fn pid(&self) -> Result<u32> {
        self.process.pid()
    }

    /// `https://127.0.0.1:<port>` when started with [`KubeSchedulerOptions::secure_port`]
    /// (self-signed certificate: skip verification; `/healthz`, `/readyz`, `/livez`, `/metrics`
    /// need no credentials).
    pub fn https_url(&self) -> Option<String> {
        self.secure_port.map(|p| format!("https://127.0.0.1:{p}"))
    }

    /// Path of the KubeSchedulerConfiguration in use.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The last `lines` lines of kube-scheduler's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// An error with the log tail if kube-scheduler has exited.
    pub fn ensure_running(&self) -> Result<()> {
        self.process.ensure_running()
    }

    /// Stops kube-scheduler (SIGTERM, SIGKILL after 10 s) and waits for it.
    pub async fn stop(self) -> Result<()> {
        self.process.stop().await
    }
}
