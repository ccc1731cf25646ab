//! `networktraffic-scheduler`: ksched with the default plugins (and NetworkTraffic once its
//! crate lands), configured by a KubeSchedulerConfiguration file.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use ksched::{Error, Scheduler};
use tokio_util::sync::CancellationToken;

/// A network-traffic-aware Kubernetes scheduler (upstream kube-scheduler semantics).
#[derive(Debug, Parser)]
#[command(name = "networktraffic-scheduler", version)]
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
}

fn init_logging(args: &Args) {
    let default = match args.verbose {
        0 => "info",
        1 => "info,ksched=debug,networktraffic_scheduler=debug",
        _ => "debug,ksched=trace",
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
    let mut builder = Scheduler::builder().with_bind_address(args.bind_address);
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

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    match run(args).await {
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
