//! The side-by-side benchmark end to end on the real control plane, small: 20 nodes, 50 pods,
//! both schedulers. Checks that the report is complete, not how fast anything is.

use std::path::PathBuf;
use std::process::Command;

use ksched_bench_e2e::{BenchOptions, SchedulerKind};

/// The networktraffic-scheduler binary: `KSCHED_BENCH_OURS_BIN`, else the one next to this test
/// binary's profile directory (`cargo test --workspace` builds it), built on demand.
fn ours_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KSCHED_BENCH_OURS_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/smoke-<hash> -> target/<profile>/networktraffic-scheduler
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let bin = profile_dir.join("networktraffic-scheduler");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "networktraffic-scheduler",
                "--bin",
                "networktraffic-scheduler",
            ])
            .current_dir(ksched_testenv::repo_root())
            .status()
            .expect("running cargo build -p networktraffic-scheduler");
        assert!(
            status.success(),
            "cargo build -p networktraffic-scheduler failed"
        );
    }
    assert!(bin.is_file(), "{} does not exist", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_schedulers_give_a_complete_report() {
    let mut o = BenchOptions::new(ours_bin());
    o.node_counts = vec![20];
    o.pods = 50;
    o.warmup_pods = 50;
    o.run_timeout = std::time::Duration::from_secs(60);
    let report = ksched_bench_e2e::run(&o, &|line| eprintln!("{line}"))
        .await
        .unwrap();
    assert_eq!(report.runs.len(), 2);
    for kind in [SchedulerKind::Ours, SchedulerKind::Upstream] {
        let r = report.run(kind.as_str(), 20).expect("a run per scheduler");
        assert_eq!(r.bound, 50, "{}: every pod bound", r.scheduler);
        assert!(!r.samples.is_empty() && r.rate_avg > 0.0, "{r:?}");
        assert!(r.rate_p50 > 0.0 && r.rate_p99 >= r.rate_p50, "{r:?}");
        assert!(r.overall_rate > 0.0 && r.create_rate > 0.0, "{r:?}");
        assert!(
            r.latency_p99 >= r.latency_p50 && r.latency_max > 0.0,
            "{r:?}"
        );
        assert!(
            r.peak_rss_kib > 1024,
            "{}: peak RSS {} KiB",
            r.scheduler,
            r.peak_rss_kib
        );
        assert_eq!(
            r.metrics.scheduled,
            Some(50.0),
            "{}: /metrics read",
            r.scheduler
        );
        assert!(
            r.metrics.attempt_mean.is_some() && r.metrics.sli_mean.is_some(),
            "{r:?}"
        );
    }
    let md = ksched_bench_e2e::markdown(&report);
    assert!(md.contains("#### 20 nodes, 50 pods"), "{md}");
    assert!(
        md.contains("| | ours | upstream | ours / upstream |"),
        "{md}"
    );
    assert!(md.contains("| peak RSS (MiB, VmHWM) |"), "{md}");
    assert!(md.contains("Targets: "), "{md}");
}
