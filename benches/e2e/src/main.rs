//! `ksched-bench-e2e`: networktraffic-scheduler and upstream kube-scheduler side by side on the
//! real control plane (see `docs/benchmarks.md`, "Side by side with kube-scheduler").

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ksched_bench_e2e::{BenchOptions, SchedulerKind};

/// Side-by-side benchmark: our networktraffic-scheduler (default profile) against upstream
/// kube-scheduler on etcd + kube-apiserver v1.37.2 with API limits lifted, measured like
/// scheduler_perf's SchedulingBasic.
#[derive(Debug, Parser)]
#[command(name = "ksched-bench-e2e", version)]
struct Args {
    /// Node counts (comma-separated); every scheduler runs on each.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,5000")]
    nodes: Vec<usize>,
    /// Pods created per run.
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Schedulers in run order (comma-separated: ours, upstream).
    #[arg(long, value_delimiter = ',', default_value = "ours,upstream")]
    schedulers: Vec<SchedulerKind>,
    /// The networktraffic-scheduler binary.
    #[arg(long, default_value = "target/release/networktraffic-scheduler")]
    ours_bin: PathBuf,
    /// clientConnection.qps of both schedulers.
    #[arg(long, default_value_t = 5000)]
    qps: u32,
    /// clientConnection.burst of both schedulers.
    #[arg(long, default_value_t = 5000)]
    burst: u32,
    /// Pod creates in flight at once.
    #[arg(long, default_value_t = 30)]
    create_concurrency: usize,
    /// Per-run limit (seconds) for all pods to be bound.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// kube-scheduler's --v (2 logs one line per bound pod).
    #[arg(long, default_value_t = 1)]
    upstream_v: u8,
    /// Markdown report file (also printed on stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// JSON with every figure, including the per-second samples.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep scheduler configs, logs and /metrics dumps here.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// What is measured (e.g. the git revision), shown in the report.
    #[arg(long)]
    revision: Option<String>,
    /// Pods created and deleted before the first run to warm up kube-apiserver (no scheduler
    /// picks them).
    #[arg(long, default_value_t = 1000)]
    warmup_pods: usize,
    /// Backlog mode: create every pod before the scheduler starts (default: while it runs, as
    /// scheduler_perf does).
    #[arg(long)]
    precreate: bool,
    /// KEY=VALUE added to our scheduler's environment (repeatable; for experiments such as
    /// MALLOC_ARENA_MAX=2; shown in the report).
    #[arg(long, value_parser = parse_env)]
    ours_env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut o = BenchOptions::new(a.ours_bin);
    o.node_counts = a.nodes;
    o.pods = a.pods;
    o.schedulers = a.schedulers;
    o.qps = a.qps;
    o.burst = a.burst;
    o.create_concurrency = a.create_concurrency;
    o.run_timeout = Duration::from_secs(a.timeout);
    o.upstream_verbosity = a.upstream_v;
    o.work_dir = a.work_dir;
    o.revision = a.revision;
    o.warmup_pods = a.warmup_pods;
    o.precreate = a.precreate;
    o.ours_env = a.ours_env;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let progress = move |line: &str| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    };
    let report = match runtime.block_on(ksched_bench_e2e::run(&o, &progress)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let md = ksched_bench_e2e::markdown(&report);
    println!("{md}");
    if let Some(path) = &a.out
        && let Err(e) = std::fs::write(path, &md)
    {
        eprintln!("error: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
