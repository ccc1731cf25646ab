//! Two replicas with leader election (a 4 s lease in the test namespace): only the leader binds
//! (the Lease's holder `<host>_<random>` is the replica of the `Scheduled` events'
//! `reportingInstance`, `<schedulerName>-<host>`), kill -9
//! of the leader hands over to the other replica, and a replica whose lease is taken from it
//! exits non-zero at once.
//!
//! A test binary of its own: the schedulers see every node of the control plane.

mod common;

use std::time::{Duration, Instant};

use common::{Lease as LeaseConfig, Scheduler};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use ksched_testenv::TestNamespace;
use ksched_testenv::kube::api::{Api, Patch, PatchParams};

const LEASE: &str = "ksched-le";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits until the lease is held by someone whose identity starts with one of `prefixes`.
async fn wait_holder(leases: &Api<Lease>, prefixes: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(h) = holder(leases).await
            && prefixes.iter().any(|p| h.starts_with(p))
        {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "lease not held by {prefixes:?} within {timeout:?} (holder {:?})",
            holder(leases).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates pods `{prefix}0..n`, waits until all are bound, and returns the `reportingInstance`
/// of their `Scheduled` events (waiting until every pod has one).
async fn schedule_batch(
    ns: &TestNamespace,
    scheduler: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    common::create_pods(ns, scheduler, prefix, 0..n, 10).await;
    for i in 0..n {
        ns.wait_for_pod_bound(&format!("{prefix}{i}"), Duration::from_secs(60))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = common::events_by_reason(ns).await;
        let ours: Vec<_> = events
            .get("Scheduled")
            .into_iter()
            .flatten()
            .filter(|e| {
                e.involved_object
                    .name
                    .as_deref()
                    .is_some_and(|p| p.starts_with(prefix))
            })
            .collect();
        if ours.len() == n {
            return ours
                .iter()
                .map(|e| e.reporting_instance.clone().unwrap_or_default())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} Scheduled events for {prefix}*",
            ours.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_binds_failover_and_lease_loss() {
    let common::Setup {
        cp,
        ns,
        name,
        scratch,
        ..
    } = common::setup("leader", 3).await;
    let config = scratch.write(
        "config.yaml",
        &common::config_yaml(
            cp.kubeconfig_path(),
            &name,
            Some(LeaseConfig {
                namespace: ns.name(),
                name: LEASE,
            }),
        ),
    );
    let leases: Api<Lease> = ns.api();

    // Identities are "$HOSTNAME_<random>", as upstream's.
    let mut a = Scheduler::spawn(
        cp,
        &config,
        scratch.path("a.log"),
        &[],
        &[("HOSTNAME", "replica-a")],
    );
    a.wait_ready(Duration::from_secs(60)).await;
    let first = wait_holder(&leases, &["replica-a_"], Duration::from_secs(30)).await;
    let mut b = Scheduler::spawn(
        cp,
        &config,
        scratch.path("b.log"),
        &[],
        &[("HOSTNAME", "replica-b")],
    );
    b.wait_ready(Duration::from_secs(60)).await;
    // Both ready (informers synced); only A leads.
    assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()));

    // Events report `<schedulerName>-<host>`, as upstream's per-profile recorders.
    let leader = format!("{name}-replica-a");
    let reporters = schedule_batch(&ns, &name, "x", 20).await;
    assert!(
        reporters.iter().all(|r| *r == leader),
        "Scheduled events not all from the leader {leader} ({first}): {reporters:?}"
    );
    let series = common::scheduled_series(&name);
    assert_eq!(a.metric(&series).await, 20.0);
    assert_eq!(b.metric(&series).await, 0.0, "the follower scheduled pods");
    assert!(a.output().contains("became leader"));
    assert!(!b.output().contains("became leader"), "{}", b.tail(20));

    // kill -9 of the leader: it cannot release the lease; B takes it once it expires (4 s).
    let killed = Instant::now();
    a.kill9().await;
    let second = wait_holder(&leases, &["replica-b_"], Duration::from_secs(30)).await;
    eprintln!("failover took {:?}", killed.elapsed());
    let leader = format!("{name}-replica-b");
    let reporters = schedule_batch(&ns, &name, "y", 20).await;
    assert!(
        reporters.iter().all(|r| *r == leader),
        "Scheduled events after failover not all from {leader} ({second}): {reporters:?}"
    );
    assert_eq!(b.metric(&series).await, 20.0);

    // Someone else takes the lease: B notices at its next renewal and exits non-zero at once,
    // without scheduling anything more.
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({
        "spec": {"holderIdentity": "intruder", "acquireTime": now, "renewTime": now, "leaseDurationSeconds": 3600}
    });
    leases
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let taken = Instant::now();
    let status = b.wait_exit(Duration::from_secs(20)).await;
    eprintln!("lease loss noticed after {:?}: {status}", taken.elapsed());
    assert!(
        !status.success(),
        "B exited successfully after losing the lease"
    );
    let out = b.output();
    assert!(out.contains("leadership lost"), "{}", b.tail(20));
    assert!(!out.contains("panicked"), "{out}");
    assert_eq!(holder(&leases).await.as_deref(), Some("intruder"));
}
