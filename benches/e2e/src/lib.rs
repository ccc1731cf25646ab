//! Side-by-side end-to-end benchmark of `networktraffic-scheduler` (default profile) and the
//! upstream kube-scheduler on the **real** control plane of `ksched-testenv`, measured the way
//! upstream's `scheduler_perf` measures (`SchedulingBasic`): fake nodes, plain pods with CPU and
//! memory requests created while the scheduler runs, the per-second scheduling rate (average
//! and percentiles), per-pod latency from creation to binding, plus the scheduler's peak RSS and
//! CPU time.
//!
//! One control plane (API limits lifted) serves the whole benchmark; for each node count the
//! nodes are created once, then each scheduler runs alone, in a fresh namespace, with the same
//! identity, the same client QPS/burst and the same profile name. See `docs/benchmarks.md`
//! ("Side by side with kube-scheduler") and [`run`].

mod measure;
mod metrics;
mod report;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use measure::{CpuTimes, RunResult, SchedulerMetrics};
pub use report::{Report, markdown};

/// Errors of the benchmark: a message with context.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<ksched_testenv::Error> for Error {
    fn from(e: ksched_testenv::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(format!("kube: {e}"))
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which scheduler a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `networktraffic-scheduler` (ours), default profile.
    Ours,
    /// Upstream kube-scheduler built by the harness.
    Upstream,
}

impl SchedulerKind {
    /// `ours` or `upstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Ours => "ours",
            SchedulerKind::Upstream => "upstream",
        }
    }

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            SchedulerKind::Ours => "networktraffic-scheduler (ours)",
            SchedulerKind::Upstream => "kube-scheduler v1.37.2",
        }
    }
}

impl std::str::FromStr for SchedulerKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ours" => Ok(SchedulerKind::Ours),
            "upstream" => Ok(SchedulerKind::Upstream),
            other => Err(format!("unknown scheduler {other:?} (ours, upstream)")),
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Node counts, each measured with every scheduler.
    pub node_counts: Vec<usize>,
    /// Pods created per run.
    pub pods: usize,
    /// Schedulers, run one after the other in this order for each node count.
    pub schedulers: Vec<SchedulerKind>,
    /// The `networktraffic-scheduler` binary.
    pub ours_bin: PathBuf,
    /// `clientConnection.qps` for both schedulers.
    pub qps: u32,
    /// `clientConnection.burst` for both schedulers.
    pub burst: u32,
    /// Pod creates in flight at once (the creator is not rate-limited otherwise).
    pub create_concurrency: usize,
    /// The profile name (`schedulerName`) both schedulers use.
    pub scheduler_name: String,
    /// Per-run limit for all pods to be bound.
    pub run_timeout: Duration,
    /// kube-scheduler's `--v` (2 logs a line per bound pod; ours logs nothing per pod at info).
    pub upstream_verbosity: u8,
    /// Node capacity = allocatable: CPU, memory, pods (scheduler_perf's node-default: 4, 32Gi, 110).
    pub node_capacity: (String, String, u32),
    /// Pod requests = limits: CPU, memory (scheduler_perf's pod-default: 100m, 500Mi).
    pub pod_requests: (String, String),
    /// Where configs and scheduler logs go (kept); default: a temporary directory removed at the end.
    pub work_dir: Option<PathBuf>,
    /// Directory with the harness binaries (default: `KSCHED_TESTENV_BIN_DIR` or `testenv/build.sh`).
    pub bin_dir: Option<PathBuf>,
    /// What was measured (e.g. the git revision of the scheduler binary), shown in the report.
    pub revision: Option<String>,
    /// Pods created and deleted once before the first run (no scheduler picks them), so the
    /// first scheduler measured does not pay for a cold kube-apiserver and client.
    pub warmup_pods: usize,
    /// Backlog mode: create all pods before the scheduler starts (pending), so the scheduler
    /// drains a queue and pod creation does not compete with it; latency then includes the
    /// wait for the scheduler. Default: create them while it runs, as scheduler_perf does.
    pub precreate: bool,
    /// Extra environment of our scheduler (experiments, e.g. `MALLOC_ARENA_MAX=2`).
    pub ours_env: Vec<(String, String)>,
}

impl BenchOptions {
    /// The defaults of the command line: 500/1000/5000 nodes × 5000 pods, ours then upstream,
    /// QPS/burst 5000/5000, 30 creates in flight.
    pub fn new(ours_bin: PathBuf) -> Self {
        BenchOptions {
            node_counts: vec![500, 1000, 5000],
            pods: 5000,
            schedulers: vec![SchedulerKind::Ours, SchedulerKind::Upstream],
            ours_bin,
            qps: 5000,
            burst: 5000,
            create_concurrency: 30,
            scheduler_name: "bench-scheduler".to_owned(),
            run_timeout: Duration::from_secs(900),
            upstream_verbosity: 1,
            node_capacity: ("4".to_owned(), "32Gi".to_owned(), 110),
            pod_requests: ("100m".to_owned(), "500Mi".to_owned()),
            work_dir: None,
            bin_dir: None,
            revision: None,
            warmup_pods: 1000,
            precreate: false,
            ours_env: Vec::new(),
        }
    }
}

/// Runs the whole benchmark: one control plane with API limits lifted, then for each node count
/// the nodes and one run per scheduler. `progress` receives one line per step.
pub async fn run(o: &BenchOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    measure::run(o, progress).await
}
