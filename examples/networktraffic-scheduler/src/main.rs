//! `networktraffic-scheduler`: ksched with the default plugins (and NetworkTraffic once its
//! crate lands), configured by a KubeSchedulerConfiguration file.
//!
//! `networktraffic-scheduler [run] [FLAGS]` runs the scheduler against a cluster;
//! `networktraffic-scheduler simulate [SCENARIO]` runs it against an in-memory cluster
//! ([`simulate`]).

mod simulate;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use ksched::{Error, Scheduler};
use tokio_util::sync::CancellationToken;

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A network-traffic-aware Kubernetes scheduler (upstream kube-scheduler semantics).
#[derive(Debug, Parser)]
#[command(
    name = "networktraffic-scheduler",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: the scheduler's flags (as `run`).
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scheduler against a cluster (the default without a subcommand).
    Run(Args),
    /// Simulate a scenario against an in-memory cluster: no apiserver, no Prometheus.
    Simulate(simulate::SimulateArgs),
}

/// The scheduler's flags.
#[derive(Debug, clap::Args)]
struct Args {
    /// KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1).
    #[arg(long, env = "KSCHED_CONFIG")]
    config: Option<PathBuf>,
    /// Kubeconfig (overrides clientConnection.kubeconfig; default $KUBECONFIG, ~/.kube/config
    /// or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Overrides leaderElection.leaderElect.
    #[arg(long)]
    leader_elect: Option<bool>,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:10259")]
    bind_address: SocketAddr,
    /// More logging (-v debug, -vv trace); RUST_LOG wins when set.
    #[arg(short, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Logs as JSON lines.
    #[arg(long)]
    json_logs: bool,
    /// Keep pods bound to a node whole (but for managedFields), as upstream does. By default
    /// the informer drops the fields no scheduling code reads of them, to save memory
    /// (docs/configuration.md, "Memory: what the informer keeps").
    #[arg(long)]
    keep_assigned_pod_fields: bool,
}

/// kube's HTTP trace layer: an ERROR line for every failed request, hundreds per apiserver
/// outage. ksched logs outages itself, once when they start and once when they end
/// (`ksched::client::OutageLogLayer`), so this target is off unless `-vv` or `RUST_LOG` asks.
const KUBE_PER_REQUEST_LOG: &str = "kube_client::client::builder=off";

fn init_logging(args: &Args) {
    let default = match args.verbose {
        0 => format!("info,{KUBE_PER_REQUEST_LOG}"),
        1 => format!("info,ksched=debug,networktraffic_scheduler=debug,{KUBE_PER_REQUEST_LOG}"),
        _ => "debug,ksched=trace".to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested: finishing in-flight bindings");
    token.cancel();
}

async fn run(args: Args) -> Result<(), Error> {
    let mut builder = Scheduler::builder()
        .with_plugin(ksched_networktraffic::NAME, ksched_networktraffic::new)
        .with_metrics(ksched_networktraffic::register_metrics)
        .with_bind_address(args.bind_address)
        .with_assigned_pod_trim(!args.keep_assigned_pod_fields);
    if let Some(c) = &args.config {
        builder = builder.with_config_file(c);
    }
    if let Some(le) = args.leader_elect {
        builder = builder.with_leader_election(le);
    }
    if let Some(kc) = &args.kubeconfig {
        builder = builder.with_kubeconfig(kc.clone());
    }
    let scheduler = builder.build().await?;
    let token = CancellationToken::new();
    tokio::spawn(shutdown_signal(token.clone()));
    scheduler.run(token).await
}

/// A runtime from `builder`, or the exit code after saying why there is none.
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    // Written when dropped, at the end of `main` (after a graceful shutdown).
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder()
        .file_name(std::env::var_os("KSCHED_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into()))
        .build();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Simulate(sim)) => return simulate::main(&sim),
        Some(Command::Run(args)) => args,
        None => cli.run,
    };
    init_logging(&args);
    let rt = match runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(run(args));
    // Tasks still running (bindings past the drain, see `Scheduler::run`) are cancelled here;
    // a blocking task would otherwise hold the exit indefinitely.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Config(e)) => {
            eprintln!("invalid configuration:\n{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "scheduler stopped");
            ExitCode::FAILURE
        }
    }
}
