use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Supervised;
use crate::{Error, Result};

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

/// A running upstream kube-scheduler (leader election off, no serving port), babysat by
/// `ksched-testenv exec`: it is stopped when this handle is dropped or the test process exits.
#[derive(Debug)]
pub struct KubeScheduler {
    process: Supervised,
    log: PathBuf,
    config: PathBuf,
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
            .arg(format!("--config={}", config.display()))
            .arg("--secure-port=0")
            .arg(format!("--v={}", o.verbosity))
            .args(&o.extra_args);
        let (process, _) = Supervised::spawn("kube-scheduler", cmd, "\u{0}never\u{0}")?;
        Ok(KubeScheduler {
            process,
            log,
            config,
        })
    }

    /// Path of kube-scheduler's log (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Path of the KubeSchedulerConfiguration in use.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The last `lines` lines of kube-scheduler's log.
    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// An error with the log tail if kube-scheduler has exited.
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

    /// Stops kube-scheduler (SIGTERM, SIGKILL after 10 s) and waits for it.
    pub async fn stop(self) -> Result<()> {
        tokio::task::spawn_blocking(move || {
            self.process.stop(Duration::from_secs(30))?;
            Ok(())
        })
        .await
        .map_err(|e| Error::NotRunning {
            message: format!("stop task failed: {e}"),
            output: String::new(),
        })?
    }
}
