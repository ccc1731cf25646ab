//! kill -9 of the scheduler in the middle of a 500-pod burst, then a restart: every pod ends up
//! bound exactly once — no pod unbound, none moved, none reported `Scheduled` twice, no binding
//! conflict reported as `FailedScheduling`.
//!
//! A test binary of its own: the scheduler sees every node of the control plane, and nodes are
//! cluster-scoped.

mod common;

use std::time::{Duration, Instant};

use common::{BindingWatch, Scheduler};

const PODS: usize = 500;
const KILL_AT: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_then_restart_binds_every_pod_once() {
    let common::Setup {
        cp,
        ns,
        name,
        scratch,
        ..
    } = common::setup("kill9", 10).await;
    let config = scratch.write(
        "config.yaml",
        &common::config_yaml(cp.kubeconfig_path(), &name, None),
    );
    let watch = BindingWatch::start(&ns);

    let mut first = Scheduler::spawn(cp, &config, scratch.path("first.log"), &[], &[]);
    first.wait_ready(Duration::from_secs(60)).await;
    let started = Instant::now();
    let burst = common::create_pods(&ns, &name, "p", 0..PODS, 20);
    let kill_and_restart = async {
        watch
            .wait_bound(KILL_AT, Duration::from_secs(120))
            .await
            .unwrap_or_else(|n| panic!("only {n} bound before the kill:\n{}", first.tail(30)));
        first.kill9().await;
        let at_kill = watch.bound();
        eprintln!(
            "killed after {:?} with {at_kill} pods bound",
            started.elapsed()
        );
        assert!(at_kill < PODS, "the burst was over before the kill");
        // A fresh process takes over at once; bindings the dead one sent may still be landing.
        let mut second = Scheduler::spawn(cp, &config, scratch.path("second.log"), &[], &[]);
        second.wait_ready(Duration::from_secs(60)).await;
        eprintln!("restarted and ready after {:?}", started.elapsed());
        second
    };
    let ((), mut second) = tokio::join!(burst, kill_and_restart);
    let took = common::wait_all_bound(&ns, PODS, Duration::from_secs(120)).await;
    eprintln!(
        "all {PODS} bound {:?} after the burst started ({took:?} after the last create)",
        started.elapsed()
    );
    watch
        .wait_bound(PODS, Duration::from_secs(10))
        .await
        .unwrap();
    let events = common::assert_each_bound_once(&ns, &watch, PODS).await;
    let failed = events.get("FailedScheduling").map_or(0, Vec::len);
    assert_eq!(
        failed,
        0,
        "FailedScheduling: {:?}",
        events.get("FailedScheduling")
    );
    // The second process did the rest of the work, and nothing went wrong in it.
    let scheduled = second.metric(&common::scheduled_series(&name)).await;
    eprintln!("the restarted scheduler bound {scheduled} pods");
    assert!(scheduled >= 1.0 && scheduled <= (PODS - KILL_AT) as f64);
    let out = second.output();
    assert!(!out.contains("panicked"), "{out}");
    assert!(second.try_status().is_none(), "second scheduler exited");
    // Every pod is bound and reported before the SIGTERM, so no binding or status update is in
    // flight and shutdown waits on neither drain: it is the HTTP server (at most 1 s) and the
    // runtime (at most 1 s). 10 s leaves room for a loaded machine. (The 45 s this used to
    // wait hid a harness bug: signals went to Go's short-lived clone probe instead of the
    // scheduler — see `common::scheduler_child`.)
    let sent = Instant::now();
    second.sigterm();
    let status = second.wait_exit(Duration::from_secs(10)).await;
    eprintln!("exited {:?} after SIGTERM", sent.elapsed());
    assert_eq!(status.code(), Some(0), "{}", second.tail(20));
    let out = second.output();
    assert!(out.contains("shutdown complete"), "{out}");
}
